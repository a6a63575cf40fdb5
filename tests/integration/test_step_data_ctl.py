"""Operator-step data end to end (issue 11 acceptance): a batch waits at its loading step on
a station where a person confirms; ``furnace ctl BATCH confirm`` with missing or
out-of-bounds data is refused with exit code 2 and one line, and the batch keeps waiting; a
good confirmation goes on, and its values are in the audit chain and in summary.json."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.cli import main
from controller.records.folder import BatchFolder
from controller.session import run_batch
from controller.web.server import serve_batch
from tests.integration.helpers import in_process

pytestmark = pytest.mark.timeout(60)
LOG_LINE = re.compile(r"^(\[\d\d:\d\d:\d\d\]|\s{5,})")

RECIPE = '''schema_version = 1
name = "T"
sample = "LOADTEST"

[sample_material]
precursor = "pitch"
acid_wt = 70
mass_g = 2.0

[[stages]]
name = "load"
atmosphere = "Ar"

[[stages.steps]]
kind = "operator"
message = "Weigh the pitch and the acid into the boat and close the tube."
opens_tube = true
sample_action = "load"
flows_sccm = {}

[[stages.steps.fields]]
name = "pitch_g"
role = "precursor_g"
unit = "g"
min = 0.05
max = 20

[[stages.steps.fields]]
name = "acid_g"
role = "acid_g"
unit = "g"
min = 0.01
max = 40

[[stages.steps.fields]]
name = "note"
role = "note"
kind = "text"
required = false

[[stages]]
name = "purge"
atmosphere = "Ar"

[[stages.steps]]
kind = "purge"
gas = "Ar"
flow_sccm = 500
volumes = 2

[[stages.steps]]
kind = "end"
'''


async def until(condition: Callable[[], bool], what: str) -> None:
    """Yield to the running batch until ``condition`` holds (no real sleep)."""
    for _ in range(200_000):
        if condition():
            return
        await asyncio.sleep(0)  # noqa: TID251 - one loop turn for the batch to run
    raise AssertionError(f"never: {what}")


def events(batch: Path, name: str) -> list[dict[str, object]]:
    if not (batch / "audit.jsonl").exists():
        return []
    return [r for r in BatchFolder.open(batch, needs=()).read_audit() if r["event"] == name]


async def ctl(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["ctl", *args])
    captured = capsys.readouterr()
    # The batch runs in this process: its own log lines (time-stamped) are not ctl's.
    lines = [line for line in (captured.out + captured.err).splitlines()
             if line.strip() and not LOG_LINE.match(line)]
    return code, lines


async def test_confirm_with_missing_or_out_of_bounds_data_is_refused_with_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ip = in_process(tmp_path, RECIPE)
    batches = tmp_path / "batches"
    run = asyncio.create_task(run_batch(
        plan=ip.plan, station=ip.station, recipe_text=ip.recipe_text,
        station_text=ip.station_text, clock=ip.clock, batches_dir=batches, operator="ann",
        built=ip.built, auto_confirm=False, serve=serve_batch()))
    await until(lambda: batches.exists() and any(batches.iterdir()), "the batch folder")
    batch = next(batches.iterdir())
    await until(lambda: (batch / "control.json").exists()
                and bool(events(batch, "step_started")), "waiting at the loading step")
    where = str(batch)

    code, lines = await ctl(capsys, where, "confirm", "--operator", "ann")
    assert code == 2
    assert len(lines) == 1
    assert "pitch_g: missing" in lines[0]

    code, lines = await ctl(capsys, where, "confirm", "--operator", "ann",
                            "--set", "pitch_g=0.6", "--set", "acid_g=400")
    assert code == 2
    assert len(lines) == 1
    assert "acid_g: 400 g is above the maximum 40 g" in lines[0]

    code, lines = await ctl(capsys, where, "confirm", "--operator", "ann", "--set", "pitch_g")
    assert code == 2
    assert len(lines) == 1
    assert "not FIELD=VALUE" in lines[0]

    # Refused means nothing happened: no confirmation recorded, still at the loading step.
    assert events(batch, "operator_confirmed") == []
    assert not run.done()
    assert [r["index"] for r in events(batch, "step_started")] == [0]

    code, lines = await ctl(capsys, where, "confirm", "--operator", "bob", "--set",
                            "pitch_g=0.61", "--set", "acid_g=1.39", "--set",
                            "note=black pitch, clear acid")
    assert code == 0, lines
    result = await asyncio.wait_for(run, 60)
    assert result.summary["outcome"] == "completed"
    [confirmed] = events(batch, "operator_confirmed")
    assert confirmed["data"] == {"pitch_g": 0.61, "acid_g": 1.39,
                                 "note": "black pitch, clear acid"}
    assert (confirmed["operator"], confirmed["simulated"]) == ("bob", False)
    summary = json.loads((batch / "summary.json").read_text(encoding="utf-8"))
    [step] = summary["step_data"]
    assert step["data"]["pitch_g"] == 0.61
    assert step["data_source"] == "operator"
    assert summary["operators"] == ["ann", "bob"]
    assert summary["end"] == {"kind": "completed", "reason": "recipe completed", "by": None}
