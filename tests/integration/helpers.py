"""Running a batch in-process on the simulator with a virtual clock, and reading it back."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.recipe.plan import load_recipe
from controller.recipe.station import load_station
from controller.recipe.steps import Plan
from controller.records.folder import BatchFolder
from controller.run.clock import VirtualClock
from controller.session import BatchResult, run_batch


@dataclass
class Batch:
    """A finished batch: result, plan, trace columns as lists, audit records."""

    result: BatchResult
    plan: Plan
    rows: list[dict[str, str]]
    audit: list[dict[str, Any]]

    def col(self, name: str) -> list[float]:
        return [float(r[name]) if r[name] != "" else float("nan") for r in self.rows]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.audit if a["event"] == name]


async def dry_run(recipe: Path, batches: Path, overrides: dict[str, str] | None = None,
                  seed: int = 0) -> Batch:
    station, station_text = load_station(None)
    _, plan, frozen = load_recipe(recipe, overrides or {}, station)
    result = await run_batch(plan=plan, station=station, recipe_text=frozen,
                             station_text=station_text, clock=VirtualClock(),
                             batches_dir=batches, operator="pytest", seed=seed)
    return read_batch(result, plan)


def read_batch(result: BatchResult, plan: Plan) -> Batch:
    folder = BatchFolder.open(result.batch_dir)
    return Batch(result, plan, folder.read_trace().records(), list(folder.read_audit()))


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
