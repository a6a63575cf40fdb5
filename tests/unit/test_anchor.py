"""The anchor log: one line per ended batch, appended safely by several processes at once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import platformdirs
import pytest

from controller.records.anchor import (
    ANCHOR_DIR_ENV,
    MAX_LINE_BYTES,
    Anchor,
    append_anchor,
    check_anchor,
    default_anchor_path,
    find_anchor,
)

WALL = datetime(2026, 11, 25, 8, 2, 11, tzinfo=UTC)
HASH_A, HASH_B = "ab" * 32, "cd" * 32
BATCH = "20261124T211840Z_POP70-600-1600"


def test_append_writes_one_sorted_json_line_and_creates_folders(tmp_path: Path) -> None:
    log = tmp_path / "state" / "anchors" / "lab-1.anchors.jsonl"
    append_anchor(log, batch_id=BATCH, final_hash=HASH_A, records=1234, wall_utc=WALL,
                  station="lab-1")
    assert log.read_bytes() == (
        b'{"batch_id":"20261124T211840Z_POP70-600-1600","final_hash":"' + HASH_A.encode()
        + b'","records":1234,"schema_version":1,"station":"lab-1",'
        b'"wall_utc":"2026-11-25T08:02:11.000Z"}\n')
    append_anchor(log, batch_id="other", final_hash=HASH_B, records=5, wall_utc=WALL,
                  station="lab-1")
    assert len(log.read_bytes().splitlines()) == 2


def test_check_anchor_finds_the_batch_and_compares(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    append_anchor(log, batch_id=BATCH, final_hash=HASH_A, records=10, wall_utc=WALL,
                  station="s")
    assert check_anchor(log, BATCH, HASH_A, 10) == (
        True, f"matches the anchor log {log} (anchored 2026-11-25T08:02:11.000Z)")
    ok, why = check_anchor(log, BATCH, HASH_B, 10)
    assert not ok
    assert why == (f"the anchor log {log} has 10 records ending in {HASH_A[:16]}... "
                   f"(anchored 2026-11-25T08:02:11.000Z); the folder has 10 ending in "
                   f"{HASH_B[:16]}...")
    assert not check_anchor(log, BATCH, HASH_A, 9)[0]
    assert check_anchor(log, "missing", HASH_A, 10) == (
        False, f"batch missing is not in the anchor log {log}")


def test_the_last_line_for_a_batch_counts_and_junk_is_skipped(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    append_anchor(log, batch_id=BATCH, final_hash=HASH_A, records=10, wall_utc=WALL,
                  station="s")
    with open(log, "ab") as f:
        f.write(b'not json\n[1, 2]\n{"batch_id": 3}\n\n{"batch_id":"' + BATCH.encode()
                + b'","final_ha')  # a torn line from a crash, at the end
    assert find_anchor(log, BATCH) == Anchor(BATCH, HASH_A, 10, "s",
                                             "2026-11-25T08:02:11.000Z")
    with open(log, "ab") as f:
        f.write(b"\n")
    append_anchor(log, batch_id=BATCH, final_hash=HASH_B, records=12, wall_utc=WALL,
                  station="s")
    assert check_anchor(log, BATCH, HASH_B, 12)[0]
    assert not check_anchor(log, BATCH, HASH_A, 10)[0]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"batch_id": ""}, "batch_id"),
    ({"final_hash": "0" * 63}, "final_hash"),
    ({"final_hash": "AB" * 32}, "final_hash"),
    ({"records": 0}, "records"),
    ({"records": True}, "records"),
    ({"station": "x" * MAX_LINE_BYTES}, "exceeds 4096"),
    ({"station": "\udc80"}, "surrogates not allowed"),
])
def test_bad_arguments_write_nothing(tmp_path: Path, kwargs: dict[str, object],
                                     match: str) -> None:
    log = tmp_path / "a.jsonl"
    args: dict[str, object] = {"batch_id": BATCH, "final_hash": HASH_A, "records": 3,
                               "wall_utc": WALL, "station": "s", **kwargs}
    with pytest.raises(ValueError, match=match):
        append_anchor(log, **args)  # type: ignore[arg-type]
    assert not log.exists()


def test_concurrent_appenders_lose_and_tear_no_line(tmp_path: Path) -> None:
    """Several processes append at once: every line arrives whole."""
    log = tmp_path / "anchors" / "sim.anchors.jsonl"
    script = textwrap.dedent(f"""
        import sys
        from datetime import datetime, UTC
        from pathlib import Path
        from controller.records.anchor import append_anchor
        worker = int(sys.argv[1])
        for i in range(100):
            append_anchor(Path({str(log)!r}), batch_id=f"w{{worker}}-{{i:03d}}-" + "x" * 2000,
                          final_hash="{HASH_A}", records=i + 1,
                          wall_utc=datetime(2026, 1, 1, tzinfo=UTC), station="sim")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(w)]) for w in range(6)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 6
    lines = log.read_bytes().split(b"\n")
    assert lines[-1] == b""
    ids = sorted(json.loads(line)["batch_id"][:7] for line in lines[:-1])
    assert ids == sorted(f"w{w}-{i:03d}-" for w in range(6) for i in range(100))


def test_default_path_is_machine_wide_and_overridable(tmp_path: Path) -> None:
    site = Path(platformdirs.site_state_dir("furnace", appauthor=False))
    assert default_anchor_path("lab-1", environ={}) == site / "anchors" / "lab-1.anchors.jsonl"
    assert default_anchor_path('a<b>:"c/d', environ={ANCHOR_DIR_ENV: str(tmp_path)}) == (
        tmp_path / "a_b___c_d.anchors.jsonl")
    assert default_anchor_path("...", environ={ANCHOR_DIR_ENV: str(tmp_path)}).name == (
        "unnamed.anchors.jsonl")
