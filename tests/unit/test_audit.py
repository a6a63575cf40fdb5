"""AuditLog: record format and hash, durability per append, resume after a torn write."""

from __future__ import annotations

import builtins
import hashlib
import json
import math
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.records.audit import GENESIS_HASH, AuditLog, RecordError, scan_chain
from controller.records.batch import write_frozen, write_summary
from controller.records.folder import AUDIT_FILE, RECIPE_FILE, STATION_FILE
from controller.records.verify import Verdict, verify_batch

WALL0 = datetime(2026, 11, 24, 21, 18, 40, 123456, tzinfo=UTC)
RECIPE_SHA = "a" * 64
STATION_SHA = "b" * 64


def new_log(path: Path, **fields: Any) -> AuditLog:
    return AuditLog.create(path, "0.1.0", RECIPE_SHA, STATION_SHA, t_s=0.0, wall=WALL0, **fields)


def expected_hash(record: dict[str, Any]) -> str:
    """The contract, restated independently of the implementation."""
    body = {k: v for k, v in record.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- format --------------------------------------------------------------------------------


def test_first_record_carries_version_and_hashes(tmp_path: Path) -> None:
    path = tmp_path / AUDIT_FILE
    with new_log(path, operator="ana") as log:
        assert (log.count, log.final_hash) == (1, lines_of(path)[0]["hash"])
    (first,) = lines_of(path)
    assert first == {
        "seq": 0, "t_s": 0.0, "wall_utc": "2026-11-24T21:18:40.123Z", "event": "batch_created",
        "operator": "ana", "recipe_sha256": RECIPE_SHA, "software_version": "0.1.0",
        "station_sha256": STATION_SHA, "prev": GENESIS_HASH, "hash": expected_hash(first),
    }
    assert list(first)[:4] == ["seq", "t_s", "wall_utc", "event"]
    assert list(first)[-2:] == ["prev", "hash"]


def test_records_chain_and_append_returns_what_is_stored(tmp_path: Path) -> None:
    path = tmp_path / AUDIT_FILE
    with new_log(path) as log:
        returned = [log.append("setpoint_written", t_s=12.5 * i, wall=WALL0 + timedelta(seconds=i),
                               who="runner", what="furnace", old=[1, 2.5], new={"b": 1, "a": "é"},
                               why="ramp") for i in range(1, 4)]
        final_hash, count = log.final_hash, log.count
    records = lines_of(path)
    assert returned == records[1:]
    assert [r["seq"] for r in records] == [0, 1, 2, 3]
    for before, after in zip(records, records[1:], strict=False):
        assert after["prev"] == before["hash"]
    assert all(r["hash"] == expected_hash(r) for r in records)
    assert (final_hash, count) == (records[-1]["hash"], 4)
    assert records[2]["wall_utc"] == "2026-11-24T21:18:42.123Z"
    assert "é" in path.read_text(encoding="utf-8")  # ensure_ascii=False


def test_wall_time_in_another_zone_is_stored_as_utc(tmp_path: Path) -> None:
    with new_log(tmp_path / AUDIT_FILE) as log:
        record = log.append("x", t_s=1.0, wall=WALL0.astimezone(timezone(timedelta(hours=-5))))
    assert record["wall_utc"] == "2026-11-24T21:18:40.123Z"


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_finite_floats_round_trip_exactly(tmp_path: Path, value: float) -> None:
    path = tmp_path / "float.jsonl"
    path.unlink(missing_ok=True)
    with new_log(path) as log:
        log.append("reading", t_s=1.0, wall=WALL0, measured=value)
    stored = lines_of(path)[1]["measured"]
    assert stored == value
    assert math.copysign(1.0, stored) == math.copysign(1.0, value)  # -0.0 stays -0.0


def test_non_finite_values_are_stored_as_strings(tmp_path: Path) -> None:
    path = tmp_path / AUDIT_FILE
    with new_log(path) as log:
        log.append("interlock_trip", t_s=1.0, wall=WALL0, measured=float("nan"),
                   limits=[float("inf"), -float("inf")])
    record = lines_of(path)[1]
    assert (record["measured"], record["limits"]) == ("NaN", ["Infinity", "-Infinity"])
    assert "NaN," not in path.read_text(encoding="utf-8")  # strict JSON only
    assert scan_chain(path.read_bytes()).count == 2


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"seq": 5}, ValueError),
    ({"prev": "x"}, ValueError),
    ({"hash": "x"}, ValueError),
    ({"wall_utc": "x"}, ValueError),
    ({"value": object()}, TypeError),
    ({"t_s": float("nan")}, ValueError),
    ({"wall": WALL0.replace(tzinfo=None)}, ValueError),
    ({"event": ""}, ValueError),
])
def test_bad_arguments_write_nothing(tmp_path: Path, kwargs: dict[str, Any],
                                     error: type[Exception]) -> None:
    path = tmp_path / AUDIT_FILE
    with new_log(path) as log:
        before = path.read_bytes()
        args: dict[str, Any] = {"event": "x", "t_s": 1.0, "wall": WALL0, **kwargs}
        with pytest.raises(error):
            log.append(args.pop("event"), **args)
        assert path.read_bytes() == before
        log.append("still_usable", t_s=2.0, wall=WALL0)
        assert log.count == 2


@pytest.mark.parametrize("digest", ["A" * 64, "a" * 63, "", "g" * 64])
def test_create_refuses_malformed_hashes(tmp_path: Path, digest: str) -> None:
    with pytest.raises(ValueError, match="64 lowercase hex"):
        AuditLog.create(tmp_path / AUDIT_FILE, "0.1.0", digest, STATION_SHA, t_s=0.0, wall=WALL0)
    assert not (tmp_path / AUDIT_FILE).exists()


def test_create_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / AUDIT_FILE
    new_log(path).close()
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        new_log(path)
    assert path.read_bytes() == before


# --- durability ----------------------------------------------------------------------------


def test_every_append_is_fsynced_before_it_returns(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / AUDIT_FILE
    log = new_log(path)
    synced_sizes: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced_sizes.append(os.fstat(fd).st_size)  # what is in the file when fsync is called
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    with log:
        for i in range(5):
            log.append("x", t_s=float(i), wall=WALL0, i=i)
            assert synced_sizes[-1] == path.stat().st_size  # the whole line, then fsync
    assert len(synced_sizes) == 5


def test_file_is_opened_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []

    def counting_open(*args: Any, **kwargs: Any) -> Any:
        opened.append(str(args[0]))
        return builtins.open(*args, **kwargs)

    monkeypatch.setattr("controller.records.audit.open", counting_open, raising=False)
    with new_log(tmp_path / AUDIT_FILE) as log:
        for i in range(10):
            log.append("x", t_s=float(i), wall=WALL0)
    assert len(opened) == 1


def test_failed_fsync_makes_the_log_refuse_more(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / AUDIT_FILE
    with new_log(path) as log:

        def failing_fsync(fd: int) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fsync", failing_fsync)
        with pytest.raises(OSError, match="Input/output"):
            log.append("x", t_s=1.0, wall=WALL0)
        monkeypatch.undo()
        with pytest.raises(RecordError, match="unusable after"):
            log.append("y", t_s=2.0, wall=WALL0)
        assert log.count == 1  # the failed record was not acknowledged


def test_closed_log_refuses(tmp_path: Path) -> None:
    log = new_log(tmp_path / AUDIT_FILE)
    log.close()
    log.close()
    with pytest.raises(RecordError, match="closed"):
        log.append("x", t_s=1.0, wall=WALL0)


# --- resume --------------------------------------------------------------------------------


def test_open_existing_continues_seq_and_hash(tmp_path: Path) -> None:
    path = tmp_path / AUDIT_FILE
    with new_log(path) as log:
        log.append("a", t_s=1.0, wall=WALL0)
        final_hash = log.final_hash
    with AuditLog.open_existing(path) as log:
        assert (log.count, log.final_hash, log.torn_tail) == (2, final_hash, b"")
        assert log.first_record is not None
        assert log.first_record["recipe_sha256"] == RECIPE_SHA
        record = log.append("resumed", t_s=0.0, wall=WALL0 + timedelta(hours=1))
    assert (record["seq"], record["prev"]) == (2, final_hash)
    scan = scan_chain(path.read_bytes())
    assert (scan.count, scan.bad_index, scan.final_hash) == (3, None, record["hash"])


def _written_batch(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    """A batch whose audit has 3 records, plus the bytes a 4th record would have had."""
    batch = tmp_path / "batch"
    batch.mkdir()
    recipe_sha = write_frozen(batch, RECIPE_FILE, "x = 1\n")
    station_sha = write_frozen(batch, STATION_FILE, "y = 2\n")
    path = batch / AUDIT_FILE
    with AuditLog.create(path, "0.1.0", recipe_sha, station_sha, t_s=0.0, wall=WALL0) as log:
        log.append("a", t_s=1.0, wall=WALL0, who="runner")
        log.append("b", t_s=2.0, wall=WALL0, who="runner")
        good = path.read_bytes()
        log.append("c", t_s=3.0, wall=WALL0, who="runner", why="about to crash")
    full = path.read_bytes()
    return batch, good, full[len(good):]


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.5, 0.99, 1.0])
def test_open_existing_after_a_torn_write_continues_and_verifies(tmp_path: Path,
                                                                 fraction: float) -> None:
    batch, good, lost_line = _written_batch(tmp_path)
    cut = max(1, min(len(lost_line) - 1, round(fraction * len(lost_line))))
    torn = lost_line[:cut]  # the crash left part of the line, never its newline
    path = batch / AUDIT_FILE
    path.write_bytes(good + torn)
    crashed = verify_batch(batch)  # an interrupted batch: the torn line was never acknowledged
    assert crashed.verdict is Verdict.INTERRUPTED, crashed.reason
    assert any("torn last line" in w for w in crashed.warnings)

    with AuditLog.open_existing(path) as log:
        assert log.torn_tail == torn
        assert log.count == 3
        assert path.read_bytes() == good  # the torn bytes are gone before anything is appended
        log.append("torn_tail_recovered", t_s=10.0, wall=WALL0, bytes=len(torn))
        log.append("batch_ended", t_s=11.0, wall=WALL0, outcome="completed")
        write_summary(batch, {"audit_final_hash": log.final_hash, "audit_records": log.count})
    result = verify_batch(batch)
    assert result.ok, result.reason
    assert result.records == 5


def test_every_torn_length_is_recovered(tmp_path: Path) -> None:
    batch, good, lost_line = _written_batch(tmp_path)
    path = batch / AUDIT_FILE
    for cut in range(1, len(lost_line)):
        path.write_bytes(good + lost_line[:cut])
        with AuditLog.open_existing(path) as log:
            assert (log.count, len(log.torn_tail)) == (3, cut)
        assert path.read_bytes() == good


def test_open_existing_refuses_a_broken_chain(tmp_path: Path) -> None:
    batch, good, _ = _written_batch(tmp_path)
    path = batch / AUDIT_FILE
    tampered = good.replace(b'"who":"runner"', b'"who":"intruder"', 1)
    path.write_bytes(tampered)
    with pytest.raises(RecordError, match=r"record 1 \(line 2\): hash does not match"):
        AuditLog.open_existing(path)
    assert path.read_bytes() == tampered  # nothing cut, nothing appended


@pytest.mark.parametrize("content", [b"", b'{"seq":0,"t_s'])
def test_open_existing_refuses_a_log_without_records(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / AUDIT_FILE
    path.write_bytes(content)
    with pytest.raises(RecordError, match="no complete record"):
        AuditLog.open_existing(path)
