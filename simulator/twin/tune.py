"""What a fitted twin says of the instrument's tuning (issue 16, part 4): the overshoot and
settling the loop should show at a recipe's setpoints with the instrument's PID terms, and
terms the twin expects to keep every approach within a stated overshoot.

This is a model's opinion, not a tuning. The twin is a lumped heat balance with fitted
lags; the real furnace has gradients, element ageing and a PID whose discrete details the
twin only approximates. The instrument's own autotune, run on the real furnace, remains
the final word: suggested terms are a starting point to try (or to compare with what the
autotune finds), never something to write to an instrument unseen.

The twin has no measurement noise either, so by itself it would never penalise a narrow
band: the search keeps to terms whose output would jitter by at most ``JITTER_MAX_PCT`` (RMS)
on the thermocouple's noise (or the present terms' jitter, if that is more), estimated from
the high-frequency gain of P plus filtered D on the PV, ``kp·(1 + N)``, behind the
instrument's input filter.

Each approach is simulated with ``replay.replay_loop`` on a synthetic stretch: the loop in
equilibrium at the starting temperature, the working setpoint ramping to the target at the
recipe's rate, then held. Not here: which setpoints a recipe approaches (the controller
reads the recipe), writing terms to an instrument, or the fit (``fit``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

import numpy as np

from simulator.eurotherm import DERIVATIVE_FILTER_N, INPUT_FILTER_S
from simulator.tc_input import THERMOCOUPLES
from simulator.thermal import FurnaceThermal
from simulator.twin.params import TwinParams
from simulator.twin.replay import DEFAULT_SUBSTEP_S, Stretch, replay_loop

__all__ = ["AUTOTUNE_CAVEAT", "JITTER_MAX_PCT", "PID_TERMS", "Approach", "Response", "Suggestion",
           "output_jitter_pct", "pv_noise_k", "response", "responses", "suggest_terms"]

AUTOTUNE_CAVEAT: Final = ("a model's opinion: the instrument's own autotune on the furnace "
                          "remains the final word")
DEFAULT_HOLD_S: Final = 3600.0
ROW_S: Final = 2.0
"""The synthetic stretch's rows from the end of the ramp, s (the resolution of
``settling_s``)."""
RAMP_ROW_S: Final = 30.0
"""Its rows on the ramp, s: the loop is still simulated in substeps of ``substep_s``."""
KEEP_MARGIN: Final = 1.10
"""The current terms are kept while they meet the limit and their worst settling is within
this factor of the best candidate's: a suggestion is worth making only if it is better."""
JITTER_MAX_PCT: Final = 5.0
"""The output jitter (RMS, %) suggested terms may cause on the thermocouple's noise, unless
the present terms already cause more (``output_jitter_pct``)."""
PID_TERMS: Final = ("proportional_band_c", "integral_time_s", "derivative_time_s")
"""The PID terms the tuner searches, as ``TwinParams`` names them."""
_SAMPLE_S: Final = 0.5  # the instrument's input sampling (the simulator's substep)
# Multiples of the current (proportional band, integral time, derivative time): a coarse
# grid around the current terms, then a finer one around the coarse grid's best.
_COARSE: Final = ((0.125, 0.25, 0.5, 1.0, 2.0, 4.0), (0.5, 1.0, 2.0, 4.0),
                   (0.0, 0.5, 1.0, 2.0, 4.0))
_FINE: Final = ((0.7, 1.0, 1.4), (0.7, 1.0, 1.4), (0.5, 1.0, 1.5))


@dataclass(frozen=True, slots=True)
class Approach:
    """One setpoint a recipe approaches: from steady state at ``from_c`` (°C) to ``to_c``
    (°C), the working setpoint ramping at ``rate_c_per_min`` (> 0), settled once the PV
    stays within ``band_c`` (K, > 0) of ``to_c``."""

    from_c: float
    to_c: float
    rate_c_per_min: float
    band_c: float = 2.0

    def __post_init__(self) -> None:
        if not (self.rate_c_per_min > 0.0 and self.band_c > 0.0):
            raise ValueError("an approach needs rate_c_per_min > 0 and band_c > 0, not "
                             f"{self.rate_c_per_min} and {self.band_c}")

    @property
    def ramp_s(self) -> float:
        """How long the working setpoint ramps, s."""
        return abs(self.to_c - self.from_c) / self.rate_c_per_min * 60.0


@dataclass(frozen=True, slots=True)
class Response:
    """How the twin's loop takes one approach. ``overshoot_k``: how far the PV goes past
    ``to_c`` (above it on heating, below it on cooling) once the setpoint ramp has ended,
    K, ≥ 0. ``settling_s``: from the end of the ramp until the PV stays within the band,
    s; ``math.inf`` if it is outside the band at the end of the simulated hold.
    ``peak_output_pct``: the highest output on the way, % (100: the heater saturated)."""

    to_c: float
    overshoot_k: float
    settling_s: float
    peak_output_pct: float


@dataclass(frozen=True, slots=True)
class Suggestion:
    """Terms the twin expects to meet an overshoot limit: ``params`` (the twin with them),
    its ``responses`` (one per approach, in order), how many sets of terms were simulated,
    and whether they are the instrument's current terms (then: no change is needed)."""

    params: TwinParams
    responses: tuple[Response, ...]
    candidates_tried: int
    is_current: bool


def _stretch(p: TwinParams, a: Approach, ambient_c: float, hold_s: float) -> Stretch:
    """The synthetic stretch: steady state at ``from_c`` (the output that holds it, within
    the output limits), the ramp, the hold."""
    # Nothing is measured on the ramp, so its rows are sparse (the substeps are not).
    n_ramp = math.ceil(a.ramp_s / RAMP_ROW_S)
    t_s = np.concatenate((np.linspace(0.0, a.ramp_s, n_ramp + 1)[:-1],
                          a.ramp_s + np.arange(math.ceil(hold_s / ROW_S) + 1) * ROW_S))
    step_c = np.minimum(t_s * a.rate_c_per_min / 60.0, abs(a.to_c - a.from_c))
    wsp_c = a.from_c + math.copysign(1.0, a.to_c - a.from_c) * step_c
    loss_w = FurnaceThermal(p.thermal(ambient_c)).heat_loss_w(a.from_c)
    hold_pct = min(max(100.0 * loss_w / p.max_power_w, p.output_low_pct), p.output_high_pct)
    output_pct = np.zeros(t_s.size)
    output_pct[0] = hold_pct
    return Stretch(batch=f"approach {a.from_c:g}->{a.to_c:g} C", t_s=t_s, wsp_c=wsp_c,
                   pv_c=np.full(t_s.size, float(a.from_c)), output_pct=output_pct,
                   sample_c=np.full(t_s.size, math.nan), ambient_c=ambient_c)


def _response(p: TwinParams, a: Approach, s: Stretch, substep_s: float) -> Response:
    loop = replay_loop(p, s, substep_s)
    after = s.t_s >= a.ramp_s
    t_s, pv_c = s.t_s[after], loop.tc_c[after]
    direction = 1.0 if a.to_c >= a.from_c else -1.0
    overshoot_k = max(0.0, float(np.max(direction * (pv_c - a.to_c))))
    outside = np.flatnonzero(np.abs(pv_c - a.to_c) > a.band_c)
    if outside.size == 0:
        settling_s = 0.0
    elif outside[-1] == pv_c.size - 1:
        settling_s = math.inf
    else:
        settling_s = float(t_s[outside[-1] + 1]) - a.ramp_s
    return Response(a.to_c, overshoot_k, settling_s, float(np.max(loop.output_pct)))


def response(p: TwinParams, a: Approach, ambient_c: float, *, hold_s: float = DEFAULT_HOLD_S,
             substep_s: float = DEFAULT_SUBSTEP_S) -> Response:
    """How the twin ``p`` (with its PID terms) takes approach ``a`` in a room at
    ``ambient_c`` (°C), holding ``to_c`` for ``hold_s`` after the ramp."""
    return _response(p, a, _stretch(p, a, ambient_c, hold_s), substep_s)


def responses(p: TwinParams, approaches: Iterable[Approach], ambient_c: float, *,
              hold_s: float = DEFAULT_HOLD_S,
              substep_s: float = DEFAULT_SUBSTEP_S) -> tuple[Response, ...]:
    """``response`` for each approach, in order."""
    return tuple(response(p, a, ambient_c, hold_s=hold_s, substep_s=substep_s)
                 for a in approaches)


def pv_noise_k(thermocouple: str) -> float:
    """The PV noise (K, 1 sigma) of a thermocouple type, as the simulator plays it. Raises
    ``KeyError`` for an unknown type."""
    return THERMOCOUPLES[thermocouple].noise_k


def output_jitter_pct(p: TwinParams, pv_noise_k: float) -> float:
    """The output's RMS jitter (%) that PV noise of ``pv_noise_k`` (K, white, sampled every
    ``_SAMPLE_S``) causes through the instrument's input filter and the PID's fast gain:
    the proportional gain, plus the derivative's ``kp·N`` (its filter time is Td/N)."""
    kp = 100.0 / p.proportional_band_c
    gain = kp * (1.0 + DERIVATIVE_FILTER_N) if p.derivative_time_s > 0.0 else kp
    alpha = -math.expm1(-_SAMPLE_S / INPUT_FILTER_S)
    return gain * pv_noise_k * math.sqrt(alpha / (2.0 - alpha))


def _candidates(p: TwinParams, factors: Sequence[Sequence[float]], base_td_s: float,
                keep: Callable[[TwinParams], bool]) -> list[TwinParams]:
    """``p`` with its band and integral time scaled by every combination of ``factors``,
    and the derivative time ``base_td_s`` scaled by them; those ``keep`` accepts."""
    found = (replace(p, proportional_band_c=p.proportional_band_c * f_pb,
                     integral_time_s=p.integral_time_s * f_ti,
                     derivative_time_s=base_td_s * f_td)
             for f_pb, f_ti, f_td in itertools.product(*factors))
    return [c for c in found if keep(c)]


def _score(rs: Sequence[Response]) -> tuple[int, float, float, float]:
    """Lower is better: how many approaches never settle, then the slowest and the total
    settling time of the others (s), then the largest overshoot (K)."""
    finite_s = [r.settling_s for r in rs if math.isfinite(r.settling_s)]
    return (len(rs) - len(finite_s), max(finite_s, default=0.0), sum(finite_s),
            max((r.overshoot_k for r in rs), default=0.0))


def suggest_terms(p: TwinParams, approaches: Sequence[Approach], ambient_c: float,
                  overshoot_max_k: float, *, pv_noise_k: float = 0.1,
                  hold_s: float = DEFAULT_HOLD_S,
                  substep_s: float = DEFAULT_SUBSTEP_S,
                  bounds: Mapping[str, tuple[float, float]] | None = None
                  ) -> Suggestion | None:
    """PID terms for the twin ``p`` that keep every approach's overshoot within
    ``overshoot_max_k`` (K) and settle best (``_score``), from a coarse grid around the
    current terms and a finer one around its best; the current terms if they meet the limit
    and their slowest settling is within ``KEEP_MARGIN`` (or one row) of the best's; ``None``
    if no set of terms tried meets the limit. Only terms whose output jitter on PV noise of
    ``pv_noise_k`` (K) stays within ``JITTER_MAX_PCT`` (or the present terms') and, with
    ``bounds`` (name -> (low, high), inclusive), whose band, integral and derivative times
    are within them (what the instrument takes) are tried. See ``AUTOTUNE_CAVEAT``."""
    stretches = [_stretch(p, a, ambient_c, hold_s) for a in approaches]
    # The shortest simulations first, and the approach that last failed before them.
    order = sorted(range(len(stretches)), key=lambda k: stretches[k].duration_s)
    tried: set[tuple[float, float, float]] = set()
    best: tuple[tuple[int, float, float, float], TwinParams, tuple[Response, ...]] | None = None

    def evaluate(c: TwinParams) -> tuple[Response, ...] | None:
        """The candidate's responses, or None once it breaks the limit or cannot beat the
        best so far (so most losing candidates cost one or two simulations)."""
        nonlocal best
        tried.add((c.proportional_band_c, c.integral_time_s, c.derivative_time_s))
        got: dict[int, Response] = {}
        for k in list(order):
            got[k] = r = _response(c, approaches[k], stretches[k], substep_s)
            # Each part of the score can only grow with more approaches.
            if r.overshoot_k > overshoot_max_k or (
                    best is not None and _score(list(got.values())) >= best[0]):
                order.remove(k)
                order.insert(0, k)
                return None
        result = tuple(got[k] for k in range(len(stretches)))
        if best is None or _score(result) < best[0]:
            best = (_score(result), c, result)
        return result

    max_jitter_pct = max(JITTER_MAX_PCT, output_jitter_pct(p, pv_noise_k)) * (1.0 + 1e-9)

    limits = [(n, *bounds[n]) for n in PID_TERMS if n in bounds] if bounds else []

    def quiet(c: TwinParams) -> bool:
        return (output_jitter_pct(c, pv_noise_k) <= max_jitter_pct
                and all(lo <= getattr(c, n) <= hi for n, lo, hi in limits))

    def search(around: TwinParams, factors: Sequence[Sequence[float]], td_s: float) -> None:
        for c in _candidates(around, factors, td_s, quiet):
            if (c.proportional_band_c, c.integral_time_s, c.derivative_time_s) not in tried:
                evaluate(c)

    current = evaluate(p)
    # Without D now, the coarse grid tries some: from a sixth of the integral time.
    search(p, _COARSE, p.derivative_time_s or p.integral_time_s / 6.0)
    if best is None:
        return None
    search(best[1], _FINE, best[1].derivative_time_s)
    if current is not None:
        n_inf, worst_s, *_ = _score(current)
        if n_inf <= best[0][0] and worst_s <= KEEP_MARGIN * best[0][1] + ROW_S:
            return Suggestion(p, current, len(tried), is_current=True)
    return Suggestion(best[1], best[2], len(tried), is_current=False)
