"""The dry run's trace is pinned: a change that makes the scan cycle faster (issue 14) must
not change one byte of what it records, except the wall-clock column.

The smoke batch (the session's shared dry run of ``smoke-600`` at 450 °C, 5,340 rows) is
deterministic for seed 0. Its trace, with ``wall_utc`` cut out of every line, hashes to
the value below, taken on main before the hot path was reworked. If this test fails after a
change that was *meant* to change what is recorded (physics, a column, a format), say so in
the commit and update the hash; if the change was meant only to be faster, it is a bug.
"""

from __future__ import annotations

import hashlib
import re

from tests.conftest import PROFILES
from tests.integration.helpers import DryRuns

SMOKE = PROFILES / "smoke-600.toml"
SETS = {"peak_c": "450"}  # the same key as test_over_the_wire's in-process twin: one run
PINNED_SHA256 = "407b1402600ad887f3663a36fc4e2669c19cb08315eb8b3cfbda0867fa68674d"
PINNED_LINES = 5341  # header, 5,339 rows and the empty string after the last newline
_SECOND_CELL = re.compile(rb"^([^,\n]*),[^,\n]*", re.MULTILINE)


def _without_wall_time(trace: bytes) -> bytes:
    """The trace with its second column (``wall_utc``, the real time of a virtual-clock
    run) removed from every line, header included."""
    header = trace[:trace.index(b"\n")].split(b",")
    assert header[1] == b"wall_utc", header
    return _SECOND_CELL.sub(rb"\1", trace)


def test_the_smoke_trace_is_byte_identical_but_for_wall_time(dry_runs: DryRuns) -> None:
    batch = dry_runs(SMOKE, SETS)
    trace = (batch.result.batch_dir / "trace.csv").read_bytes()
    stripped = _without_wall_time(trace)
    assert len(stripped.split(b"\n")) == PINNED_LINES
    assert hashlib.sha256(stripped).hexdigest() == PINNED_SHA256


def test_the_pin_cuts_only_the_wall_time_column() -> None:
    trace = (b"elapsed_s,wall_utc,stage,note\n"
             b"0.000,2026-12-01T18:18:51Z,purge,\"a, b\"\n"
             b"2.000,2026-12-01T18:18:53Z,purge,\n")
    assert _without_wall_time(trace) == (b"elapsed_s,stage,note\n0.000,purge,\"a, b\"\n"
                                         b"2.000,purge,\n")
