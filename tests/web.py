"""Test helpers for the batch's HTTP server: a runner at a dwell, and a real server (uvicorn
on its own thread, on 127.0.0.1 and an ephemeral port) serving it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from controller.recipe.station import Station
from controller.recipe.steps import Dwell, End, Plan, Stage
from controller.records.columns import trace_columns
from controller.records.folder import CONTROL_FILE
from controller.run.clock import VirtualClock
from controller.run.commands import CommandQueue
from controller.run.handle import RecipeRunner
from controller.session import Serving
from controller.web.server import BatchWebServer


def make_runner(station: Station) -> RecipeRunner:
    """A runner at a 10-minute dwell, running (a person confirms operator steps)."""
    plan = Plan("t", "T", (Stage("s", "Ar"),), (
        Dwell(stage="s", label="d", at_c=25, duration_s=600, band_c=5, max_holdback_s=600),
        End(stage="s", label="e")))
    runner = RecipeRunner(plan, station, auto_confirm=False, max_hold_s=600)
    runner.begin(0.0, 25.0)
    runner.preflight_done(0.0)
    return runner


@asynccontextmanager
async def served(batch_dir: Path, station: Station, *, queue: Any = None,
                 runner: RecipeRunner | None = None, reply_timeout_s: float = 5.0,
                 **kw: Any) -> AsyncIterator[BatchWebServer]:
    """A running batch's server for ``batch_dir``: commands go to ``queue`` (default a
    fresh ``CommandQueue`` nobody drains)."""
    runner = runner if runner is not None else make_runner(station)
    queue = queue if queue is not None else CommandQueue(lambda: str(runner.phase))
    serving = Serving(batch_dir, station, runner, queue, VirtualClock(),
                      trace_columns(station), reply_timeout_s)
    server = BatchWebServer(serving, **kw)
    async with server:
        yield server


def token_of(batch: Path) -> str:
    """The token control.json announces."""
    token: str = json.loads((batch / CONTROL_FILE).read_text())["token"]
    return token


def url_of(batch: Path) -> str:
    """http://127.0.0.1:PORT of the batch's server."""
    return f"http://127.0.0.1:{json.loads((batch / CONTROL_FILE).read_text())['port']}"
