"""Rung 3: after a halt the controller stays with the furnace until it can be opened
(issue 9 item 14): a sensor break at 400 °C halts the batch with the heater off, the
controller goes on recording, judges the temperature from the sample thermocouple, switches
to nitrogen when the argon bottle runs empty during the cool-down, and ends once the
furnace is below the open-tube limit, with the outcome it had."""

from __future__ import annotations

import json
from pathlib import Path

from controller.operator.keys import TerminationPolicy
from controller.run.commands import CommandQueue
from controller.run.handle import RecipeRunner
from controller.run.runstate import Phase
from controller.run.snapshot import Snapshot
from tests.integration.helpers import in_process
from tests.integration.recipes import STALL


async def test_after_a_halt_the_cool_down_is_supervised_to_a_safe_end(tmp_path: Path) -> None:
    batch = in_process(tmp_path, STALL, "halt.toml")
    station, world = batch.station, batch.world
    halted: list[float] = []

    def observer(snap: Snapshot, runner: RecipeRunner) -> None:
        if not halted and snap.furnace_c > 390.0:
            world.furnace.inject_sensor_break(True)
            halted.append(snap.t_s)
        elif halted and snap.t_s > halted[0] + 600.0 and not world.mfcs["Ar"].no_flow:
            world.mfcs["Ar"].no_flow = True  # the argon bottle runs empty meanwhile

    result = await batch.run(tmp_path / "b", observer=observer)
    assert result.state is Phase.FAULTED
    assert result.summary["outcome"] == "faulted"
    records = [json.loads(x) for x in (result.batch_dir / "audit.jsonl").read_text()
               .splitlines()]
    events = [r["event"] for r in records]
    assert events.index("supervision_started") < events.index("supervision_ended") < \
        events.index("batch_ended")
    ended = next(r for r in records if r["event"] == "supervision_ended")
    assert ended["source"] == "sample thermocouple"  # the control thermocouple is broken
    assert ended["temperature_c"] <= station.envelope.open_tube_max_c
    assert ended["t_s"] - halted[0] > 3600.0  # it really waited for the furnace to cool
    switched = next(r for r in records if r["event"] == "inert_gas_switched")
    assert (switched["lost"], switched["to"]) == ("Ar", "N2")
    truth = world.truth()
    assert truth.flows_sccm["N2"] > 150.0  # nitrogen flows into the cooling tube
    assert truth.furnace_c < 150.0


async def test_a_signal_during_supervision_ends_it(tmp_path: Path) -> None:
    """SIGTERM while the controller watches a halted furnace cool (``systemctl stop``):
    the halt command is drained and the process ends at once, with the summary."""
    batch = in_process(tmp_path, STALL, "halt.toml")
    world = batch.world
    queue = CommandQueue()
    halted: list[float] = []

    def observer(snap: Snapshot, runner: RecipeRunner) -> None:
        if not halted and snap.furnace_c > 390.0:
            world.furnace.inject_sensor_break(True)
            halted.append(snap.t_s)
        elif halted and runner.is_final and snap.t_s > halted[0] + 600.0 and not len(queue):
            command = TerminationPolicy().on_signal("SIGTERM")
            assert command is not None
            queue.post(command)

    result = await batch.run(tmp_path / "b", observer=observer, commands=queue)
    records = [json.loads(x) for x in (result.batch_dir / "audit.jsonl").read_text()
               .splitlines()]
    ended = next(r for r in records if r["event"] == "supervision_ended")
    assert "going away" in ended["reason"]
    assert ended["t_s"] - halted[0] < 700.0  # it did not wait for the furnace to cool
    assert result.summary["outcome"] == "faulted"
    assert (result.batch_dir / "summary.json").exists()
