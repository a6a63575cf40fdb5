"""``furnace sweep`` (issue 14 item 3) through the real command line, on the short smoke
recipe at --speed max with two workers: each variant is a batch folder that verifies, the
table has a row per variant that agrees with its summary.json; bad ``--set`` or a real bus
is one line, exit 2, nothing run; a variant that faults leaves the others completed (exit
1); SIGINT mid-sweep halts the running batches once each (folders intact), runs nothing
more and still writes the table, without a traceback."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from controller.records.folder import BatchFolder
from tests.conftest import PROFILES, ROOT
from tests.integration.helpers import furnace

pytestmark = pytest.mark.timeout(300)

SMOKE = PROFILES / "smoke-600.toml"


def _sweep(batches: Path, *args: str) -> list[str]:
    return furnace("sweep", str(SMOKE), "--jobs", "2", "--speed", "max", "--batches",
                   str(batches), *args)


def _table(batches: Path) -> list[dict[str, str]]:
    [table] = batches.glob("*_sweep_smoke/sweep.csv")
    with table.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _summary(row: dict[str, str]) -> dict[str, Any]:
    return json.loads((Path(row["batch_dir"]) / "summary.json").read_text("utf-8"))


def _verifies(batch_dir: str, capsys: pytest.CaptureFixture[str]) -> bool:
    code = main(["verify", batch_dir])
    capsys.readouterr()
    return code == 0


def _batch_folders(batches: Path) -> set[str]:
    return {str(p.parent) for p in batches.glob("*/audit.jsonl")}


def test_each_variant_is_a_batch_and_a_row_of_the_table(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    batches = tmp_path / "b"
    proc = subprocess.run(_sweep(batches, "--set", "peak_c=500,600"), capture_output=True,
                          text=True, timeout=240, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _table(batches)
    assert [r["peak_c"] for r in rows] == ["500", "600"]
    assert {r["batch_dir"] for r in rows} == _batch_folders(batches)
    for row in rows:
        summary = _summary(row)
        assert row["outcome"] == summary["outcome"] == "completed"
        assert summary["parameters"] == {"peak_c": float(row["peak_c"])}
        assert row["sample"] == summary["sample"] == f"SMOKE-{row['peak_c']}"
        assert float(row["duration_h"]) == pytest.approx(summary["actual_s"] / 3600, abs=1e-4)
        assert float(row["gas_Ar_l"]) == pytest.approx(summary["gas_used_l"]["Ar"], abs=1e-3)
        assert float(row["yield_loaded_pct"]) == pytest.approx(
            summary["yields"]["yield_loaded_pct"], abs=0.01)
        assert (row["interlock_trips"], row["alarms"]) == ("0", "0")
        assert _verifies(row["batch_dir"], capsys)
    # a hotter peak takes longer: the rows are not each other's
    assert float(rows[1]["duration_h"]) > float(rows[0]["duration_h"])
    assert (next(batches.glob("*_sweep_smoke")) / "sweep.png").stat().st_size > 0
    assert "speed-up" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("sets", "words"), [
    (["peak_c=600,abc"], ["--set peak_c", "'abc' is not a number"]),
    (["peak_c=600,1200"], ["parameters.peak_c", "1200 is outside [200, 1000]"]),
    (["colour=1,2"], ["--set colour", "unknown parameter"]),
    (["peak_c="], ["--set peak_c", "empty list"]),
    (["peak_c=600,,700"], ["--set peak_c", "list of values"]),
    (["peak_c=600", "peak_c=700"], ["--set peak_c", "more than once"]),
    (["peak_c=600,400"], ["to_c", "not below", "variant peak_c=400"]),  # compiles only at 600
    ([], ["--set", "KEY=V1,V2"]),
], ids=["not-a-number", "out-of-bounds", "unknown", "empty", "empty-value", "twice",
        "one-variant-invalid", "no-set"])
def test_bad_set_is_one_line_exit_2_and_nothing_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], sets: list[str],
        words: list[str]) -> None:
    batches = tmp_path / "b"
    argv = ["sweep", str(SMOKE), "--batches", str(batches)]
    assert main([*argv, *(x for s in sets for x in ("--set", s))]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    assert not batches.exists()


def test_a_real_bus_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    batches = tmp_path / "b"
    assert main(["sweep", str(SMOKE), "--set", "peak_c=500,600", "--station",
                 str(ROOT / "stations" / "sim-tcp.toml"), "--batches", str(batches)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert "bus.kind" in err
    assert "in-process simulator" in err
    assert not batches.exists()


def test_a_faulted_variant_leaves_the_others_completed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A sensor break 4 h into every batch: the 500 °C variant has ended by then (about
    3.4 h), the 1000 °C one is still heating (about 8 h) and ends faulted."""
    batches = tmp_path / "b"
    proc = subprocess.run(_sweep(batches, "--set", "peak_c=500,1000", "--fault",
                                 "sensor_break@4h"),
                          capture_output=True, text=True, timeout=240, cwd=ROOT, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    done, faulted = _table(batches)
    assert (done["peak_c"], done["outcome"]) == ("500", "completed")
    assert (faulted["peak_c"], faulted["outcome"]) == ("1000", "faulted")
    assert "sensor" in faulted["end_reason"]
    assert faulted["end_reason"] == _summary(faulted)["end_reason"]
    assert int(faulted["interlock_trips"]) >= 1
    for row in (done, faulted):
        assert _verifies(row["batch_dir"], capsys)
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("to", ["parent", "group"])
def test_sigint_halts_the_running_batches_and_keeps_the_table(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], to: str) -> None:
    """SIGINT to the sweep alone (the parent tells its workers), or to its whole process
    group as a terminal's Ctrl-C (each worker has it twice: its own and the parent's)."""
    batches = tmp_path / "b"
    with (tmp_path / "out.txt").open("wb") as out, (tmp_path / "err.txt").open("wb") as err:
        proc = subprocess.Popen(_sweep(batches, "--set", "peak_c=500,600,700"),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=ROOT,
                                start_new_session=to == "group")
        try:
            _wait_for_trace_rows(proc, batches)
            if to == "group":
                os.killpg(proc.pid, signal.SIGINT)
            else:
                os.kill(proc.pid, signal.SIGINT)
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    stderr = (tmp_path / "err.txt").read_text("utf-8", "replace")
    assert code == 1, stderr
    assert "Traceback" not in stderr
    rows = _table(batches)
    assert [r["peak_c"] for r in rows] == ["500", "600", "700"]
    # two workers, longest first (700, 600): the shortest, 500, never started
    assert [r["outcome"] == "not run" for r in rows] == [True, False, False]
    started = [r for r in rows if r["batch_dir"]]
    assert {r["batch_dir"] for r in started} == _batch_folders(batches)
    assert any(r["outcome"] == "faulted" for r in started)
    for row in started:
        assert row["outcome"] in ("faulted", "completed"), row
        if row["outcome"] == "faulted":
            assert row["end_reason"].startswith("SIGINT: ")
        audit = list(BatchFolder(Path(row["batch_dir"])).read_audit())
        halts = [a for a in audit if a["event"] == "operator_command"
                 and a["trigger"] == "halt"]
        assert len(halts) == (row["outcome"] == "faulted")  # once, however many signals
        assert audit[-1]["event"] == "batch_ended"
        assert _verifies(row["batch_dir"], capsys)


def _wait_for_trace_rows(proc: subprocess.Popen[bytes], batches: Path) -> None:
    """Until a batch's trace.csv has rows beyond its header. Bounded: short waits on the
    process, no sleeping."""
    for _ in range(2400):  # 120 s
        for trace in batches.glob("*/trace.csv"):
            with trace.open("rb") as f:
                if sum(1 for _ in f) > 2:
                    return
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"furnace sweep ended early with exit code {proc.returncode}")
    raise AssertionError("no batch of the sweep wrote a trace row within 120 s")


async def test_the_numbers_handed_on_by_the_ended_batch_are_its_folders(tmp_path: Path) -> None:
    """A sweep variant takes its table's numbers and its overlay curve from the records its
    summary read back, not from a second reading of the folder: the two must agree, field
    for field, and so must the trips and alarms counted from its audit."""
    from dataclasses import fields, replace

    import numpy as np

    from controller.archive.compare import from_folder
    from controller.sweep import _compared, _trips_and_alarms
    from tests.integration.helpers import dry_run

    result = (await dry_run(SMOKE, tmp_path / "b")).result
    assert result.data is not None
    handed_on = _compared(result)
    read_again = from_folder(result.batch_dir)
    assert handed_on is not None
    assert len(handed_on.temperature_c) > 100  # the smoke batch has a TGA curve to compare
    for f in fields(read_again):
        ours, theirs = getattr(handed_on, f.name), getattr(read_again, f.name)
        if isinstance(theirs, np.ndarray):
            np.testing.assert_array_equal(ours, theirs, err_msg=f.name)
        else:
            assert ours == theirs, f.name
    assert _trips_and_alarms(result) == _trips_and_alarms(replace(result, data=None))
