"""The batch recorder's trace cadence: rows reach the OS every 30 rows and the disk (fsync)
at most once a minute of real time, so a batch in real time fsyncs as often as before and
a dry run racing through hours a second does not fsync thousands of times."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.recorder import BatchRecorder
from controller.records import trace as trace_module
from controller.records.audit import AuditLog
from controller.records.trace import TraceWriter
from controller.run.clock import VirtualClock

WALL0 = datetime(2026, 1, 1, tzinfo=UTC)


def _recorder(folder: Path, real: list[float]) -> BatchRecorder:
    audit = AuditLog.create(folder / "audit.jsonl", "0.1.0", "0" * 64, "1" * 64, t_s=0.0,
                            wall=WALL0)
    trace = TraceWriter(folder / "trace.csv", ["elapsed_s", "furnace_c"])
    clock = VirtualClock(real_time=lambda: real[0])
    return BatchRecorder(audit, trace, clock)


@pytest.mark.parametrize(("real_s_per_row", "syncs"), [
    (2.0, 10),  # real time (2 s a row): every 30 rows, as a batch always did
    (0.001, 0),  # a dry run: 300 rows in 0.3 s of real time, none before a minute
])
def test_the_trace_is_fsynced_at_most_once_a_real_minute(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real_s_per_row: float,
        syncs: int) -> None:
    real = [0.0]
    recorder = _recorder(tmp_path, real)
    fsyncs: list[int] = []
    monkeypatch.setattr(trace_module.os, "fsync", lambda fd: fsyncs.append(fd))
    for i in range(300):
        real[0] += real_s_per_row
        recorder.trace([2.0 * i, 25.0])
    assert len(fsyncs) == syncs
    # every 30 rows reached the OS all the same, and a checkpoint makes them durable
    assert (tmp_path / "trace.csv").read_text().count("\n") == 301
    recorder.sync_trace()
    assert len(fsyncs) == syncs + 1
    recorder.trace_writer.close()
    recorder.audit_log.close()
