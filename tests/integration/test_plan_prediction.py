"""``furnace plan``'s prediction against the dry run (issue 12, acceptance 1): the same
recipe run on the simulator through the same scan loop, once with a batch folder and once
without, must agree within 2 % in total duration and gas use. The prediction scans every 5 s
(``PREDICTION_SCAN_PERIOD_S``), the dry run every 2 s: they agree to a few scans.

The whole-profile comparisons are ``slow``: each profile is dry-run once per session
(``dry_runs``, shared with test_profiles_dry_run and the others) and predicted once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controller.predict import PREDICTION_SCAN_PERIOD_S, predict_plan, twin_station
from controller.recipe.plan import load_recipe, summarize
from controller.recipe.station import load_station, load_station_text
from tests.conftest import PROFILES, ROOT
from tests.integration.helpers import DryRuns, dry_run
from tests.integration.recipes import cool, dwell, end, purge, ramp, recipe, stage, step, write

FILES = sorted(PROFILES.glob("*.toml"))

# A short batch with an operator step the recipe expects to take 30 min.
WASH_MIN = 30
WASHED = recipe("wash-test", "WASH",
                stage("heat", purge(4), ramp(150, 3.5), dwell(2)),
                stage("cool", cool(100, 3.5)),
                stage("wash", step("operator", message="Wash and reload.", opens_tube=True,
                                   sample_action="wash", flows_sccm={},
                                   expected_min=WASH_MIN)),
                stage("again", purge(4), ramp(150, 3.5), end()))


def _close(predicted: float, actual: float) -> bool:
    return predicted == pytest.approx(actual, rel=0.02, abs=0.05)


def test_prediction_is_the_dry_run_of_a_short_recipe(tmp_path: Path) -> None:
    path = write(tmp_path, WASHED)
    station, _ = load_station(None)
    _, plan, _ = load_recipe(path, {}, station)
    predicted = predict_plan(plan, station)
    batch = asyncio.run(dry_run(path, tmp_path / "batches"))
    summary = batch.result.summary
    scans_s = 4 * PREDICTION_SCAN_PERIOD_S  # a step boundary lands on either's next scan
    assert predicted.outcome == "completed"
    assert predicted.total_s == pytest.approx(summary["actual_s"], abs=len(plan.steps) * scans_s)
    assert _close(predicted.total_s, summary["actual_s"])
    assert dict(predicted.gas_l) == pytest.approx(dict(summary["gas_used_l"]), rel=0.02)
    for times in predicted.stages:
        assert times.duration_s == pytest.approx(summary["stages"][times.name]["actual_s"],
                                                 abs=len(plan.steps) * scans_s)
    (wash,) = predicted.operator_steps
    confirmed = batch.events("operator_confirmed")[0]
    assert wash.confirmed_s == pytest.approx(confirmed["t_s"], abs=len(plan.steps) * scans_s)
    # the simulated operator took the expected time from when the tube could be opened
    assert wash.confirmed_s - wash.start_s == pytest.approx(WASH_MIN * 60,
                                                            abs=PREDICTION_SCAN_PERIOD_S)
    assert wash.start_s >= predicted.stages[2].start_s


@pytest.mark.slow
@pytest.mark.timeout(480)  # a whole-batch prediction, and the dry run unless shared
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_plan_predicts_every_profile_within_2_percent(path: Path, dry_runs: DryRuns) -> None:
    station, _ = load_station(None)
    _, plan, _ = load_recipe(path, {}, station)
    predicted = predict_plan(plan, station)
    summary = dry_runs(path).result.summary
    assert _close(predicted.total_s, summary["actual_s"]), (predicted.total_s,
                                                           summary["actual_s"])
    for gas, litres in summary["gas_used_l"].items():
        assert _close(predicted.gas_l[gas], litres), (gas, predicted.gas_l[gas], litres)


def test_a_real_station_is_predicted_on_its_twin() -> None:
    """A Modbus station (no bus is opened): its layout on the built-in physics."""
    station, _ = load_station(ROOT / "stations" / "example-eurotherm-alicat.toml")
    assert station.bus.kind != "sim"
    twin = twin_station(station)
    assert twin.bus.kind == "sim"
    assert twin.mfc == station.mfc
    assert twin.envelope == station.envelope
    _, plan, _ = load_recipe(PROFILES / "smoke-600.toml", {}, station)
    predicted = predict_plan(plan, station)
    assert predicted.outcome == "completed"
    assert predicted.total_s == pytest.approx(summarize(plan, station).duration_s, rel=0.02)


def test_a_stations_twin_comes_along_to_the_prediction() -> None:
    """The station's ``[twin]`` is the prediction's furnace (issue 16)."""
    path = ROOT / "stations" / "example-eurotherm-alicat.toml"
    text = path.read_text(encoding="utf-8") + "\n[twin]\ntc_tau_s = 75.0\n"
    station = load_station_text(text, str(path))
    assert station.twin is not None
    assert twin_station(station).twin == station.twin
    assert twin_station(load_station(path)[0]).twin is None
