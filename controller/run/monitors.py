"""Stateful plausibility monitors run by the scan cycle, one small tracker per symptom,
summarised each cycle in a frozen ``Health`` (and ``ForeignChange`` records) that ride on
the snapshot.

Not here: decisions. The interlocks judge ``Health`` as pure functions; this module only
remembers what one snapshot cannot show (how long a value has been frozen, a spike, how
long a flow has been short, how much the furnace rose at full or zero output, how often
another program changed an instrument setting we had written).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Final

from controller.run.dtg import SlidingSlope
from drivers.roles import ControllerReading, FlowReading

__all__ = ["ForeignChange", "ForeignWrites", "Health", "HealthMonitor", "MAX_PV_STEP_C_PER_S"]

# The furnace cannot change faster than its full-power heating rate (61 °C/min at 220 °C,
# hardware.md §4.4) or its natural cooling (38 °C/min at 1600 °C): ~1 °C/s is the ceiling.
MAX_PV_STEP_C_PER_S = 2.0
# A spike is a single implausible sample; this many in a row is a real step, not a spike.
_SPIKE_MAX_RUN = 3
_FULL_OUTPUT_PCT = 95.0
_ZERO_OUTPUT_PCT = 1.0
_FLOW_SHORT_FRACTION = 0.5  # measured below half the commanded flow counts as short


@dataclass(frozen=True, slots=True)
class Health:
    """What the monitors know this cycle (seconds are process time)."""

    pv_unchanged_s: float = 0.0  # furnace PV bit-identical for this long
    pv_spike: bool = False  # this cycle's PV was an implausible jump, held at the last
    furnace_rate_c_per_min: float | None = None
    full_output_s: float = 0.0  # output at or near 100 % for this long...
    full_output_rise_c: float = 0.0  # ...and the PV rose this much meanwhile
    zero_output_s: float = 0.0  # output at or near 0 % for this long...
    zero_output_rise_c: float = 0.0  # ...and the PV rose this much meanwhile
    over_limit_cycles: int = 0  # consecutive cycles above the station maximum
    flow_short_s: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


_NONE_SHORT: Final[Mapping[str, float]] = MappingProxyType({})


def _window(t_s: float, reading: ControllerReading, inside: bool,
            since: tuple[float, float] | None
            ) -> tuple[float, float, tuple[float, float] | None]:
    """How long the output has been inside a window (full or zero) and how far the PV rose
    meanwhile, and the window's new start (None once outside)."""
    if not inside:
        return 0.0, 0.0, None
    if since is None:
        since = (t_s, reading.temperature_c)
    return t_s - since[0], reading.temperature_c - since[1], since


class HealthMonitor:
    """Feeds on each cycle's raw furnace reading and flows; returns the reading to use
    (a spike is replaced by the last good value) and the ``Health`` summary."""

    def __init__(self, max_temperature_c: float) -> None:
        self.max_temperature_c = max_temperature_c
        self._last_pv: float | None = None
        self._last_t_s: float | None = None
        self._unchanged_since_s: float | None = None
        self._spike_run = 0
        self._rate = SlidingSlope(120.0)
        self._full_since: tuple[float, float] | None = None  # (t_s, pv at start)
        self._zero_since: tuple[float, float] | None = None
        self._over = 0
        self._short_since: dict[str, float] = {}

    def update(self, t_s: float, reading: ControllerReading | None,
               flows: Mapping[str, FlowReading | None],
               commanded_sccm: Mapping[str, float]) -> tuple[ControllerReading | None, Health]:
        """Judge this cycle. Returns (the reading to act on, health)."""
        spike = False
        if reading is not None:
            reading, spike = self._despike(t_s, reading)
        pv = reading.temperature_c if reading is not None else math.nan
        full_s = full_rise_c = zero_s = zero_rise_c = 0.0
        if reading is not None:  # (a missed poll leaves both windows as they were)
            full_s, full_rise_c, self._full_since = _window(
                t_s, reading, reading.output_pct >= _FULL_OUTPUT_PCT, self._full_since)
            zero_s, zero_rise_c, self._zero_since = _window(
                t_s, reading, reading.output_pct <= _ZERO_OUTPUT_PCT, self._zero_since)
        short = self._flows(t_s, flows, commanded_sccm)
        health = Health(
            pv_unchanged_s=self._unchanged(t_s, reading, spike),
            pv_spike=spike,
            furnace_rate_c_per_min=self._slope(t_s, pv),
            full_output_s=full_s,
            full_output_rise_c=full_rise_c,
            zero_output_s=zero_s,
            zero_output_rise_c=zero_rise_c,
            over_limit_cycles=self._over_limit(pv),
            flow_short_s=MappingProxyType(short) if short else _NONE_SHORT,
        )
        self._last_t_s = t_s
        return reading, health

    def _despike(self, t_s: float, reading: ControllerReading
                 ) -> tuple[ControllerReading, bool]:
        last, last_t = self._last_pv, self._last_t_s
        pv = reading.temperature_c
        if last is not None and last_t is not None and not reading.is_sensor_break:
            allowed_c = MAX_PV_STEP_C_PER_S * max(t_s - last_t, 1.0) + 1.0
            if abs(pv - last) > allowed_c and self._spike_run < _SPIKE_MAX_RUN:
                self._spike_run += 1
                return replace(reading, temperature_c=last), True
        self._spike_run = 0
        self._last_pv = pv
        return reading, False

    def _unchanged(self, t_s: float, reading: ControllerReading | None, spike: bool) -> float:
        if reading is None or spike:
            return 0.0 if reading is None else (
                t_s - self._unchanged_since_s if self._unchanged_since_s is not None else 0.0)
        if self._unchanged_since_s is None or reading.temperature_c != self._frozen_value:
            self._unchanged_since_s = t_s
            self._frozen_value = reading.temperature_c
        return t_s - self._unchanged_since_s

    _frozen_value: float = math.nan

    def _slope(self, t_s: float, pv: float) -> float | None:
        value = self._rate.update(t_s, pv)
        return None if math.isnan(value) else value

    def _over_limit(self, pv: float) -> int:
        self._over = self._over + 1 if pv > self.max_temperature_c else 0
        return self._over

    def _flows(self, t_s: float, flows: Mapping[str, FlowReading | None],
               commanded_sccm: Mapping[str, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        for gas, want in commanded_sccm.items():
            reading = flows.get(gas)
            short = want > 0 and (reading is None or reading.is_faulted
                                  or reading.flow_sccm < _FLOW_SHORT_FRACTION * want)
            if not short:
                self._short_since.pop(gas, None)
                continue
            since = self._short_since.setdefault(gas, t_s)
            out[gas] = t_s - since
        return out


@dataclass(frozen=True, slots=True)
class ForeignChange:
    """An instrument setting found to be not what we last wrote and read back: another
    program on the bus, the front panel or a power cycle changed it."""

    device: str  # the instrument (``mfc_Ar``, ``furnace``)
    setting: str  # the scan cycle's name for the setting (``flow_Ar``, ``local_setpoint``)
    what: str  # the setting in words, for records ("setpoint", "local setpoint (TG.SP)")
    ours: float  # what we last wrote and read back, in ``unit``
    found: float  # what the instrument reported instead, in ``unit``
    unit: str
    count: int  # foreign changes on this device so far (this one included)
    t_s: float  # process time it was found


_NO_CHANGES: MappingProxyType[str, ForeignChange] = MappingProxyType({})


class ForeignWrites:
    """Counts, per device, the foreign changes of settings we wrote and read back.

    A change counts once: while the instrument keeps the foreign value it is the same
    change. The setting is armed again once we rewrote it (``rewritten``) or the
    instrument reports our value again; ``reset`` forgets every count (our configuration
    re-applied, on resume). ``latest`` is the last change per device.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._standing: set[str] = set()  # settings whose foreign value was counted
        self.latest = _NO_CHANGES

    def observe(self, t_s: float, device: str, setting: str, what: str, *,
                ours: float | None, found: float, tolerance: float, unit: str
                ) -> ForeignChange | None:
        """Compare ``found`` (read from the instrument) with ``ours`` (None: nothing
        written and confirmed yet; a NaN ``found``: not reported). Returns the change if
        this is a new one, else None."""
        if ours is None or math.isnan(found):
            return None
        if abs(found - ours) <= tolerance:
            self._standing.discard(setting)
            return None
        if setting in self._standing:
            return None
        self._standing.add(setting)
        count = self._counts[device] = self._counts.get(device, 0) + 1
        change = ForeignChange(device, setting, what, ours, found, unit, count, t_s)
        self.latest = MappingProxyType({**self.latest, device: change})
        return change

    def rewritten(self, setting: str) -> None:
        """We wrote ``setting`` and read it back: a later foreign value is a new change."""
        self._standing.discard(setting)

    def reset(self) -> None:
        """Forget every change and count (our configuration was re-applied)."""
        self._counts.clear()
        self._standing.clear()
        self.latest = _NO_CHANGES
