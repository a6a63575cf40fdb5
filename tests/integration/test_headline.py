"""Rung 3: the headline recipe POP70-600-1600 end to end on the in-process simulator,
checked against the acceptance list of the walking-skeleton issue.

One whole 30 h dry run (``slow``), the session's (``dry_runs``): test_profiles_dry_run and
test_tga look at the same batch.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from controller.recipe.station import Station, load_station
from controller.recipe.steps import Dwell
from controller.records.verify import verify_batch
from controller.run.runstate import Phase
from tests.conftest import PROFILES
from tests.integration.helpers import Batch, DryRuns

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def batch(dry_runs: DryRuns) -> Batch:
    return dry_runs(PROFILES / "pop70-600-1600.toml")


@pytest.fixture(scope="module")
def sim_station() -> Station:
    return load_station(None)[0]


def _dwell_rows(batch: Batch, at_c: float) -> tuple[int, list[dict[str, str]]]:
    for i, step in enumerate(batch.plan.steps):
        if isinstance(step, Dwell) and step.at_c == at_c:
            return i, [r for r in batch.rows if r["step"] == str(i)]
    raise AssertionError(f"no dwell at {at_c}")


def _completed(batch: Batch, index: int) -> dict[str, object]:
    return next(e for e in batch.events("step_completed") if e["index"] == index)


def test_completes_and_verifies(batch: Batch) -> None:
    assert batch.result.state is Phase.COMPLETED
    assert batch.result.summary["outcome"] == "completed"
    assert batch.result.summary["end_reason"] == "recipe completed"
    assert verify_batch(batch.result.batch_dir).ok
    names = {p.name for p in batch.result.batch_dir.iterdir()}
    assert {"recipe.toml", "station.toml", "audit.jsonl", "trace.csv", "summary.json"} <= names


def test_air_and_a_dwell_at_220(batch: Batch) -> None:
    index, rows = _dwell_rows(batch, 220.0)
    assert batch.plan.steps[index].stage == "pre-oxidation"
    assert all(float(r["flow_air_sccm"]) > 150 for r in rows)
    assert all(float(r["flow_Ar_sccm"]) < 5 for r in rows)
    assert _completed(batch, index)["counted_s"] >= 120 * 60


def test_argon_purge_finishes_before_furnace_passes_air_limit(
        batch: Batch, sim_station: Station) -> None:
    limit = sim_station.envelope.air_max_c
    purge_t = batch.events("purge_complete")[0]["t_s"]
    assert batch.events("purge_complete")[0]["gas"] == "Ar"
    before = [float(r["furnace_c"]) for r in batch.rows if float(r["elapsed_s"]) <= purge_t]
    assert max(before) < limit
    # and no air flows anywhere the furnace is above the air limit
    hot = [r for r in batch.rows if float(r["furnace_c"]) > limit]
    assert hot
    assert max(float(r["flow_air_sccm"]) for r in hot) < 1.0


def test_600_held_for_120_min(batch: Batch) -> None:
    index, rows = _dwell_rows(batch, 600.0)
    assert _completed(batch, index)["counted_s"] == pytest.approx(120 * 60, abs=3)
    assert all(float(r["setpoint_c"]) == 600.0 for r in rows)


def test_cooled_under_argon_below_100_before_wash(batch: Batch) -> None:
    confirm = batch.events("operator_confirmed")[0]
    assert confirm["furnace_c"] < 100.0
    assert confirm["how"].startswith("confirmed automatically")
    t_confirm = confirm["t_s"]
    cooling = [r for r in batch.rows if r["stage"] == "cool for wash"]
    assert cooling
    assert all(float(r["flow_Ar_sccm"]) > 150 for r in cooling)
    assert all(float(r["flow_air_sccm"]) < 1 for r in cooling)
    at = min(batch.rows, key=lambda r: abs(float(r["elapsed_s"]) - t_confirm))
    assert float(at["furnace_c"]) < 100.0


def test_1600_held_for_180_min(batch: Batch) -> None:
    index, rows = _dwell_rows(batch, 1600.0)
    assert _completed(batch, index)["counted_s"] == pytest.approx(180 * 60, abs=3)
    assert max(float(r["furnace_c"]) for r in rows) < 1600 + 5


def test_setpoint_never_ramps_faster_than_station_allows(
        batch: Batch, sim_station: Station) -> None:
    t, sp = batch.col("elapsed_s"), batch.col("setpoint_c")
    env = sim_station.envelope
    for i in range(1, len(t)):
        dt_s = t[i] - t[i - 1]
        rate = (sp[i] - sp[i - 1]) / dt_s * 60.0
        resolution = 0.001 / dt_s * 60.0  # the trace keeps 3 decimals of each setpoint
        if rate > 0:
            assert rate <= env.max_rate_at(sp[i]) + resolution, (t[i], rate)
        else:
            assert -rate <= env.max_cooling_rate_c_per_min + resolution, (t[i], rate)


def test_furnace_in_band_during_counted_dwell_time(batch: Batch) -> None:
    for i, step in enumerate(batch.plan.steps):
        if not isinstance(step, Dwell):
            continue
        rows = [r for r in batch.rows if r["step"] == str(i)]
        errors = [abs(float(r["furnace_c"]) - step.at_c) for r in rows]
        entered = next(k for k, e in enumerate(errors) if e <= step.band_c)
        # once in band, it stays in band: every counted second was in band
        assert max(errors[entered:]) <= step.band_c, step.label
    assert batch.result.summary["holdback_s"] == pytest.approx(0.0, abs=10)


def test_trace_has_required_columns(batch: Batch) -> None:
    required = {"elapsed_s", "wall_utc", "stage", "step", "state", "setpoint_c",
                "furnace_c", "output_pct", "o2_ppm", "flow_Ar_sccm",
                "flow_Ar_setpoint_sccm", "flow_air_sccm", "flow_air_setpoint_sccm"}
    assert required <= set(batch.rows[0])
    assert not any(math.isnan(v) for v in batch.col("furnace_c"))


def test_audit_records_every_setpoint_source_change(batch: Batch) -> None:
    preflight = batch.events("preflight")[0]
    assert preflight["remote_setpoint"] == "selected"
    safe = batch.events("safe_state")[0]
    assert safe["outputs"]["air"] == "0 sccm"
    assert float(safe["outputs"]["Ar"].split()[0]) > 0


def test_frozen_recipe_reproduces_the_plan(batch: Batch, tmp_path: Path,
                                           sim_station: Station) -> None:
    from controller.recipe.plan import load_recipe

    _, plan, _ = load_recipe(batch.result.batch_dir / "recipe.toml", {}, sim_station)
    assert plan == batch.plan
