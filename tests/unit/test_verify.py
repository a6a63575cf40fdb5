"""verify_batch against tampering and crashes; the batch folder, frozen files and summary."""

from __future__ import annotations

import hashlib
import json
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.audit import AuditLog
from controller.batch import (
    AUDIT_FILE,
    RECIPE_FILE,
    STATION_FILE,
    SUMMARY_FILE,
    batch_id,
    create_batch_dir,
    verify_batch,
    write_frozen,
    write_summary,
)

WALL0 = datetime(2026, 11, 24, 21, 18, 40, tzinfo=UTC)
RECIPE = 'name = "POP70-600-1600"\r\n[[stage]]\nto_c = 600.0\n'
STATION = 'name = "sim"\n'


def make_batch(root: Path, n_events: int = 4, *, summary: bool = True) -> Path:
    """A finished batch: frozen files, 1 + n_events audit records, a summary."""
    batch = create_batch_dir(root, "POP70-600-1600", WALL0)
    recipe_sha = write_frozen(batch, RECIPE_FILE, RECIPE)
    station_sha = write_frozen(batch, STATION_FILE, STATION)
    with AuditLog.create(batch / AUDIT_FILE, "0.1.0", recipe_sha, station_sha, t_s=0.0,
                         wall=WALL0, operator="ana") as log:
        for i in range(n_events):
            log.append("setpoint_written", t_s=1.5 * (i + 1), wall=WALL0 + timedelta(seconds=i),
                       who="runner", old=600.0 + i, new=601.25 + i, why="ramp",
                       detail={"stage": "préchauffage", "step": i})
        if summary:
            write_summary(batch, {"outcome": "completed", "audit_final_hash": log.final_hash,
                                  "audit_records": log.count})
    return batch


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
    assert result.warnings == ()
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
        write_summary(batch, {"audit_final_hash": log.final_hash, "audit_records": log.count})
    result = verify_batch(batch)
    assert result.ok, result.reason
    assert result.warnings == ("record 1: wall clock went back 3600.000 s",)


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


@pytest.mark.parametrize("name", [RECIPE_FILE, STATION_FILE, AUDIT_FILE, SUMMARY_FILE])
def test_missing_file_fails(batch: Path, name: str) -> None:
    (batch / name).unlink()
    result = verify_batch(batch)
    assert not result.ok
    assert result.reason.startswith(name)


def test_missing_summary_says_so(batch: Path) -> None:
    (batch / SUMMARY_FILE).unlink()
    result = verify_batch(batch)
    assert (result.ok, result.records, result.first_bad) == (False, 5, None)
    assert result.reason == (f"{SUMMARY_FILE}: missing (batch still running, interrupted, "
                             "or the file was deleted)")


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
    path = create_batch_dir(tmp_path, sample, WALL0)
    assert path.name == f"20261124T211840Z_{expected}"
    assert path.is_dir()
    assert not set('<>:"/\\|?*') & set(path.name)


def test_batch_dirs_are_unique(tmp_path: Path) -> None:
    names = [create_batch_dir(tmp_path / "batches", "S", WALL0).name for _ in range(3)]
    assert names == ["20261124T211840Z_S", "20261124T211840Z_S-2", "20261124T211840Z_S-3"]


def test_existing_batch_is_never_touched(batch: Path) -> None:
    before = {p.name: p.read_bytes() for p in batch.iterdir()}
    again = create_batch_dir(batch.parent, "POP70-600-1600", WALL0)
    assert again != batch
    assert {p.name: p.read_bytes() for p in batch.iterdir()} == before


def test_naive_start_time_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        create_batch_dir(tmp_path, "S", WALL0.replace(tzinfo=None))
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
