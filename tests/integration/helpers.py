"""Running a batch in-process on the simulator with a virtual clock (with the simulated
world at hand, or whole), and reading it back; the session's cache of whole dry runs;
``furnace`` as a child process, and the simulator served by one."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from filelock import FileLock

from controller.recipe.plan import load_recipe
from controller.recipe.station import Station, load_station, load_station_text
from controller.recipe.steps import Plan
from controller.records.folder import BatchFolder
from controller.run.clock import VirtualClock
from controller.run.runstate import Phase
from controller.session import BatchResult, run_batch
from controller.station_factory import Built, build_devices
from simulator import SimWorld
from tests.conftest import ROOT
from tests.integration.recipes import write


@dataclass
class Batch:
    """A finished batch: result, plan, trace columns as lists, audit records, and (for a
    dry run with a sample model) the simulator's final carbon yield."""

    result: BatchResult
    plan: Plan
    rows: Sequence[Mapping[str, str]]
    audit: Sequence[Mapping[str, Any]]
    carbon_yield_pct: float | None = None

    def col(self, name: str) -> list[float]:
        return [float(r[name]) if r[name] != "" else float("nan") for r in self.rows]

    def events(self, name: str) -> list[Mapping[str, Any]]:
        return [a for a in self.audit if a["event"] == name]


@dataclass
class InProcess:
    """A recipe compiled for the built-in simulated station and its devices built on one
    clock, the simulated world at hand: for tests that inject into the world while the
    batch runs, or leave it alone afterwards."""

    station: Station
    station_text: str
    plan: Plan
    recipe_text: str  # the frozen recipe
    clock: VirtualClock
    built: Built
    world: SimWorld

    async def run(self, batches: Path, *, operator: str = "pytest", **options: Any
                  ) -> BatchResult:
        """``run_batch`` on these devices; ``options``: observer, commands, ..."""
        return await run_batch(plan=self.plan, station=self.station,
                               recipe_text=self.recipe_text, station_text=self.station_text,
                               clock=self.clock, batches_dir=batches, operator=operator,
                               built=self.built, **options)


def in_process(folder: Path, text: str, name: str = "recipe.toml",
               clock: VirtualClock | None = None) -> InProcess:
    """The recipe ``text``, written as ``folder/name``, ready to run in process."""
    station, station_text = load_station(None)
    _, plan, frozen = load_recipe(write(folder, text, name), {}, station)
    clock = VirtualClock() if clock is None else clock
    built = build_devices(station, clock, material=plan.material)
    assert built.world is not None, "the built-in station is simulated in process"
    return InProcess(station, station_text, plan, frozen, clock, built, built.world)


async def dry_run(recipe: Path, batches: Path, overrides: Mapping[str, str] | None = None,
                  seed: int = 0, station_text: str | None = None) -> Batch:
    """``recipe`` run whole on the built-in simulated station (what ``furnace run`` does),
    or on the simulated station ``station_text`` (a station file's text)."""
    if station_text is None:
        station, station_text = load_station(None)
    else:
        station = load_station_text(station_text, "station.toml")
    _, plan, frozen = load_recipe(recipe, dict(overrides or {}), station)
    clock = VirtualClock()
    built = build_devices(station, clock, seed=seed, material=plan.material)
    result = await run_batch(plan=plan, station=station, recipe_text=frozen,
                             station_text=station_text, clock=clock, batches_dir=batches,
                             operator="pytest", seed=seed, built=built)
    kinetics = built.world.kinetics if built.world is not None else None
    return read_batch(result, plan,
                      carbon_yield_pct=None if kinetics is None else kinetics.carbon_yield_pct)


def read_batch(result: BatchResult, plan: Plan, carbon_yield_pct: float | None = None
               ) -> Batch:
    folder = BatchFolder.open(result.batch_dir)
    return Batch(result, plan, folder.read_trace().records(), list(folder.read_audit()),
                 carbon_yield_pct)


def _frozen(value: Any) -> Any:
    """``value`` with every dict made a read-only mapping and every list a tuple."""
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


class DryRuns:
    """Whole dry runs, each run once per test session (the ``dry_runs`` fixture): keyed by
    recipe file, ``--set`` overrides and seed. Several modules look at the same batch (every
    profile completes; the headline's acceptance list; the TGA screens and controls; the
    smoke batch over the wire), so each gets the one run, read-only: trace rows, audit
    records and summary cannot be changed, and a test that writes a file (a report) writes
    it to its own ``tmp_path``, never into the shared batch folder.

    The runs are shared by every worker of the session (pytest-xdist): a run's batch folder
    lies in ``shared`` (the session's base temporary folder), made by whichever worker
    needs it first while the others wait on its lock, and read back by the rest; so the
    tests using them spread over the cores instead of queueing on one worker.

    Call it from a synchronous test or fixture (it runs its own event loop)."""

    def __init__(self, shared: Path) -> None:
        self._shared = shared
        self._done: dict[tuple[Path, tuple[tuple[str, str], ...], int], Batch] = {}

    def __call__(self, recipe: Path, overrides: Mapping[str, str] | None = None,
                 seed: int = 0) -> Batch:
        key = (recipe.resolve(), tuple(sorted((overrides or {}).items())), seed)
        if key not in self._done:
            self._done[key] = self._shared_run(recipe, dict(overrides or {}), seed, key)
        return self._done[key]

    def _shared_run(self, recipe: Path, overrides: dict[str, str], seed: int,
                    key: tuple[Path, tuple[tuple[str, str], ...], int]) -> Batch:
        name = f"{recipe.stem}-{hashlib.sha256(repr(key).encode()).hexdigest()[:12]}"
        folder, done = self._shared / name, self._shared / f"{name}.json"
        self._shared.mkdir(parents=True, exist_ok=True)
        with FileLock(self._shared / f"{name}.lock"):
            if done.exists():  # another worker ran it
                ran = json.loads(done.read_text(encoding="utf-8"))
                station, _ = load_station(None)
                _, plan, _ = load_recipe(recipe, overrides, station)
                summary = json.loads((Path(ran["batch_dir"]) / "summary.json").read_text(
                    encoding="utf-8"))
                result = BatchResult(Path(ran["batch_dir"]), Phase(ran["state"]), summary)
                batch = read_batch(result, plan, carbon_yield_pct=ran["carbon_yield_pct"])
            else:
                batch = asyncio.run(dry_run(recipe, folder, overrides, seed))
                done.write_text(json.dumps({
                    "batch_dir": str(batch.result.batch_dir), "state": str(batch.result.state),
                    "carbon_yield_pct": batch.carbon_yield_pct}), encoding="utf-8")
        return Batch(replace(batch.result, summary=_frozen(batch.result.summary)),
                     batch.plan, _frozen(batch.rows), _frozen(batch.audit),
                     batch.carbon_yield_pct)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def furnace(*args: str) -> list[str]:
    """The command line of ``furnace ARGS`` run by this interpreter."""
    return [sys.executable, "-m", "controller.cli", *args]


def start_sim_server(speed: int | str, port: int | None = None, *,
                     station: Path | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """``furnace sim serve --speed SPEED [--station STATION]`` as a child process, once it
    accepts connections on its Modbus TCP port (within 10 s); returns the process and the
    port."""
    port = free_port() if port is None else port
    where = ["--station", str(station)] if station is not None else []
    server = subprocess.Popen(furnace("sim", "serve", "--port", str(port), "--speed",
                                      str(speed), *where),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return server, port
        except OSError:
            pass
        try:  # a short wait that notices the server dying
            server.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"furnace sim serve exited with code {server.returncode}")
    server.kill()
    server.wait(timeout=10)
    raise RuntimeError("furnace sim serve did not start within 10 s")


def sim_tcp_station(folder: Path, port: int) -> Path:
    """``stations/sim-tcp.toml`` pointed at ``port``, without its balance (a served
    simulator without ``--balance`` has none), as ``folder/station.toml``."""
    text = (ROOT / "stations" / "sim-tcp.toml").read_text(encoding="utf-8")
    text = text.replace("port = 5020", f"port = {port}")
    text = text[:text.index("[balance]")] + text[text.index("[envelope]"):]
    station = folder / "station.toml"
    station.write_text(text, encoding="utf-8")
    return station


@contextmanager
def served_simulator(folder: Path, speed: int | str) -> Iterator[Path]:
    """``furnace sim serve`` at ``speed`` while the block runs; yields a station file in
    ``folder`` that points at it."""
    server, port = start_sim_server(speed)
    try:
        yield sim_tcp_station(folder, port)
    finally:
        server.terminate()
        server.wait(timeout=10)


def one_error_line(err: str) -> str:
    """A command's one error line (``furnace: ...``) in ``err``, with no traceback there."""
    lines = [line for line in err.splitlines() if line.startswith("furnace:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]
