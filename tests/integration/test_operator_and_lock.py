"""Operator commands reach a running batch and are audited; one run per station.

The batches are ``recipes.TINY`` (a purge, a short ramp and dwell under argon: 35 min of
process time): what is tested is the batch as a whole (commands applied, a second run
refused while the first runs on to completion), not its process.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from controller.operator.control_client import send_command
from controller.operator.lock import StationBusyError
from controller.recipe.plan import load_recipe
from controller.recipe.station import Station, load_station, load_station_text
from controller.run.clock import VirtualClock
from controller.run.commands import Command, CommandQueue
from controller.run.handle import RecipeRunner
from controller.run.runstate import Phase
from controller.run.snapshot import Snapshot
from controller.session import run_batch
from controller.station_factory import serve_simulator
from controller.web.server import serve_batch
from tests.conftest import ROOT
from tests.integration.helpers import free_port
from tests.integration.recipes import TINY, write


def _audit(batch: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (batch / "audit.jsonl").read_text().splitlines()]


async def test_commands_from_the_queue_and_the_socket_are_applied(tmp_path: Path) -> None:
    station, text = load_station(None)
    _, plan, frozen = load_recipe(write(tmp_path, TINY), {}, station)
    queue = CommandQueue()  # empty, hence falsy: it must still be the one the loop uses
    sent: list[asyncio.Task[dict[str, object]]] = []
    batch_dirs: list[Path] = []

    def observer(snap: Snapshot, runner: RecipeRunner) -> None:
        if snap.t_s > 600 and not sent and runner.phase is Phase.RUNNING:
            queue.post(Command(trigger="hold", operator="ann", source="keys"))
            batch = next(p for p in tmp_path.iterdir() if p.is_dir())
            batch_dirs.append(batch)
            sent.append(asyncio.ensure_future(send_command(
                batch, "resume", "bob", "gas checked")))

    result = await run_batch(plan=plan, station=station, recipe_text=frozen,
                             station_text=text, clock=VirtualClock(), batches_dir=tmp_path,
                             operator="pytest", observer=observer, commands=queue,
                             serve=serve_batch())
    assert result.state is Phase.COMPLETED
    reply = await sent[0]
    assert reply["ok"], reply
    records = _audit(result.batch_dir)
    commands = [(r["trigger"], r["operator"], r["status"]) for r in records
                if r["event"] == "operator_command"]
    assert ("hold", "ann", "applied") in commands
    assert ("resume", "bob", "applied") in commands
    changes = [(r["new"], r.get("operator")) for r in records if r["event"] == "state_change"]
    assert ("held", "ann") in changes
    assert ("running", "bob") in changes
    assert not (result.batch_dir / "control.json").exists()  # removed at the end



def _served_station(port: int, *, name: str = "sim-tcp", host: str = "127.0.0.1"
                    ) -> tuple[Station, str]:
    """sim-tcp on ``port`` without its balance, renamed and with its host spelled as
    given (a copied and edited station file)."""
    text = (ROOT / "stations" / "sim-tcp.toml").read_text(encoding="utf-8")
    text = text.replace("port = 5020", f"port = {port}")
    text = text.replace('name = "sim-tcp"', f'name = "{name}"')
    text = text.replace('host = "127.0.0.1"', f'host = "{host}"', 1)
    text = text[:text.index("[balance]")] + text[text.index("[envelope]"):]
    return load_station_text(text, f"{name}.toml"), text


async def test_second_run_on_a_station_in_use_is_refused(tmp_path: Path) -> None:
    port = free_port()
    station, text = _served_station(port)
    clock = VirtualClock()
    served = await serve_simulator(station, clock, host="127.0.0.1", port=port)
    _, plan, frozen = load_recipe(write(tmp_path, TINY), {}, station)
    try:
        first = asyncio.ensure_future(run_batch(
            plan=plan, station=station, recipe_text=frozen, station_text=text, clock=clock,
            batches_dir=tmp_path / "a", operator="first"))
        await clock.sleep(0)  # one turn of the loop: the first takes the lock
        with pytest.raises(StationBusyError, match="in use by pid"):
            await run_batch(plan=plan, station=station, recipe_text=frozen,
                            station_text=text, clock=clock, batches_dir=tmp_path / "b",
                            operator="second")
        assert not (tmp_path / "b").exists()  # nothing was created for the refused run
        result = await first
        assert result.state is Phase.COMPLETED
    finally:
        await served.stop()


async def test_a_renamed_copy_of_the_station_file_is_refused(tmp_path: Path) -> None:
    """Same furnace (127.0.0.1 vs localhost, same port and unit), another station name."""
    port = free_port()
    station, text = _served_station(port)
    copy, copy_text = _served_station(port, name="sim-tcp-copy", host="localhost")
    clock = VirtualClock()
    served = await serve_simulator(station, clock, host="127.0.0.1", port=port)
    _, plan, frozen = load_recipe(write(tmp_path, TINY), {}, station)
    try:
        first = asyncio.ensure_future(run_batch(
            plan=plan, station=station, recipe_text=frozen, station_text=text, clock=clock,
            batches_dir=tmp_path / "a", operator="first"))
        await clock.sleep(0)  # one turn of the loop: the first takes the lock
        try:
            with pytest.raises(StationBusyError, match="in use by pid .*station sim-tcp"):
                await run_batch(plan=plan, station=copy, recipe_text=frozen,
                                station_text=copy_text, clock=clock,
                                batches_dir=tmp_path / "b", operator="second")
            assert not (tmp_path / "b").exists()
        finally:
            result = await first
        assert result.state is Phase.COMPLETED
    finally:
        await served.stop()
