"""The twin's opinion of the instrument's tuning (``simulator.twin.tune``): overshoot and
settling at a recipe's setpoints, and terms that meet an overshoot limit. Simulated physics
only; no clock is involved."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from simulator.thermal import KELVIN_OFFSET
from simulator.twin.params import TwinParams
from simulator.twin.replay import Stretch, replay_loop
from simulator.twin.tune import (
    AUTOTUNE_CAVEAT,
    JITTER_MAX_PCT,
    Approach,
    output_jitter_pct,
    pv_noise_k,
    response,
    responses,
    suggest_terms,
)

AMBIENT_C = 25.0
STEP_TO_600 = Approach(25.0, 600.0, rate_c_per_min=1e6)
# Short ramps and a short hold keep the searches below a second each.
RECIPE = (Approach(500.0, 600.0, 10.0), Approach(600.0, 800.0, 10.0),
          Approach(800.0, 700.0, 5.0))
HOLD_S = 1800.0


def _holding_output_pct(p: TwinParams, temperature_c: float) -> float:
    """The output that holds the furnace at ``temperature_c``, from the heat balance."""
    t_k, a_k = temperature_c + KELVIN_OFFSET, AMBIENT_C + KELVIN_OFFSET
    loss_w = (p.conductance_w_per_k * (temperature_c - AMBIENT_C)
              + p.radiation_w_per_k4 * (t_k**4 - a_k**4))
    return 100.0 * loss_w / p.max_power_w


def _replay_by_hand(p: TwinParams, a: Approach, hold_s: float) -> tuple[float, float]:
    """Overshoot (K) and settling (s) from a replay of a stretch with a row every 2 s."""
    ramp_s = abs(a.to_c - a.from_c) / a.rate_c_per_min * 60.0
    t_s = np.arange(0.0, ramp_s + hold_s + 1.0, 2.0)
    wsp_c = np.interp(t_s, [0.0, ramp_s], [a.from_c, a.to_c])
    output_pct = np.zeros(t_s.size)
    output_pct[0] = _holding_output_pct(p, a.from_c)
    stretch = Stretch("by hand", t_s, wsp_c, np.full(t_s.size, a.from_c), output_pct,
                      np.full(t_s.size, math.nan), AMBIENT_C)
    pv_c = replay_loop(p, stretch, 2.0).tc_c
    after = t_s >= ramp_s
    past_k = (pv_c - a.to_c) if a.to_c > a.from_c else (a.to_c - pv_c)
    overshoot_k = max(0.0, float(past_k[after].max()))
    inside = np.abs(pv_c - a.to_c) <= a.band_c
    last_outside = max(k for k in range(t_s.size) if after[k] and not inside[k])
    return overshoot_k, float(t_s[last_outside + 1] - ramp_s)


@pytest.mark.parametrize("approach", [Approach(300.0, 600.0, 10.0),
                                      Approach(900.0, 600.0, 5.0, band_c=1.0)],
                         ids=["heating", "cooling"])
def test_overshoot_and_settling_are_those_of_a_replay(approach: Approach) -> None:
    p = TwinParams()
    r = response(p, approach, AMBIENT_C)
    overshoot_k, settling_s = _replay_by_hand(p, approach, 3600.0)
    assert r.to_c == approach.to_c
    assert overshoot_k > 0.5  # the default terms do overshoot a ramp's end
    assert r.overshoot_k == pytest.approx(overshoot_k, abs=1e-6)
    assert r.settling_s == pytest.approx(settling_s)
    assert 0.0 < r.settling_s < 3600.0


def test_the_loop_starts_in_equilibrium() -> None:
    p = TwinParams()
    r = response(p, Approach(600.0, 600.0, 5.0, band_c=0.01), AMBIENT_C, hold_s=3600.0)
    assert r.overshoot_k < 0.01
    assert r.settling_s == 0.0
    assert r.peak_output_pct == pytest.approx(_holding_output_pct(p, 600.0), abs=0.01)


def test_a_wider_band_overshoots_a_step_more() -> None:
    # Conditional integration stops winding up only while the output is saturated: the
    # wider the band, the longer the integral runs on a large error before the setpoint.
    p = TwinParams()
    overshoots_k = [response(replace(p, proportional_band_c=band_c), STEP_TO_600,
                             AMBIENT_C).overshoot_k for band_c in (5.0, 20.0, 80.0)]
    assert overshoots_k == sorted(overshoots_k)
    assert overshoots_k[2] > 2.0 * overshoots_k[0]


def test_a_step_saturates_the_heater() -> None:
    assert response(TwinParams(), STEP_TO_600, AMBIENT_C).peak_output_pct == 100.0


def test_settling_is_infinite_when_the_band_is_never_kept() -> None:
    p = TwinParams()
    tight = replace(STEP_TO_600, band_c=0.001)
    assert response(p, tight, AMBIENT_C, hold_s=300.0).settling_s == math.inf
    settled_s = response(p, STEP_TO_600, AMBIENT_C, hold_s=3600.0).settling_s
    assert 0.0 < settled_s < 3600.0


def test_settling_counts_from_the_end_of_the_ramp() -> None:
    # Outside a wide band at the ramp's start, inside it long before the ramp's end.
    wide = Approach(25.0, 600.0, 10.0, band_c=50.0)
    assert response(TwinParams(), wide, AMBIENT_C).settling_s == 0.0


def test_responses_are_in_order() -> None:
    p = TwinParams()
    assert [r.to_c for r in responses(p, RECIPE, AMBIENT_C, hold_s=HOLD_S)] == [600, 800, 700]


@pytest.mark.parametrize("kwargs", [{"rate_c_per_min": 0.0}, {"band_c": -1.0}])
def test_an_approach_refuses_a_rate_or_band_that_is_not_positive(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="approach"):
        Approach(**{"from_c": 25.0, "to_c": 600.0, "rate_c_per_min": 5.0, **kwargs})


def test_suggested_terms_meet_the_limit() -> None:
    p = TwinParams()
    limit_k = 3.5
    current = responses(p, RECIPE, AMBIENT_C, hold_s=HOLD_S)
    assert max(r.overshoot_k for r in current) > limit_k  # so the terms must change
    s = suggest_terms(p, RECIPE, AMBIENT_C, limit_k, hold_s=HOLD_S)
    assert s is not None
    assert not s.is_current
    assert s.candidates_tried > 10
    terms = (s.params.proportional_band_c, s.params.integral_time_s,
             s.params.derivative_time_s)
    assert terms != (p.proportional_band_c, p.integral_time_s, p.derivative_time_s)
    assert replace(s.params, proportional_band_c=p.proportional_band_c,
                   integral_time_s=p.integral_time_s,
                   derivative_time_s=p.derivative_time_s) == p  # only the terms changed
    again = responses(s.params, RECIPE, AMBIENT_C, hold_s=HOLD_S)
    assert again == s.responses
    assert all(r.overshoot_k <= limit_k for r in again)
    assert all(r.settling_s >= 0.0 for r in again)  # counted from the ramp's end
    assert max(r.settling_s for r in again) <= max(r.settling_s for r in current)


def test_no_suggestion_for_an_impossible_limit() -> None:
    # Overshoot is never negative, so no terms can keep it below -1 K.
    assert suggest_terms(TwinParams(), RECIPE, AMBIENT_C, -1.0, hold_s=HOLD_S) is None


def test_good_current_terms_are_kept() -> None:
    # Within a 20 K band the present terms settle the moment the ramp ends: no terms can
    # settle sooner, so there is nothing to suggest.
    wide = tuple(replace(a, band_c=20.0) for a in RECIPE)
    kept = suggest_terms(TwinParams(), wide, AMBIENT_C, 50.0, hold_s=HOLD_S)
    assert kept is not None
    assert kept.is_current
    assert kept.params == TwinParams()
    assert kept.responses == responses(TwinParams(), wide, AMBIENT_C, hold_s=HOLD_S)


def test_no_suggestion_passes_more_noise_than_allowed() -> None:
    p = TwinParams()
    s = suggest_terms(p, RECIPE, AMBIENT_C, 3.5, pv_noise_k=0.1, hold_s=HOLD_S)
    assert s is not None
    assert output_jitter_pct(s.params, 0.1) <= JITTER_MAX_PCT
    # A noisier thermocouple leaves fewer terms to choose from: never a louder output.
    noisy = suggest_terms(p, RECIPE, AMBIENT_C, 3.5, pv_noise_k=0.3, hold_s=HOLD_S)
    if noisy is not None:
        assert output_jitter_pct(noisy.params, 0.3) <= max(
            JITTER_MAX_PCT, output_jitter_pct(p, 0.3)) * (1 + 1e-9)


def test_the_jitter_estimate_matches_the_simulated_instrument() -> None:
    # The built-in furnace's dry runs show about 1.4-1.8 % RMS of output jitter on a Type S
    # thermocouple (0.1 K) with the built-in terms.
    assert 1.2 <= output_jitter_pct(TwinParams(), pv_noise_k("S")) <= 2.2


def test_the_caveat_defers_to_the_instruments_autotune() -> None:
    assert "autotune" in AUTOTUNE_CAVEAT
    assert "final word" in AUTOTUNE_CAVEAT


def test_no_suggestion_outside_the_terms_an_instrument_takes() -> None:
    # A slow integral by hand: the grid reaches four times it, past what an instrument (and
    # a station's [twin]) takes; a suggestion nobody can enter is no suggestion.
    p = TwinParams(proportional_band_c=3.0, integral_time_s=5000.0, derivative_time_s=3000.0)
    approach = (Approach(25.0, 600.0, 3.5, 5.0),)
    free = suggest_terms(p, approach, AMBIENT_C, 0.2, hold_s=HOLD_S)
    assert free is not None
    assert free.params.integral_time_s > 9999.0  # so the bounds matter
    bounds = {"proportional_band_c": (0.5, 999.0), "integral_time_s": (0.0, 9999.0),
              "derivative_time_s": (0.0, 9999.0)}
    s = suggest_terms(p, approach, AMBIENT_C, 0.2, hold_s=HOLD_S, bounds=bounds)
    assert s is not None
    for name, (lo, hi) in bounds.items():
        assert lo <= getattr(s.params, name) <= hi
    assert all(r.overshoot_k <= 0.2 for r in s.responses)
