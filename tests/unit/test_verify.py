"""verify_batch against tampering and crashes; the batch folder, frozen files and summary."""

from __future__ import annotations

import enum
import hashlib
import json
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.records.anchor import append_anchor
from controller.records.audit import AuditLog
from controller.records.batch import summary_digest, write_frozen, write_summary
from controller.records.folder import (
    AUDIT_FILE,
    RECIPE_FILE,
    STATION_FILE,
    SUMMARY_FILE,
    TRACE_FILE,
    BatchFolder,
    batch_id,
)
from controller.records.verify import Verdict, verify_batch
from tests.records import SUMMARY, audit_records, make_hashed_batch, rewrite_chain, wall

WALL0 = datetime(2026, 11, 24, 21, 18, 40, tzinfo=UTC)
RECIPE = 'name = "POP70-600-1600"\r\n[[stage]]\nto_c = 600.0\n'
STATION = 'name = "sim"\n'


def make_batch(root: Path, n_events: int = 4, *, summary: bool = True) -> Path:
    """A finished batch as recorded before trace and summary hashing: frozen files,
    1 + n_events audit records (the last ``batch_ended`` if there is a summary), a summary.
    """
    batch = BatchFolder.create(root, "POP70-600-1600", WALL0).path
    recipe_sha = write_frozen(batch, RECIPE_FILE, RECIPE)
    station_sha = write_frozen(batch, STATION_FILE, STATION)
    with AuditLog.create(batch / AUDIT_FILE, "0.1.0", recipe_sha, station_sha, t_s=0.0,
                         wall=WALL0, operator="ana") as log:
        for i in range(n_events - 1 if summary else n_events):
            log.append("setpoint_written", t_s=1.5 * (i + 1), wall=WALL0 + timedelta(seconds=i),
                       who="runner", old=600.0 + i, new=601.25 + i, why="ramp",
                       detail={"stage": "préchauffage", "step": i})
        if summary:
            log.append("batch_ended", t_s=1.5 * n_events, wall=WALL0 + timedelta(seconds=9),
                       outcome="completed")
            write_summary(batch, {"outcome": "completed", "audit_final_hash": log.final_hash,
                                  "audit_records": log.count})
    return batch


#: What a batch recorded before trace and summary hashing verifies with.
OLD_BATCH_WARNINGS = (
    f"{SUMMARY_FILE}: only audit_records and audit_final_hash are bound to the chain "
    "(recorded before summary hashing)",
    f"{TRACE_FILE}: missing; not checked (recorded before trace hashing)",
)


def audit_lines(batch: Path) -> list[bytes]:
    return (batch / AUDIT_FILE).read_bytes().splitlines(keepends=True)


def write_audit(batch: Path, data: bytes) -> None:
    (batch / AUDIT_FILE).write_bytes(data)


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    return make_batch(tmp_path)


# --- the intact case -----------------------------------------------------------------------


def test_round_trip_verifies(batch: Path) -> None:
    result = verify_batch(batch)
    assert result.ok, result.reason
    assert result.records == 5
    assert result.first_bad is None
    assert result.verdict is Verdict.INTACT
    assert result.warnings == OLD_BATCH_WARNINGS
    assert result.reason.startswith("intact: 5 records")


def test_recorded_hashes_are_those_of_the_frozen_bytes(batch: Path) -> None:
    first = json.loads(audit_lines(batch)[0])
    assert first["recipe_sha256"] == hashlib.sha256(RECIPE.encode()).hexdigest()
    assert first["station_sha256"] == hashlib.sha256(STATION.encode()).hexdigest()


# --- tampering with audit.jsonl ------------------------------------------------------------


def test_every_single_bit_flip_is_detected(tmp_path: Path) -> None:
    """systemd's test-journal-verify sweep: toggle each bit of the file, one at a time.

    Two records (the genesis record and a chained one with nested, non-ASCII fields) keep
    the 8 x ~800 verifications quick; the hypothesis test below covers a longer log.
    """
    batch = make_batch(tmp_path, 1)
    original = (batch / AUDIT_FILE).read_bytes()
    undetected = []
    for pos in range(len(original)):
        for bit in range(8):
            mutated = bytearray(original)
            mutated[pos] ^= 1 << bit
            write_audit(batch, bytes(mutated))
            if verify_batch(batch).ok:
                undetected.append((pos, bit))
    assert undetected == []


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_changed_byte_is_detected(batch: Path, data: st.DataObject) -> None:
    original = (batch / AUDIT_FILE).read_bytes()
    pos = data.draw(st.integers(0, len(original) - 1), label="position")
    value = data.draw(st.integers(0, 255).filter(lambda b: b != original[pos]), label="byte")
    mutated = bytearray(original)
    mutated[pos] = value
    write_audit(batch, bytes(mutated))
    result = verify_batch(batch)
    assert not result.ok
    assert result.first_bad is not None
    assert "\n" not in result.reason


def test_same_value_written_differently_is_detected(batch: Path) -> None:
    """An edit that parses to the same record (float spelling, whitespace) still fails."""
    lines = audit_lines(batch)
    lines[2] = lines[2].replace(b'"old":601.0', b'"old":601.00')
    write_audit(batch, b"".join(lines))
    result = verify_batch(batch)
    assert not result.ok
    assert result.reason == (f"{AUDIT_FILE}: record 2 (line 3): not in the form the writer "
                             "produces (edited by hand?)")


def test_changed_value_names_the_record(batch: Path) -> None:
    lines = audit_lines(batch)
    lines[3] = lines[3].replace(b'"new":603.25', b'"new":613.25')
    write_audit(batch, b"".join(lines))
    result = verify_batch(batch)
    assert (result.ok, result.records, result.first_bad) == (False, 3, 3)
    assert result.reason == f"{AUDIT_FILE}: record 3 (line 4): hash does not match its content"


@pytest.mark.parametrize("index", range(5))
def test_deleting_any_record_is_detected(batch: Path, index: int) -> None:
    lines = audit_lines(batch)
    del lines[index]
    write_audit(batch, b"".join(lines))
    result = verify_batch(batch)
    assert not result.ok
    assert result.first_bad == index
    assert result.records == index


def test_dropping_the_last_record_is_caught_by_the_summary(batch: Path) -> None:
    write_audit(batch, b"".join(audit_lines(batch)[:-1]))
    result = verify_batch(batch)
    assert (result.ok, result.records, result.first_bad) == (False, 4, 4)
    assert "audit_records is 5 but the chain has 4" in result.reason


def test_cutting_the_tail_mid_line_is_reported_as_torn(batch: Path) -> None:
    original = (batch / AUDIT_FILE).read_bytes()
    last_start = original.rstrip(b"\n").rfind(b"\n") + 1
    for cut in range(last_start + 1, len(original)):  # every cut inside the last line
        write_audit(batch, original[:cut])
        result = verify_batch(batch)
        assert not result.ok
        assert result.first_bad == 4
        assert "torn last line" in result.reason, cut


@pytest.mark.parametrize(("i", "j"), [(i, j) for i in range(5) for j in range(i + 1, 5)])
def test_swapping_two_records_is_detected(batch: Path, i: int, j: int) -> None:
    lines = audit_lines(batch)
    lines[i], lines[j] = lines[j], lines[i]
    write_audit(batch, b"".join(lines))
    result = verify_batch(batch)
    assert not result.ok
    assert result.first_bad == i


def test_a_rebuilt_chain_with_an_extra_record_is_caught_by_the_summary(batch: Path) -> None:
    """Someone with file access appends a correctly chained record after the summary."""
    with AuditLog.open_existing(batch / AUDIT_FILE) as log:
        log.append("setpoint_written", t_s=99.0, wall=WALL0, who="intruder", new=2000.0)
    result = verify_batch(batch)
    assert not result.ok
    assert result.first_bad == 5
    assert "audit_records is 5 but the chain has 6" in result.reason


def test_a_replaced_last_record_is_caught_by_the_final_hash(batch: Path) -> None:
    lines = audit_lines(batch)
    write_audit(batch, b"".join(lines[:-1]))
    with AuditLog.open_existing(batch / AUDIT_FILE) as log:
        log.append("setpoint_written", t_s=6.0, wall=WALL0, who="runner", new=1.0)
    result = verify_batch(batch)
    assert (result.ok, result.first_bad) == (False, 4)
    assert "audit_final_hash does not match the hash of record 4" in result.reason


def forge(record: dict[str, Any]) -> bytes:
    """What someone who knows the format writes: rehashed, in the writer's exact layout."""
    body = {k: v for k, v in record.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    head = {k: body[k] for k in ("seq", "t_s", "wall_utc", "event")}
    fields = {k: json.loads(json.dumps(body[k], sort_keys=True)) for k in sorted(body)
              if k not in (*head, "prev")}
    line = {**head, **fields, "prev": body["prev"],
            "hash": hashlib.sha256(canonical.encode("utf-8")).hexdigest()}
    return (json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")


def test_forge_writes_what_the_writer_writes(batch: Path) -> None:
    lines = audit_lines(batch)
    assert [forge(json.loads(line)) for line in lines] == lines


def test_a_relinked_chain_with_a_gap_is_caught_by_seq(batch: Path) -> None:
    records = [json.loads(line) for line in audit_lines(batch)]
    del records[2]
    out = [forge(records[0]), forge(records[1])]
    for record in records[2:]:  # re-link what follows the gap, keep the seq numbers
        record["prev"] = json.loads(out[-1])["hash"]
        out.append(forge(record))
    write_audit(batch, b"".join(out))
    result = verify_batch(batch)
    assert (result.ok, result.first_bad) == (False, 2)
    assert result.reason == (f"{AUDIT_FILE}: record 2 (line 3): seq is 3, expected 2 "
                             "(a record is missing, added or moved)")


def test_a_rehashed_record_with_a_broken_link_is_caught_by_prev(batch: Path) -> None:
    lines = audit_lines(batch)
    record = json.loads(lines[2])
    record["new"], record["prev"] = 9999.0, "f" * 64
    lines[2] = forge(record)
    write_audit(batch, b"".join(lines))
    result = verify_batch(batch)
    assert (result.ok, result.first_bad) == (False, 2)
    assert result.reason == (f"{AUDIT_FILE}: record 2 (line 3): prev does not match the hash "
                             "of record 1")


def test_wall_clock_going_back_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    batch = make_batch(tmp_path, 0, summary=False)
    with AuditLog.open_existing(batch / AUDIT_FILE) as log:
        log.append("clock_step", t_s=1.0, wall=WALL0 - timedelta(hours=1))
        log.append("batch_ended", t_s=2.0, wall=WALL0 - timedelta(hours=1))
        write_summary(batch, {"audit_final_hash": log.final_hash, "audit_records": log.count})
    result = verify_batch(batch)
    assert result.ok, result.reason
    assert result.warnings == ("record 1: wall clock went back 3600.000 s",
                               *OLD_BATCH_WARNINGS)


# --- the other files -----------------------------------------------------------------------


@pytest.mark.parametrize("name", [RECIPE_FILE, STATION_FILE])
def test_changed_frozen_file_is_detected(batch: Path, name: str) -> None:
    path = batch / name
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    path.write_bytes(path.read_bytes() + b"\n")  # even one more newline
    result = verify_batch(batch)
    assert (result.ok, result.records, result.first_bad) == (False, 5, None)
    assert result.reason.startswith(f"{name}: sha256 ")
    assert "in record 0 (changed since start)" in result.reason


@pytest.mark.parametrize("name", [RECIPE_FILE, STATION_FILE, SUMMARY_FILE])
def test_missing_file_fails(batch: Path, name: str) -> None:
    (batch / name).unlink()
    result = verify_batch(batch)
    assert not result.ok
    assert result.reason.startswith(name)


def test_missing_summary_of_an_ended_batch_says_so(batch: Path) -> None:
    (batch / SUMMARY_FILE).unlink()
    result = verify_batch(batch)
    assert (result.ok, result.records, result.first_bad) == (False, 5, None)
    assert result.reason == (f"{SUMMARY_FILE}: missing, but the chain ended (record 4 is "
                             "'batch_ended'): deleted, or the run died while writing it")


@pytest.mark.parametrize("text", ["", "[1]", '{"audit_records": 5}', "{bad json"])
def test_malformed_summary_fails(batch: Path, text: str) -> None:
    (batch / SUMMARY_FILE).write_text(text, encoding="utf-8")
    result = verify_batch(batch)
    assert not result.ok
    assert result.reason.startswith(SUMMARY_FILE)


# --- writing the summary -------------------------------------------------------------------


def test_write_summary_is_atomic_and_overwrites(batch: Path) -> None:
    head = json.loads((batch / SUMMARY_FILE).read_text(encoding="utf-8"))
    data = {**head, "outcome": "aborted", "holdback_s": float("nan"), "gas_used_l": {"Ar": 1.5}}
    write_summary(batch, data)
    assert sorted(p.name for p in batch.iterdir() if "summary" in p.name) == [SUMMARY_FILE]
    written = json.loads((batch / SUMMARY_FILE).read_text(encoding="utf-8"))
    assert written == {**data, "holdback_s": "NaN"}
    assert verify_batch(batch).ok


@pytest.mark.parametrize("data", [
    {"audit_records": 5},
    {"audit_final_hash": "ab" * 32},
    {"audit_final_hash": "ab" * 32, "audit_records": 0},
    {"audit_final_hash": "0" * 64, "audit_records": 1},
    {"audit_final_hash": "short", "audit_records": 1},
])
def test_write_summary_requires_the_audit_fields(tmp_path: Path, data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="audit_"):
        write_summary(tmp_path, data)
    assert list(tmp_path.iterdir()) == []


# --- the batch folder and frozen files -----------------------------------------------------


def test_batch_id_is_utc_start_and_sample() -> None:
    cet = datetime(2026, 11, 24, 22, 18, 40, tzinfo=timezone(timedelta(hours=1)))
    assert batch_id("POP70-600-1600", cet) == "20261124T211840Z_POP70-600-1600"
    assert batch_id("POP70-600-1600", WALL0) == "20261124T211840Z_POP70-600-1600"


@pytest.mark.parametrize(("sample", "expected"), [
    ('a<b>c:d"e/f\\g|h?i*j', "a_b_c_d_e_f_g_h_i_j"),
    ("PN 600\t1600\n", "PN_600_1600_"),
    ("trailing...", "trailing"),
    ("", "unnamed"),
    ("...", "unnamed"),
    ("x" * 200, "x" * 80),
    ("HSP30-600-1400", "HSP30-600-1400"),
])
def test_sample_name_is_sanitised_for_windows(tmp_path: Path, sample: str, expected: str) -> None:
    path = BatchFolder.create(tmp_path, sample, WALL0).path
    assert path.name == f"20261124T211840Z_{expected}"
    assert path.is_dir()
    assert not set('<>:"/\\|?*') & set(path.name)


def test_batch_dirs_are_unique(tmp_path: Path) -> None:
    names = [BatchFolder.create(tmp_path / "batches", "S", WALL0).path.name for _ in range(3)]
    assert names == ["20261124T211840Z_S", "20261124T211840Z_S-2", "20261124T211840Z_S-3"]


def test_existing_batch_is_never_touched(batch: Path) -> None:
    before = {p.name: p.read_bytes() for p in batch.iterdir()}
    again = BatchFolder.create(batch.parent, "POP70-600-1600", WALL0).path
    assert again != batch
    assert {p.name: p.read_bytes() for p in batch.iterdir()} == before


def test_naive_start_time_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        BatchFolder.create(tmp_path, "S", WALL0.replace(tzinfo=None))
    assert list(tmp_path.iterdir()) == []


def test_write_frozen_keeps_bytes_and_refuses_overwrite(tmp_path: Path) -> None:
    digest = write_frozen(tmp_path, RECIPE_FILE, RECIPE)
    path = tmp_path / RECIPE_FILE
    assert path.read_bytes() == RECIPE.encode("utf-8")  # "\r\n" kept, no translation
    assert digest == hashlib.sha256(RECIPE.encode("utf-8")).hexdigest()
    assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    with pytest.raises(FileExistsError):
        write_frozen(tmp_path, RECIPE_FILE, "other")
    assert path.read_bytes() == RECIPE.encode("utf-8")


@pytest.mark.parametrize("name", ["", ".", "..", "sub/recipe.toml", "../recipe.toml"])
def test_write_frozen_refuses_paths(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        write_frozen(tmp_path, name, "x")


# --- the whole folder: trace, summary and anchor bound to the chain (issue 9, item 8) -------


@pytest.fixture
def anchor_log(tmp_path: Path) -> Path:
    return tmp_path / "state" / "anchors" / "sim.anchors.jsonl"


@pytest.fixture
def hashed(tmp_path: Path, anchor_log: Path) -> Path:
    """12 trace rows, checkpoints after rows 5 and 10, batch_ended, summary, anchor line."""
    return make_hashed_batch(tmp_path / "batches", anchor_log=anchor_log)


def trace_lines(batch: Path) -> list[bytes]:
    return (batch / TRACE_FILE).read_bytes().splitlines(keepends=True)


def write_trace(batch: Path, lines: list[bytes]) -> None:
    (batch / TRACE_FILE).write_bytes(b"".join(lines))


def test_a_hashed_batch_verifies_with_no_warning(hashed: Path, anchor_log: Path) -> None:
    result = verify_batch(hashed, anchor_log=anchor_log)
    assert result.verdict is Verdict.INTACT, result.reason
    assert result.warnings == ()
    assert result.records == 4  # batch_created, 2 checkpoints, batch_ended
    assert "trace.csv: 12 rows match" in result.reason
    assert "matches the anchor log" in result.reason


@pytest.mark.parametrize(("row", "span"), [(2, "the header or rows 1-5"), (7, "rows 6-10"),
                                           (12, "rows 11-12")])
def test_an_edited_trace_row_is_tampering(hashed: Path, row: int, span: str) -> None:
    lines = trace_lines(hashed)
    before = lines[row]
    lines[row] = before.replace(b",200.000", b",210.000")  # same length: only the hash sees it
    assert lines[row] != before
    write_trace(hashed, lines)
    result = verify_batch(hashed)
    assert result.verdict is Verdict.TAMPERED
    assert result.reason.startswith(f"{TRACE_FILE}: {span} changed")


@pytest.mark.parametrize("row", [1, 6, 12])
def test_a_deleted_trace_row_is_tampering(hashed: Path, row: int) -> None:
    lines = trace_lines(hashed)
    del lines[row]
    write_trace(hashed, lines)
    result = verify_batch(hashed)
    assert result.verdict is Verdict.TAMPERED
    assert result.reason.startswith(TRACE_FILE)


def test_a_row_added_after_the_end_is_tampering(hashed: Path) -> None:
    lines = trace_lines(hashed)
    write_trace(hashed, [*lines, lines[-1]])
    result = verify_batch(hashed)
    assert result.verdict is Verdict.TAMPERED
    assert "1 rows) after the end that record 3 ('batch_ended') covers" in result.reason


def test_a_deleted_trace_is_tampering(hashed: Path) -> None:
    (hashed / TRACE_FILE).unlink()
    result = verify_batch(hashed)
    assert result.verdict is Verdict.TAMPERED
    assert result.reason == f"{TRACE_FILE}: missing, but record 3 records its hash (deleted)"


@pytest.mark.parametrize(("key", "value"), [("outcome", "aborted"), ("peak_c", 1500.0),
                                            ("gas_used_l", {"Ar": 15.0, "air": 30.0}),
                                            ("new_field", 1)])
def test_a_changed_summary_field_is_tampering(hashed: Path, key: str, value: object) -> None:
    summary = json.loads((hashed / SUMMARY_FILE).read_text(encoding="utf-8"))
    write_summary(hashed, {**summary, key: value})  # written as the writer writes it
    result = verify_batch(hashed)
    assert result.verdict is Verdict.TAMPERED
    assert result.reason == (f"{SUMMARY_FILE}: its content does not match summary_sha256 in "
                             "record 3 ('batch_ended'): a field was changed")


def test_a_summary_edited_by_hand_is_caught_by_its_form(hashed: Path) -> None:
    """A duplicated key parses to the same content for json.loads but not for every reader."""
    path = hashed / SUMMARY_FILE
    path.write_bytes(path.read_bytes().replace(b"{\n", b'{\n  "outcome": "aborted",\n', 1))
    result = verify_batch(hashed)
    assert result.verdict is Verdict.TAMPERED
    assert result.reason == f"{SUMMARY_FILE}: not in the form the writer produces (edited by hand?)"


@pytest.mark.parametrize("dropped", [1, 2])
def test_dropped_tail_records_with_the_count_fixed_are_tampering(hashed: Path,
                                                                 dropped: int) -> None:
    lines = audit_lines(hashed)[:-dropped]
    write_audit(hashed, b"".join(lines))
    summary = json.loads((hashed / SUMMARY_FILE).read_text(encoding="utf-8"))
    write_summary(hashed, {**summary, "audit_records": len(lines),
                           "audit_final_hash": json.loads(lines[-1])["hash"]})
    result = verify_batch(hashed)
    assert result.verdict is Verdict.TAMPERED
    assert (result.first_bad, result.records) == (len(lines), len(lines))
    assert "not 'batch_ended', yet summary.json points at it" in result.reason


def test_a_rewritten_chain_passes_alone_but_not_against_the_anchor_log(
        hashed: Path, anchor_log: Path) -> None:
    records = audit_records(hashed)
    records[1]["run_state"]["step"] = 7  # one event changed, everything re-hashed
    rewrite_chain(hashed, records)
    alone = verify_batch(hashed)
    assert alone.verdict is Verdict.INTACT, alone.reason  # consistent: nothing else can tell
    result = verify_batch(hashed, anchor_log=anchor_log)
    assert result.verdict is Verdict.TAMPERED
    assert result.reason.startswith("rewritten chain does not match the anchor log: ")
    assert "has 4 records ending in" in result.reason


def test_a_batch_missing_from_the_anchor_log_is_tampering(tmp_path: Path, hashed: Path,
                                                          anchor_log: Path) -> None:
    other = tmp_path / "other.anchors.jsonl"
    other.write_bytes(anchor_log.read_bytes().replace(hashed.name.encode(), b"another"))
    result = verify_batch(hashed, anchor_log=other)
    assert result.verdict is Verdict.TAMPERED
    assert result.reason == (f"rewritten chain does not match the anchor log: batch "
                             f"{hashed.name} is not in the anchor log {other}")


def test_an_ended_batch_cut_back_to_look_interrupted_is_caught_by_the_anchor_log(
        hashed: Path, anchor_log: Path) -> None:
    write_audit(hashed, b"".join(audit_lines(hashed)[:-1]))
    (hashed / SUMMARY_FILE).unlink()
    assert verify_batch(hashed).verdict is Verdict.INTERRUPTED  # all that the folder says
    result = verify_batch(hashed, anchor_log=anchor_log)
    assert result.verdict is Verdict.TAMPERED
    assert "it anchors 4 records" in result.reason


def test_an_interrupted_batch_is_intact_so_far(tmp_path: Path, anchor_log: Path) -> None:
    append_anchor(anchor_log, batch_id="20261123T080000Z_PN-600-1600", final_hash="cd" * 32,
                  records=812, wall_utc=WALL0, station="sim")  # the station's last batch
    batch = make_hashed_batch(tmp_path, ended=False)
    with open(batch / AUDIT_FILE, "ab") as f:
        f.write(b'{"seq":3,"t_s":25.0,"wall')  # killed during an append
    with open(batch / TRACE_FILE, "ab") as f:
        f.write(b"26.000,2026-11-24T21:1")  # and during a trace write
    result = verify_batch(batch, anchor_log=anchor_log)
    assert result.verdict is Verdict.INTERRUPTED
    assert result.ok
    assert result.reason.startswith("intact so far, interrupted: 3 records, the last "
                                    "'checkpoint' at t = 20 s")
    assert result.warnings == (
        f"{AUDIT_FILE}: a torn last line of 25 bytes (an append cut short by the crash; "
        "resume removes it)",
        f"{TRACE_FILE}: 2 rows after the last checkpoint (record 2) not yet covered by the "
        "audit, and a torn last row of 22 bytes",
        f"batch {batch.name} is not in the anchor log {anchor_log} yet (a batch is anchored "
        "when it ends)",
    )


def test_an_interrupted_batch_with_an_edited_covered_row_is_tampering(tmp_path: Path) -> None:
    batch = make_hashed_batch(tmp_path, ended=False)
    lines = trace_lines(batch)
    del lines[3]
    write_trace(batch, lines)
    result = verify_batch(batch)
    assert result.verdict is Verdict.TAMPERED
    assert result.reason.startswith(f"{TRACE_FILE}: the header or rows 1-5 changed")


def test_batch_ended_must_carry_the_trace_hash_when_checkpoints_do(hashed: Path) -> None:
    records = audit_records(hashed)
    for key in ("trace_sha256", "trace_bytes", "trace_rows"):
        del records[-1][key]
    rewrite_chain(hashed, records)
    result = verify_batch(hashed)
    assert result.verdict is Verdict.TAMPERED
    assert result.reason == (f"{AUDIT_FILE}: the 'batch_ended' record does not carry the trace "
                             "hash (the last record that does is 2)")


def test_summary_digest_is_the_same_for_the_dict_and_the_file(hashed: Path) -> None:
    """NaN, tuples and enums are stored as strings and lists: the digest follows the file."""

    class Outcome(enum.StrEnum):
        COMPLETED = "completed"

    live = {**SUMMARY, "outcome": Outcome.COMPLETED, "operators": ("ana",),
            "audit_final_hash": "ab" * 32, "audit_records": 9}
    stored = json.loads((hashed / SUMMARY_FILE).read_text(encoding="utf-8"))
    assert summary_digest(live) == summary_digest(stored) == audit_records(hashed)[-1][
        "summary_sha256"]


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("absent", None, "not a folder"),
    ("file.txt", b"x", "not a folder"),
    ("", None, f"no {AUDIT_FILE}"),
    (AUDIT_FILE, b"", f"{AUDIT_FILE} holds no complete record (a batch that never started?)"),
    (AUDIT_FILE, b'{"seq":0,"event":"hello"}\n',
     f"the first record of {AUDIT_FILE} is 'hello', not 'batch_created'"),
    (AUDIT_FILE, b"timestamp,value\n1,2\n", f"the first line of {AUDIT_FILE} is not an audit "
                                            "record"),
])
def test_a_folder_that_is_not_a_batch_says_so(tmp_path: Path, name: str, content: bytes | None,
                                              reason: str) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    result = verify_batch(tmp_path if name == AUDIT_FILE else tmp_path / name)
    assert (result.verdict, result.ok, result.reason) == (Verdict.NOT_A_BATCH, False, reason)


def _end_after_the_trace_stopped(batch: Path) -> None:
    """Finish an unended hashed batch as the session does when the disk filled: the trace
    stopped (recorded), the audit went on, batch_ended carries no trace hash."""
    with AuditLog.open_existing(batch / AUDIT_FILE) as log:
        log.append("records_degraded", t_s=25.0, wall=wall(25.0), what="trace stopped",
                   reason="disk full", disk_full=True, rows_written=12)
        log.append("batch_ended", t_s=30.0, wall=wall(30.0), outcome="completed",
                   summary_sha256=summary_digest(SUMMARY))
        write_summary(batch, {**SUMMARY, "audit_final_hash": log.final_hash,
                              "audit_records": log.count})


def test_a_trace_stopped_by_a_full_disk_is_checked_up_to_its_last_hash(tmp_path: Path) -> None:
    batch = make_hashed_batch(tmp_path, ended=False)
    _end_after_the_trace_stopped(batch)
    result = verify_batch(batch)
    assert result.verdict is Verdict.INTACT, result.reason
    assert "trace.csv: 10 rows covered" in result.reason
    assert result.warnings == (f"{TRACE_FILE}: 2 rows after the last checkpoint (record 2) not "
                               "yet covered by the audit (the trace stopped at record 3)",)
    lines = trace_lines(batch)
    lines[4] = lines[4].replace(b",200.000", b",210.000")
    write_trace(batch, lines)
    assert verify_batch(batch).reason.startswith(f"{TRACE_FILE}: the header or rows 1-5 changed")
