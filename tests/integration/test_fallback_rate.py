"""Rung 3: the PC dies at any moment of the headline batch and never comes back. The furnace
controller falls back to its local setpoint at its own rate limit, and the simulator's
ground truth never cools faster than the station's ``max_cooling_rate_c_per_min`` over any
2-minute window: not in a heating ramp, not just after one, not at 1450 °C (issue 9
item 2, decision 0005). One dry run of POP70-600-1600 serves every kill
(``fallback_kills``); the last kill silences the real world, and a copy taken at the same
instant must behave the same. The one dry run runs the headline up to 1450 °C (about 20 h of
process time, then 2 h alone after each kill): ``slow``.
"""

from __future__ import annotations

import asyncio

import pytest

from controller.recipe.plan import load_recipe
from controller.recipe.station import fallback_rate_c_per_min, load_station
from controller.recipe.steps import Dwell, Ramp
from controller.run.runstate import Phase
from tests.conftest import PROFILES
from tests.integration.fallback_kills import (
    WINDOW_S,
    Campaign,
    KillPoint,
    heating_ramps,
    max_cooling_c_per_min,
    run_kills,
)

HEADLINE = PROFILES / "pop70-600-1600.toml"

pytestmark = pytest.mark.slow


def _points() -> tuple[list[KillPoint], KillPoint]:
    """Inside every heating ramp of the headline (the 220 °C one, the 600 °C one near its
    top, the 1600 °C one above 900 °C and, silenced for real, near 1450 °C), and 2 minutes
    into the 600 °C dwell, where the ramp's overshoot meets the hand-over."""
    station, _ = load_station(None)
    plan = load_recipe(HEADLINE, {}, station)[1]
    ramps = heating_ramps(plan, station.envelope.ambient_c)
    assert len(ramps) == 3  # the headline's three heating ramps
    r220, r600, r1600 = ramps
    assert isinstance(plan.steps[r600 + 1], Dwell)
    points = [KillPoint(step=r220, fraction=0.6), KillPoint(step=r600, fraction=0.9),
              KillPoint(step=r600 + 1, fraction=2 / 120),
              KillPoint(step=r1600, fraction=0.6)]
    return points, KillPoint(step=r1600, fraction=0.95)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    points, silence = _points()
    return asyncio.run(run_kills(HEADLINE, points, tmp_path_factory.mktemp("batches"),
                                 silence=silence))


def test_every_kill_point_was_reached_where_it_was_meant(campaign: Campaign) -> None:
    assert campaign.missed == []
    assert campaign.state is Phase.FAULTED  # the silenced PC gave the line up
    assert len(campaign.kills) == 6  # 4 copies, the silenced one and its copy
    for kill in campaign.kills:
        assert kill.step == kill.point.step, kill
    heating = [k for k in campaign.kills if k.heating]
    assert {k.step for k in heating} == set(
        heating_ramps(campaign.plan, campaign.station.envelope.ambient_c))
    assert max(k.furnace_c for k in heating) > 1400.0
    assert any(900.0 <= k.furnace_c < 1400.0 for k in heating)


def test_no_kill_cools_the_furnace_faster_than_the_station_allows(campaign: Campaign
                                                                  ) -> None:
    limit = campaign.limit_c_per_min
    worst = {f"{k.how} at {k.t_s / 3600:.2f} h, {k.label}, {k.furnace_c:.0f} °C":
             round(k.max_cooling()[0], 2) for k in campaign.kills}
    assert all(rate <= limit for rate in worst.values()), (limit, worst)


def test_the_instrument_really_took_the_furnace_down(campaign: Campaign) -> None:
    """Not a vacuous pass: a furnace killed hot is brought down at the instrument's
    fallback rate (faster than it would cool by itself there, slower than the limit)."""
    fallback = fallback_rate_c_per_min(campaign.station)
    hot = [k for k in campaign.kills if k.furnace_c > 500.0]
    assert len(hot) == 5
    for kill in hot:
        assert kill.cooled_c(1800.0) >= 0.8 * fallback * 30, kill.label
        assert kill.max_cooling()[0] >= fallback, kill.label


def test_the_batch_itself_cools_within_the_limit(campaign: Campaign) -> None:
    """With the PC alive, the controlled cool for the wash (from the 600 °C dwell) stays
    within the limit too."""
    assert campaign.batch[-1][0] > 10 * 3600.0
    assert max_cooling_c_per_min(campaign.batch)[0] <= campaign.limit_c_per_min


def test_a_copied_world_behaves_as_a_real_kill(campaign: Campaign) -> None:
    """The copies stand in for killing the PC in a dry run of its own: at the silenced
    point the copy and the real world, the controller still polling a dead line, agree."""
    silenced = next(k for k in campaign.kills if k.how == "silenced")
    copied = next(k for k in campaign.kills if k.how == "copy" and k.point == silenced.point)
    assert abs(copied.t_s - silenced.t_s) < 1.0
    assert copied.max_cooling()[0] == pytest.approx(silenced.max_cooling()[0], abs=0.1)
    for after_s in (WINDOW_S, 1800.0, 3600.0, 7200.0):
        assert copied.cooled_c(after_s) == pytest.approx(silenced.cooled_c(after_s), abs=1.0)


def test_plan_caps_the_headline_ramps_to_the_fallback_rate(campaign: Campaign) -> None:
    fallback = fallback_rate_c_per_min(campaign.station)
    ramps = [s for s in campaign.plan.steps if isinstance(s, Ramp)]
    assert all(s.rate_c_per_min <= fallback for s in ramps)
    assert sum("capped" in n for n in campaign.plan.notes) == 4
