"""A station's ``[twin]`` is the furnace its simulator plays (issue 16): a dry run and the
simulator ``furnace sim serve --station`` serves both use it, the batch's audit names it,
and a ``[twin]`` that states only the built-in values changes nothing in the trace.

The heavier furnace's dry run is compared with the session's shared built-in run of the
same recipe (``dry_runs``, also the trace pin's): ``smoke-600`` at 450 °C, its ramp capped
at 3.5 °C/min. Both furnaces can follow that ramp (full power heats either by tens of
kelvin a minute), so the instrument brings them to 400 °C at the same time; the heavier one
shows itself in falling further behind at the start of the ramp, in the output it takes to
follow it and in its slower natural cooling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

from controller.cli import main
from controller.recipe.station import load_station_text
from controller.run.clock import VirtualClock
from controller.station_factory import serve_simulator
from simulator.twin import TwinParams
from tests.conftest import PROFILES, ROOT
from tests.integration.helpers import Batch, DryRuns, dry_run

SMOKE = PROFILES / "smoke-600.toml"
SETS = {"peak_c": "450"}  # the trace pin's run: the shared built-in batch
BUILTIN = (ROOT / "controller" / "builtin" / "sim.toml").read_text(encoding="utf-8")
HEAVY_J_PER_K = 1.5 * TwinParams().heat_capacity_j_per_k
BUILT_IN_LINE = "the built-in furnace model (not fitted to this station)"
BY_HAND_LINE = "set by hand in the station file (not fitted)"


def _with_twin(twin: Mapping[str, float]) -> str:
    """The built-in station's text with a ``[twin]`` section of ``twin``'s values."""
    lines = "".join(f"{name} = {value!r}\n" for name, value in twin.items())
    return f"{BUILTIN}\n[twin]\n{lines}"


def _run(tmp_path: Path, station_text: str) -> Batch:
    return asyncio.run(dry_run(SMOKE, tmp_path / "batches", SETS, station_text=station_text))


def _heat(batch: Batch, column: str) -> list[float]:
    return [float(r[column]) for r in batch.rows if r["stage"] == "heat"]


def _stage_s(batch: Batch, stage: str) -> float:
    times = [float(r["elapsed_s"]) for r in batch.rows if r["stage"] == stage]
    return times[-1] - times[0]


def _without_wall_time(rows: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "wall_utc"} for row in rows]


def test_a_heavier_twin_heats_more_slowly(tmp_path: Path, dry_runs: DryRuns) -> None:
    built_in = dry_runs(SMOKE, SETS)
    heavy = _run(tmp_path, _with_twin({"heat_capacity_j_per_k": HEAVY_J_PER_K}))
    assert heavy.result.summary["outcome"] == "completed"
    lag = [sp - pv for sp, pv in zip(_heat(heavy, "setpoint_c"), _heat(heavy, "furnace_c"),
                                     strict=True)]
    lag_built_in = [sp - pv for sp, pv in zip(_heat(built_in, "setpoint_c"),
                                              _heat(built_in, "furnace_c"), strict=True)]
    assert max(lag) > max(lag_built_in) + 0.3  # 3.9 K behind the ramp's start, not 3.4 K
    out, out_built_in = _heat(heavy, "output_pct"), _heat(built_in, "output_pct")
    assert sum(out) / len(out) > 1.2 * sum(out_built_in) / len(out_built_in)  # 12.3 % : 9.8 %
    assert _stage_s(heavy, "cool") > _stage_s(built_in, "cool") + 30  # 964 s, not 902 s
    (created,) = heavy.events("batch_created")
    assert created["twin"] == BY_HAND_LINE
    assert built_in.events("batch_created")[0]["twin"] == BUILT_IN_LINE
    assert main(["verify", str(heavy.result.batch_dir)]) == 0  # [twin] frozen with the rest


def test_a_twin_of_the_defaults_is_the_built_in_furnace(tmp_path: Path,
                                                        dry_runs: DryRuns) -> None:
    stated = _run(tmp_path, _with_twin(TwinParams().as_dict()))
    assert "[twin]\nheat_capacity_j_per_k = 3800.0\n" in (
        stated.result.batch_dir / "station.toml").read_text(encoding="utf-8")
    assert _without_wall_time(stated.rows) == _without_wall_time(dry_runs(SMOKE, SETS).rows)


async def test_sim_serve_plays_the_stations_twin() -> None:
    """``furnace sim serve --station`` builds its world through ``serve_simulator``."""
    twin = {"heat_capacity_j_per_k": HEAVY_J_PER_K, "tc_tau_s": 90.0, "sample_tau_s": 200.0}
    station = load_station_text(_with_twin(twin), "station.toml")
    served = await serve_simulator(station, VirtualClock(), host="127.0.0.1", port=None)
    try:
        expected = TwinParams(**twin)
        ambient_c = station.envelope.ambient_c
        assert served.world.spec.twin == expected
        assert served.world.furnace.thermal.params == expected.thermal(ambient_c)
        assert served.world.sample.tau_s == 200.0
    finally:
        await served.stop()
    plain = await serve_simulator(load_station_text(BUILTIN, "station.toml"), VirtualClock(),
                                  host="127.0.0.1", port=None)
    try:
        assert plain.world.spec.twin is None
        assert plain.world.furnace.thermal.params == TwinParams().thermal(ambient_c)
    finally:
        await plain.stop()
