"""Fault injection into a ``SimWorld``: the injector that applies the ``--fault`` specs
(parsed in ``simulator.fault_specs``, which lists the kinds and what each does) at their
world times (reference/faults.md §2, levels L1/L2 of §4). Not responsible for recording
what happened (``simulator.journal``) or for any clock: world time is the controller's
process time, driven by ``advance_to``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from typing import Final

from simulator.fault_specs import (
    DEVICE_KINDS,
    MFC_KINDS,
    POWER_CYCLE_OFF_S,
    WIRE_KINDS,
    FaultEvent,
    FaultKind,
    FaultSpec,
    format_duration,
    parse_duration,
    parse_fault,
)
from simulator.world import SimWorld

__all__ = [
    "AIR_LEAK_SCCM",
    "EXOTHERM_EXTRA_MAX_W",
    "EXOTHERM_GAIN",
    "POWER_CYCLE_OFF_S",
    "PV_SPIKE_K",
    "PV_SPIKE_MEAN_INTERVAL_S",
    "TC_DRIFT_MAX_K",
    "TC_DRIFT_RATE_K_PER_MIN",
    "FaultEvent",
    "FaultInjector",
    "FaultKind",
    "FaultSpec",
    "format_duration",
    "parse_duration",
    "parse_fault",
]

TC_DRIFT_RATE_K_PER_MIN: Final = 2.0
TC_DRIFT_MAX_K: Final = 50.0
PV_SPIKE_K: Final = 200.0
PV_SPIKE_MEAN_INTERVAL_S: Final = 120.0
AIR_LEAK_SCCM: Final = 5.0
EXOTHERM_GAIN: Final = 20.0
EXOTHERM_EXTRA_MAX_W: Final = 5.0  # ~+40 K over the furnace at most (τ_s/C_s ≈ 8 K/W)
_EPS_S: Final = 1e-9


class _Effect:
    """What one fault does: ``start`` and ``stop`` once each, ``tick`` before every
    substep in between (only if ``ticks``)."""

    ticks = False

    def start(self, t_s: float) -> None:
        raise NotImplementedError

    def tick(self, t_s: float) -> None:
        """Called before each substep while active (when ``ticks``)."""

    def stop(self, t_s: float) -> None:
        raise NotImplementedError


class _Setter(_Effect):
    """An effect that is a pair of plain actions."""

    def __init__(self, on: Callable[[], None], off: Callable[[], None]) -> None:
        self._on = on
        self._off = off

    def start(self, t_s: float) -> None:
        self._on()

    def stop(self, t_s: float) -> None:
        self._off()


class _Drift(_Effect):
    ticks = True

    def __init__(self, world: SimWorld) -> None:
        self._furnace = world.furnace
        self._t0_s = 0.0

    def start(self, t_s: float) -> None:
        self._t0_s = t_s

    def tick(self, t_s: float) -> None:
        grown_k = TC_DRIFT_RATE_K_PER_MIN * (t_s - self._t0_s) / 60.0
        self._furnace.pv_offset_k = -min(grown_k, TC_DRIFT_MAX_K)

    def stop(self, t_s: float) -> None:
        self._furnace.pv_offset_k = 0.0


class _Spikes(_Effect):
    """Poisson-timed glitches; each shows in the PV register until the first read of PV."""

    ticks = True

    def __init__(self, world: SimWorld, rng: random.Random) -> None:
        self._world = world
        self._rng = rng
        self._unit = world.spec.furnace_unit
        self._next_s = math.inf

    def start(self, t_s: float) -> None:
        self._next_s = t_s + self._rng.expovariate(1.0 / PV_SPIKE_MEAN_INTERVAL_S)
        self._world.read_hooks.append(self._on_read)

    def tick(self, t_s: float) -> None:
        if t_s + _EPS_S >= self._next_s:
            self._world.furnace.pv_spike_k = PV_SPIKE_K
            while self._next_s <= t_s + _EPS_S:
                self._next_s += self._rng.expovariate(1.0 / PV_SPIKE_MEAN_INTERVAL_S)

    def _on_read(self, unit: int, address: int, count: int, t_s: float) -> None:
        furnace = self._world.furnace
        if (unit == self._unit and furnace.pv_spike_k != 0.0
                and any(address <= a < address + count for a in furnace.pv_addresses)):
            furnace.pv_spike_k = 0.0  # read once: a single-sample glitch
            furnace.publish()

    def stop(self, t_s: float) -> None:
        if self._on_read in self._world.read_hooks:
            self._world.read_hooks.remove(self._on_read)
        self._world.furnace.pv_spike_k = 0.0
        self._world.furnace.publish()


class FaultInjector:
    """Applies ``specs`` (``FaultSpec``s, or texts for ``parse_fault``) to ``world`` at their
    times through one ``world.hooks`` entry.

    Each fault starts at the first substep that begins at or after ``at_s`` and ends at the
    first one at or after ``end_s`` (so with the default 0.5 s substeps, within 0.5 s of the
    spec). The hook is installed only if there are specs and removes itself once every fault
    has ended, so a run without faults pays nothing. ``seed`` seeds the random parts
    (``pv_spike`` timing). ``listeners`` are called with each ``FaultEvent``.

    Raises ``ValueError`` (one line, naming the spec) for a fault the world cannot take:
    a device, gas, O2 analyser, sample thermocouple, balance or sample chemistry it lacks.
    """

    def __init__(self, world: SimWorld, specs: Iterable[FaultSpec | str], *,
                 seed: int = 0) -> None:
        self.world = world
        self._rng = random.Random(seed)
        parsed = [parse_fault(s) if isinstance(s, str) else s for s in specs]
        ordered = sorted(parsed, key=lambda s: s.at_s)
        self._pending: list[tuple[FaultSpec, _Effect]] = [(s, self._effect(s)) for s in ordered]
        self._active: list[tuple[FaultSpec, _Effect]] = []
        self._muted: dict[int, int] = {}
        self._balance_off = 0
        self.events: list[FaultEvent] = []
        """Every start and end so far, in order."""
        self.listeners: list[Callable[[FaultEvent], None]] = []
        """Called with each new ``FaultEvent`` (the journal subscribes here)."""
        self._installed = False
        if self._pending:
            world.hooks.append(self._hook)
            self._installed = True

    @property
    def active(self) -> tuple[FaultSpec, ...]:
        """The faults in effect now, in start order."""
        return tuple(spec for spec, _ in self._active)

    @property
    def pending(self) -> tuple[FaultSpec, ...]:
        """The faults not started yet, in time order."""
        return tuple(spec for spec, _ in self._pending)

    def close(self) -> None:
        """End every active fault now (world time), drop the pending ones, remove the hook."""
        t_s = self.world.now_s
        for spec, effect in self._active:
            effect.stop(t_s)
            self._emit(spec, t_s, "end")
        self._active.clear()
        self._pending.clear()
        self._uninstall()

    # ---- the hook ----------------------------------------------------------------------

    def _hook(self, world: SimWorld, t_s: float) -> None:
        if self._active:
            still = []
            for spec, effect in self._active:
                if spec.end_s <= t_s + _EPS_S:
                    effect.stop(t_s)
                    self._emit(spec, t_s, "end")
                else:
                    still.append((spec, effect))
            self._active = still
        pending = self._pending
        while pending and pending[0][0].at_s <= t_s + _EPS_S:
            spec, effect = pending.pop(0)
            effect.start(t_s)
            self._emit(spec, t_s, "start")
            self._active.append((spec, effect))
        for _, effect in self._active:
            if effect.ticks:
                effect.tick(t_s)
        if not self._active and not pending:
            self._uninstall()

    def _uninstall(self) -> None:
        if self._installed:
            self.world.hooks.remove(self._hook)
            self._installed = False

    def _emit(self, spec: FaultSpec, t_s: float, phase: str) -> None:
        event = FaultEvent(spec.kind, spec.target, t_s, phase)
        self.events.append(event)
        for listener in tuple(self.listeners):
            listener(event)

    # ---- building effects --------------------------------------------------------------

    def _effect(self, spec: FaultSpec) -> _Effect:
        """The effect of ``spec`` on this world. Raises ``ValueError`` if it cannot apply."""
        world = self.world
        furnace = world.furnace
        kind = FaultKind(spec.kind)

        def fail(rule: str) -> ValueError:
            return ValueError(f"fault {str(spec)!r}: {rule}")

        if kind is FaultKind.SENSOR_BREAK:
            if spec.target == "sample_tc":
                indicator = world.sample_tc
                if indicator is None:
                    raise fail("this station has no sample thermocouple")
                return _Setter(lambda: indicator.inject_sensor_break(True),
                               lambda: indicator.inject_sensor_break(False))
            return _Setter(lambda: furnace.inject_sensor_break(True),
                           lambda: furnace.inject_sensor_break(False))
        if kind is FaultKind.PV_FROZEN:
            return _Setter(lambda: setattr(furnace, "pv_frozen", True),
                           lambda: setattr(furnace, "pv_frozen", False))
        if kind is FaultKind.TC_DRIFT:
            return _Drift(world)
        if kind is FaultKind.PV_SPIKE:
            return _Spikes(world, random.Random(self._rng.getrandbits(64)))
        if kind in (FaultKind.HEATER_OPEN, FaultKind.HEATER_STUCK):
            frac = 0.0 if kind is FaultKind.HEATER_OPEN else 1.0
            return _Setter(lambda: setattr(furnace, "heater_override_frac", frac),
                           lambda: setattr(furnace, "heater_override_frac", None))
        if kind is FaultKind.POWER_CYCLE:
            unit = world.spec.furnace_unit

            def off() -> None:
                furnace.power_off()
                self._mute(unit)

            def on() -> None:
                furnace.power_on()
                self._unmute(unit)

            return _Setter(off, on)
        if kind is FaultKind.FRONT_PANEL:
            return self._panel(spec)
        if kind in DEVICE_KINDS:
            return self._device_effect(spec, kind, fail)
        if kind in MFC_KINDS:
            mfc = world.mfcs.get(spec.target or "")
            if mfc is None:
                raise fail(f"this station has no MFC for {spec.target} "
                           f"(has: {', '.join(world.mfcs)})")
            attr = "no_flow" if kind is FaultKind.MFC_NO_FLOW else "stuck"
            return _Setter(lambda: setattr(mfc, attr, True),
                           lambda: setattr(mfc, attr, False))
        if kind is FaultKind.AIR_LEAK:
            tube = world.tube

            def leak_on() -> None:
                tube.leak_sccm += AIR_LEAK_SCCM

            def leak_off() -> None:
                tube.leak_sccm = max(0.0, tube.leak_sccm - AIR_LEAK_SCCM)

            return _Setter(leak_on, leak_off)
        if kind is FaultKind.BALANCE_DISCONNECTED:
            if world.balance is None:
                raise fail("this station has no balance")
            return _Setter(self._balance_down, self._balance_up)
        if kind is FaultKind.EXOTHERM_RUNAWAY:
            kinetics = world.kinetics
            if kinetics is None:
                raise fail("the boat holds no reacting sample (an inert boat)")

            def runaway_on() -> None:
                kinetics.exotherm_gain = EXOTHERM_GAIN
                kinetics.exotherm_extra_max_w = EXOTHERM_EXTRA_MAX_W

            def runaway_off() -> None:
                kinetics.exotherm_gain = 1.0
                kinetics.exotherm_extra_max_w = math.inf

            return _Setter(runaway_on, runaway_off)
        raise fail("not implemented")  # pragma: no cover - every FaultKind is handled above

    def _panel(self, spec: FaultSpec) -> _Effect:
        furnace = self.world.furnace
        if spec.target == "manual":
            return _Setter(furnace.panel_manual, furnace.panel_auto)
        setpoint_c = spec.value if spec.value is not None else self.world.spec.ambient_c
        saved: list[float] = []

        def local() -> None:
            saved.append(furnace.local_sp_c)
            furnace.panel_local_setpoint(setpoint_c)

        def back() -> None:
            furnace.panel_local_setpoint(saved[-1], select_local=False)
            furnace.panel_remote()

        return _Setter(local, back)

    def _device_effect(self, spec: FaultSpec, kind: FaultKind,
                       fail: Callable[[str], ValueError]) -> _Effect:
        world = self.world
        if spec.target == "balance":
            if world.balance is None:
                raise fail("this station has no balance")
            return _Setter(self._balance_down, self._balance_up)
        unit = self._unit(spec.target or "furnace", fail)
        wire = WIRE_KINDS.get(kind)
        if wire is None:
            return _Setter(lambda: self._mute(unit), lambda: self._unmute(unit))
        faults = world.wire_faults

        def wire_on() -> None:
            faults[unit] = wire

        def wire_off() -> None:
            if faults.get(unit) is wire:
                del faults[unit]

        return _Setter(wire_on, wire_off)

    def _unit(self, device: str, fail: Callable[[str], ValueError]) -> int:
        spec = self.world.spec
        if device == "furnace":
            return spec.furnace_unit
        if device == "o2":
            if spec.o2_unit is None:
                raise fail("this station has no O2 analyser")
            return spec.o2_unit
        if device == "sample_tc":
            if spec.sample_tc_unit is None:
                raise fail("this station has no sample thermocouple")
            return spec.sample_tc_unit
        gas = device.removeprefix("mfc_")
        for m in spec.mfcs:
            if m.gas == gas:
                return m.unit
        raise fail(f"this station has no MFC for {gas} "
                   f"(has: {', '.join(m.gas for m in spec.mfcs)})")

    # ---- shared state: overlapping faults on one device ----------------------------------

    def _mute(self, unit: int) -> None:
        self._muted[unit] = self._muted.get(unit, 0) + 1
        self.world.set_responding(unit, False)

    def _unmute(self, unit: int) -> None:
        left = self._muted.get(unit, 0) - 1
        if left > 0:
            self._muted[unit] = left
            return
        self._muted.pop(unit, None)
        self.world.set_responding(unit, True)

    def _balance_down(self) -> None:
        balance = self.world.balance
        self._balance_off += 1
        if balance is not None:
            balance.disconnected = True

    def _balance_up(self) -> None:
        balance = self.world.balance
        self._balance_off = max(0, self._balance_off - 1)
        if balance is not None and self._balance_off == 0:
            balance.disconnected = False
