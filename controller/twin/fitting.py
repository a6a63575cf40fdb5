"""``furnace twin fit``'s work: the batches' usable stretches, whether they are enough to pin a
twin, the fit, and whether its result can be trusted. A fit from too little or inconsistent
data is refused with one line (``ConfigurationError``: exit 2), and nothing is written.

Enough means at least ``MIN_USED_S`` of usable furnace data in all, with time spent heating
(the PV rising by ``HEATING_K_PER_MIN`` or more under power: it pins heated mass against
power) and time cooling with the output off (it pins the losses against the mass).
Trusted means every batch replays within ``MAX_REPLAY_RMS_K`` (a batch that does not is
another furnace, a changed tube or a fault the record does not show) and no fitted value
ended at a bound or has no bounded uncertainty (the data could not pin it). Not here: the optimiser
(``simulator.twin.fit``), the printing and files (``controller.cli_twin``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from controller.recipe.station import Station, simulated_tube_volume_l, twin_bounds
from controller.run.clock import utc_now
from controller.text import span
from controller.twin.stretches import BatchStretches, batch_stretches
from drivers.errors import ConfigurationError
from simulator.twin.fit import FitResult, TwinFitError, fit_twin
from simulator.twin.params import TwinParams
from simulator.twin.purge import PurgeFit, fit_tube_volume

__all__ = ["MAX_REPLAY_RMS_K", "MIN_USED_S", "TwinFit", "fit_station", "station_twin"]

MIN_USED_S: Final = 3600.0
HEATING_K_PER_MIN: Final = 0.5
MIN_HEATING_S: Final = 10 * 60.0
MIN_COOLING_S: Final = 15 * 60.0
MAX_REPLAY_RMS_K: Final = 10.0
MAX_PURGE_RMS_DECADES: Final = 0.1
"""A purge the fitted tube replays worse than this (log10 of O2) is not one tube's: the
volume is then not fitted (a changed tube, a leak, an analyser that lags more)."""


@dataclass(frozen=True)
class TwinFit:
    """A fit that passed: the result, the twin it started from, the batches as read and
    when it was made (ISO-8601 UTC)."""

    result: FitResult
    start: TwinParams
    batches: tuple[BatchStretches, ...]
    fitted_utc: str
    tube: PurgeFit | None = None
    """The tube's gas volume from the batches' purges; None: none was recorded."""
    tube_start_l: float = math.nan
    """The volume the station gave before (its [twin]'s, else its [envelope]'s), L."""
    station_tube_l: float | None = None
    """The volume the station's own [twin] gave, L (None: it gave none)."""
    tube_note: str = ""
    """Why the purges gave no volume although there were some ("": there were none)."""

    @property
    def excluded(self) -> tuple[str, ...]:
        """Every stretch left out, one line each."""
        return tuple(line for b in self.batches for line in b.excluded)


def station_twin(station: Station) -> TwinParams:
    """The twin ``station`` gives (its ``[twin]``, else the built-in furnace)."""
    return TwinParams(**station.twin.params()) if station.twin is not None else TwinParams()


def _smooth_rate(t_s: np.ndarray, pv_c: np.ndarray) -> np.ndarray:
    """The PV's rate of change (K/min) over each interval, from the PV a minute apart (the
    noise of one 2 s step is larger than a slow ramp's rise)."""
    back = np.searchsorted(t_s, t_s[1:] - 60.0)
    span_s = np.maximum(t_s[1:] - t_s[back], 1e-9)
    return np.asarray(60.0 * (pv_c[1:] - pv_c[back]) / span_s)


def _enough(batches: Sequence[BatchStretches], start: TwinParams) -> str:
    """Why the data cannot pin a twin, or "" if they can."""
    used_s = sum(b.used_s for b in batches)
    if used_s < MIN_USED_S:
        return (f"only {span(used_s)} of usable furnace data in {len(batches)} batch(es); a "
                f"fit needs at least {span(MIN_USED_S)}, with a heat-up and a cool-down")
    heating_s = cooling_s = 0.0
    for b in batches:
        for s in b.stretches:
            dt_s = np.diff(s.t_s)
            out = s.output_pct[1:]
            rate_k_per_min = _smooth_rate(s.t_s, s.pv_c)
            on = out > start.output_low_pct + 0.5
            heating_s += float(dt_s[on & (rate_k_per_min >= HEATING_K_PER_MIN)].sum())
            off = ~on
            falling = rate_k_per_min < 0.0
            cooling_s += float(dt_s[off & falling].sum())
    if heating_s < MIN_HEATING_S:
        return (f"only {span(heating_s)} of heating at {HEATING_K_PER_MIN:g} K/min or more "
                f"(at least {span(MIN_HEATING_S)} needed): the heated mass cannot be told "
                "from the heater's power")
    if cooling_s < MIN_COOLING_S:
        return (f"only {span(cooling_s)} of cooling with the output off (at least "
                f"{span(MIN_COOLING_S)} needed): the losses cannot be told from the heated "
                "mass; fit batches that include a cool-down")
    return ""


def fit_station(batch_dirs: Sequence[Path], station: Station, source: str) -> TwinFit:
    """Fit ``station``'s twin (from its ``[twin]`` or the built-in values) to the batches in
    ``batch_dirs``. ``source`` names the station file in errors. Raises
    ``ConfigurationError`` for a folder that is not a batch, a batch given twice, a batch
    from another station or another furnace thermocouple, too little data, or a fit that
    cannot be trusted."""
    first: dict[str, Path] = {}
    for d in batch_dirs:
        name = d.resolve().name
        if name in first:
            raise ConfigurationError(f"a batch given twice: the same batch as {first[name]} "
                                     "(a fit counts each batch once)", source=str(d))
        first[name] = d
    batches = tuple(batch_stretches(d) for d in batch_dirs)
    seen: dict[str, Path] = {}
    for d, b in zip(batch_dirs, batches, strict=True):
        if b.batch_id in seen:  # a copy of a folder, renamed: the audit chain tells
            raise ConfigurationError(
                f"a batch given twice: the same batch as {seen[b.batch_id]} (batch id "
                f"{b.batch_id} in both audit chains: a copy under another name?); a fit "
                "counts each batch once", source=str(d))
        seen[b.batch_id] = d
    thermocouple = station.furnace.thermocouple
    for b in batches:
        if b.station.name != station.name:
            raise ConfigurationError(
                f"batch {b.batch} was recorded on station {b.station.name!r}, not "
                f"{station.name!r}: a twin is one furnace's", source=source, field="name")
        if b.station.furnace.thermocouple != thermocouple:
            raise ConfigurationError(
                f"batch {b.batch} was recorded with a Type {b.station.furnace.thermocouple} "
                f"furnace thermocouple, the station has Type {thermocouple}: a twin is one "
                "furnace's as one thermocouple reads it", source=source,
                field="furnace.thermocouple")
    start = station_twin(station)
    why = _enough(batches, start)
    if why:
        raise ConfigurationError(f"cannot fit a twin: {why}", source=source)
    bounds = twin_bounds()
    stretches = [s for b in batches for s in b.stretches]
    try:
        result = fit_twin(stretches, start, bounds)
    except TwinFitError as exc:
        raise ConfigurationError(f"cannot fit a twin: {exc}", source=source) from None
    worst = max(result.rms_k, key=lambda k: result.rms_k[k])
    best_k = min(result.rms_k.values())
    if best_k > MAX_REPLAY_RMS_K:
        # None replays: dropping one batch cannot help; where the fit began may.
        hint = ("it started from the station's [twin]: delete it to start from the built-in "
                "furnace" if station.twin is not None else "are they of this furnace?")
        raise ConfigurationError(
            f"cannot fit a twin: no batch replays within {MAX_REPLAY_RMS_K:g} K RMS (best "
            f"{best_k:.1f} K): the fit found no furnace like these batches ({hint})",
            source=source)
    if result.rms_k[worst] > MAX_REPLAY_RMS_K:
        others = ", ".join(f"{k} {v:.1f} K" for k, v in result.rms_k.items() if k != worst)
        raise ConfigurationError(
            f"cannot fit a twin: batch {worst} replays with {result.rms_k[worst]:.1f} K RMS "
            f"error (at most {MAX_REPLAY_RMS_K:g} K; {others or 'no other batch'}): another "
            "furnace, a changed tube or a fault the record does not show? Fit without it",
            source=source)
    if result.at_bound:
        name = result.at_bound[0]
        lo, hi = bounds[name]
        raise ConfigurationError(
            f"cannot fit a twin: twin.{name} ended at its bound ({lo:g}..{hi:g}): the "
            "batches cannot pin it (add batches that heat, dwell and cool further apart)",
            source=source)
    unpinned = [name for name, sigma in result.one_sigma.items() if not math.isfinite(sigma)]
    if unpinned:
        raise ConfigurationError(
            f"cannot fit a twin: twin.{unpinned[0]} is not pinned by these batches at all (its "
            "uncertainty has no bound): a thermocouple no lag explains, or too little of "
            "what it acts on", source=source)
    stamp = utc_now().strftime("%Y-%m-%dT%H:%M:%SZ")
    tube_start_l = simulated_tube_volume_l(station)
    tube = fit_tube_volume([p for b in batches for p in b.purges], tube_start_l,
                           bounds["tube_volume_l"])
    given_l = station.twin.tube_volume_l if station.twin is not None else None
    tube_note = ""
    if tube is not None and max(tube.rms_decades.values()) > MAX_PURGE_RMS_DECADES:
        worst = ", ".join(f"{b} {v:.2f}" for b, v in tube.rms_decades.items())
        tube_note = (f"the purges do not fit one tube (log10 O2 RMS {worst}; at most "
                     f"{MAX_PURGE_RMS_DECADES:g}): a leak, a changed tube or a slow analyser?")
        tube = None
    return TwinFit(result, start, batches, stamp, tube, tube_start_l, given_l, tube_note)
