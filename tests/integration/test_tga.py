"""Rung 3: the TGA/DSC-like channels end to end: the screening recipes reproduce the paper's
observations, the controls order as the chemistry says, the report reads them, and the
exotherm guard trips only when the exotherm is made larger."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from controller.analysis.data import load_batch
from controller.analysis.events import analyse
from controller.analysis.report import write_report_png
from controller.analysis.series import heating_rate_c_per_min, moving_mean
from controller.recipe.plan import load_recipe
from controller.recipe.station import load_station
from controller.records.folder import BatchFolder
from controller.run.clock import VirtualClock
from controller.run.runstate import Phase
from controller.session import run_batch
from controller.station_factory import build_devices
from tests.conftest import PROFILES
from tests.integration.helpers import Batch, dry_run, read_batch


def _screen(tmp: Path, name: str, **sets: str) -> Batch:
    return asyncio.run(dry_run(PROFILES / f"{name}.toml", tmp, dict(sets)))


@pytest.fixture(scope="module")
def air(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    return _screen(tmp_path_factory.mktemp("air"), "screen-air")


@pytest.fixture(scope="module")
def nitrogen(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    return _screen(tmp_path_factory.mktemp("n2"), "screen-n2")


def _heating(batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t, temp = np.array(batch.col("elapsed_s")), np.array(batch.col("sample_c"))
    mass, delta = np.array(batch.col("mass_pct")), np.array(batch.col("delta_t_c"))
    rate = heating_rate_c_per_min(t, np.array(batch.col("furnace_c")))
    rows = np.isfinite(rate) & (rate > 1.0)
    return temp[rows], moving_mean(mass, 30)[rows], moving_mean(delta, 30)[rows]


def test_air_screen_mass_bottoms_out_between_150_and_190_then_rises(air: Batch) -> None:
    temp, mass, _ = _heating(air)
    i = int(np.argmin(mass[temp < 200]))
    assert 150.0 <= temp[i] <= 190.0
    after = mass[(temp > temp[i]) & (temp < 215)]
    assert after.max() - mass[i] > 0.3  # it rises as the pitch takes up oxygen


def test_air_screen_exotherm_peaks_between_200_and_240(air: Batch) -> None:
    temp, _, delta = _heating(air)
    window = (temp > 150) & (temp < 238)
    peak_c = temp[window][int(np.argmax(delta[window]))]
    assert 200.0 <= peak_c <= 240.0


def test_report_on_air_screen_suggests_about_220(air: Batch) -> None:
    report = analyse(load_batch(air.result.batch_dir))
    assert report.suggested_preoxidation_c is not None
    assert abs(report.suggested_preoxidation_c - 220.0) <= 10.0
    assert report.mass_minimum is not None
    assert report.mass_minimum.sample_c is not None
    assert 150.0 <= report.mass_minimum.sample_c <= 190.0


def test_n2_screen_mass_falls_steadily_and_no_exotherm(nitrogen: Batch) -> None:
    temp, mass, delta = _heating(nitrogen)
    span = (temp >= 170) & (temp <= 300)
    steps = np.diff(mass[span])
    assert steps.max() < 0.01  # never a rise above the balance noise
    assert mass[span][0] - mass[span][-1] > 3.0  # and it does fall
    report = analyse(load_batch(nitrogen.result.batch_dir))
    assert report.exotherm is None
    assert report.suggested_preoxidation_c is None


async def _control(tmp: Path, recipe: str, **sets: str) -> tuple[Batch, float]:
    """A control batch and the sample's final carbon yield (simulator ground truth)."""
    station, text = load_station(None)
    _, plan, frozen = load_recipe(PROFILES / recipe, dict(sets), station)
    clock = VirtualClock()
    built = build_devices(station, clock, material=plan.material)
    result = await run_batch(plan=plan, station=station, recipe_text=frozen,
                             station_text=text, clock=clock, batches_dir=tmp,
                             operator="pytest", built=built)
    assert built.world is not None
    assert built.world.kinetics is not None
    return read_batch(result, plan), built.world.kinetics.carbon_yield_pct


def _preox_peak_excess_c(batch: Batch) -> float:
    """Largest rise of ΔT in the 220 °C stage above its level below 120 °C."""
    stage = {"air": "pre-oxidation", "N2": "nitrogen treatment"}
    names = {stage[s.atmosphere] for s in batch.plan.stages if s.atmosphere in stage}
    rows = [r for r in batch.rows if r["stage"] in names]
    delta = moving_mean(np.array([float(r["delta_t_c"]) for r in rows]), 30)
    temp = np.array([float(r["furnace_c"]) for r in rows])
    hot = temp > 150.0
    return float(np.nanmax(delta[hot]) - np.nanmedian(delta[temp < 120.0]))


@pytest.fixture(scope="module")
def controls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Batch, float]]:
    tmp = tmp_path_factory.mktemp("controls")

    async def all_four() -> dict[str, tuple[Batch, float]]:
        return {
            "POP50": await _control(tmp, "pop70-600-1600.toml", acid_wt="50"),
            "PO": await _control(tmp, "po-600-1600.toml"),
            "PN": await _control(tmp, "pn-600-1600.toml"),
            "PNP50": await _control(tmp, "pnp50-600-1600.toml"),
        }

    return asyncio.run(all_four())


@pytest.mark.timeout(480)  # its fixture dry-runs four whole batches
def test_controls_order_as_the_chemistry_says(
        controls: dict[str, tuple[Batch, float]]) -> None:
    for batch, _ in controls.values():
        assert batch.result.state is Phase.COMPLETED
    excess = {name: _preox_peak_excess_c(b) for name, (b, _) in controls.items()}
    assert excess["POP50"] > excess["PO"] + 1.0  # acid and air: the larger exotherm
    for name in ("PN", "PNP50"):  # nitrogen: none
        assert excess[name] < excess["PO"], name
        report = analyse(load_batch(controls[name][0].result.batch_dir))
        assert report.exotherm is None, name
    yields = {name: y for name, (_, y) in controls.items()}
    assert yields["POP50"] > yields["PN"] + 10.0
    assert yields["PO"] > yields["PN"]


def test_report_png_for_headline_and_screen(air: Batch, tmp_path: Path) -> None:
    headline = asyncio.run(dry_run(PROFILES / "pop70-600-1600.toml", tmp_path))
    for batch in (headline, air):
        data = load_batch(batch.result.batch_dir)
        png = write_report_png(data, analyse(data), BatchFolder(data.batch_dir).report_png)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 50_000


def test_exotherm_guard_trips_on_a_larger_exotherm(tmp_path: Path) -> None:
    batch = _screen(tmp_path, "screen-air", mass_g="8", rate_c_per_min="10")
    trips = batch.events("interlock_trip")
    assert [t["interlock"] for t in trips][:1] in (["exotherm_rate"], ["exotherm_guard"])
    assert trips[0]["action"] == "ramp stopped"
    cut = [t for t in trips if t["interlock"] == "exotherm_cut"]
    assert cut
    assert cut[0]["action"] == "hold, heat cut"
    assert cut[0]["measured"] > cut[0]["limit"]
    # heat cut: the setpoint drops to ambient at once and stays there
    t_cut = cut[0]["t_s"]
    later = [float(r["setpoint_c"]) for r in batch.rows if float(r["elapsed_s"]) > t_cut]
    assert max(later) <= 25.0 + 1e-6
    assert batch.result.state is Phase.ABORTED  # nobody resumed the hold
