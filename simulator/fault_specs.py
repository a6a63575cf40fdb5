"""The fault vocabulary of the simulator: the ``--fault KIND[:TARGET]@TIME[+DURATION]``
specs (DESIGN §3), their parser and the events they produce. The table of kinds and what
each does to the world follows; ``simulator.faults`` applies them.

Kinds and what they do (constants below; ``+DURATION`` ends a fault early, without it a
fault lasts to the end of the run; ``power_cycle``'s duration is its off time, 5 s):

===================  ===========================  =========================================
kind                 target                       effect on the world
===================  ===========================  =========================================
sensor_break         furnace (default), sample_tc open thermocouple: StAt SENSOR_BREAK +
                                                  PV_OVER_RANGE, PV upscale, furnace output
                                                  forced to 0 % (the safe output)
pv_frozen            -                            furnace PV stops updating (register and the
                                                  instrument's own PID: a dead ADC)
tc_drift             -                            furnace PV reads low by 2 K/min, up to
                                                  50 K (the PID sees it: the furnace runs hot)
pv_spike             -                            +200 K in the furnace PV register for one
                                                  read, about every 2 min (seeded Poisson)
heater_open          -                            no heating power whatever the output
heater_stuck         -                            full heating power whatever the output
power_cycle          -                            furnace silent and unpowered for 5 s, then
                                                  back reset (``SimEurotherm3216.power_on``)
front_panel          manual | local_sp[=C]        A-M to manual at the present output; or
                                                  TG.SP := C (default ambient) and L-R 0. At
                                                  the end: back to auto; or TG.SP restored and
                                                  L-R 1
comms_loss           DEVICE (default furnace)     the unit gives no reply at all
slow_replies         DEVICE (default furnace)     requests are served, replies come after any
                                                  client timeout (``WireFault.SLOW``)
exception_replies    DEVICE (default furnace)     exception 04 to every request, nothing done
garbled_replies      DEVICE (default furnace)     requests are served, replies corrupted
mfc_no_flow          GAS (required)               empty bottle: flow decays to 0, SP kept
mfc_stuck            GAS (required)               flow frozen at its present value
air_leak             -                            5 sccm of room air into the tube
balance_disconnected -                            the balance answers nothing
exotherm_runaway     -                            oxidation heat x20 (at most +5 W): the sample
                                                  runs tens of K above the furnace in air
===================  ===========================  =========================================

DEVICE names are those of ``controller.station_factory.unit_names``: ``furnace``,
``mfc_<gas>`` (``mfc_Ar``; the bare gas ``Ar`` is accepted too), ``o2``, ``sample_tc`` and
``balance`` (``comms_loss`` only). GAS is an Alicat gas name as the station spells it
(``Ar``, ``air``, ``N2``; ``mfc_Ar`` is accepted too).

Not here: changing the world (``simulator.faults``) or recording it (``simulator.journal``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, NamedTuple

from drivers.alicat.registers import GAS_INDEX
from simulator.world import WireFault

__all__ = [
    "DEVICE_KINDS",
    "MFC_KINDS",
    "POWER_CYCLE_OFF_S",
    "WIRE_KINDS",
    "FaultEvent",
    "FaultKind",
    "FaultSpec",
    "format_duration",
    "parse_duration",
    "parse_fault",
]


POWER_CYCLE_OFF_S: Final = 5.0


class FaultKind(StrEnum):
    """The fault kinds ``parse_fault`` knows (see the module table for their effects)."""

    SENSOR_BREAK = "sensor_break"
    PV_FROZEN = "pv_frozen"
    TC_DRIFT = "tc_drift"
    PV_SPIKE = "pv_spike"
    HEATER_OPEN = "heater_open"
    HEATER_STUCK = "heater_stuck"
    POWER_CYCLE = "power_cycle"
    FRONT_PANEL = "front_panel"
    COMMS_LOSS = "comms_loss"
    SLOW_REPLIES = "slow_replies"
    EXCEPTION_REPLIES = "exception_replies"
    GARBLED_REPLIES = "garbled_replies"
    MFC_NO_FLOW = "mfc_no_flow"
    MFC_STUCK = "mfc_stuck"
    AIR_LEAK = "air_leak"
    BALANCE_DISCONNECTED = "balance_disconnected"
    EXOTHERM_RUNAWAY = "exotherm_runaway"


_NO_TARGET: Final = frozenset({
    FaultKind.PV_FROZEN, FaultKind.TC_DRIFT, FaultKind.PV_SPIKE, FaultKind.HEATER_OPEN,
    FaultKind.HEATER_STUCK, FaultKind.POWER_CYCLE, FaultKind.AIR_LEAK,
    FaultKind.BALANCE_DISCONNECTED, FaultKind.EXOTHERM_RUNAWAY})
WIRE_KINDS: Final = {FaultKind.SLOW_REPLIES: WireFault.SLOW,
                FaultKind.EXCEPTION_REPLIES: WireFault.EXCEPTION,
                FaultKind.GARBLED_REPLIES: WireFault.GARBLED}
DEVICE_KINDS: Final = frozenset({FaultKind.COMMS_LOSS, *WIRE_KINDS})
MFC_KINDS: Final = frozenset({FaultKind.MFC_NO_FLOW, FaultKind.MFC_STUCK})
_PANEL_TARGETS: Final = ("manual", "local_sp")
_FIXED_DEVICES: Final = ("furnace", "o2", "sample_tc", "balance")
_TIME_RE: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([smh]?)")
_UNIT_S: Final = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
_FORM: Final = "KIND[:TARGET]@TIME[+DURATION]"


class FaultEvent(NamedTuple):
    """A fault starting or ending: ``(kind, target, t_s, phase)``, phase "start" or "end";
    ``t_s`` is the world time of the substep it took effect at."""

    kind: str
    target: str | None
    t_s: float
    phase: str


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One scheduled fault: ``kind`` (a ``FaultKind`` value), ``target`` (canonical: a device
    name, a gas, ``manual``/``local_sp``, or None), ``at_s`` (process time, s) and
    ``duration_s`` (None: to the end of the run). ``value`` is the setpoint of
    ``front_panel:local_sp=C`` (°C), else None. ``str()`` gives the spec back as text."""

    kind: str
    target: str | None
    at_s: float
    duration_s: float | None = None
    value: float | None = None

    @property
    def end_s(self) -> float:
        """When the fault ends, s (inf: never; ``power_cycle`` defaults to its off time)."""
        if self.duration_s is not None:
            return self.at_s + self.duration_s
        if self.kind == FaultKind.POWER_CYCLE:
            return self.at_s + POWER_CYCLE_OFF_S
        return math.inf

    def __str__(self) -> str:
        target = self.target or ""
        if self.value is not None:
            target += f"={self.value:g}"
        text = self.kind + (f":{target}" if target else "") + "@" + format_duration(self.at_s)
        if self.duration_s is not None:
            text += "+" + format_duration(self.duration_s)
        return text


def parse_duration(text: str) -> float:
    """Seconds from ``90s``, ``45m``, ``26h``, ``1.5h`` or a bare number of seconds.

    Raises ``ValueError`` for anything else (signs, exponents, other units, inf, nan)."""
    m = _TIME_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"bad time {text!r}: write a number of seconds or N s/m/h "
                         "(90s, 45m, 26h, 1.5h)")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def format_duration(seconds: float) -> str:
    """The shortest of ``26h``, ``45m``, ``90s`` (``1.5s``) that ``parse_duration`` reads back."""
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _gas(text: str) -> str | None:
    """The Alicat gas name ``text`` means (exact, else case-insensitive), or None."""
    if text in GAS_INDEX:
        return text
    hits = [g for g in GAS_INDEX if g.lower() == text.lower()]
    return hits[0] if hits else None


def _device(text: str) -> str | None:
    """Canonical device name for ``text`` (``Ar`` -> ``mfc_Ar``), or None if unknown."""
    if text in _FIXED_DEVICES:
        return text
    gas = _gas(text.removeprefix("mfc_"))
    return f"mfc_{gas}" if gas is not None else None


def parse_fault(text: str) -> FaultSpec:
    """Parse ``KIND[:TARGET]@TIME[+DURATION]`` (DESIGN §3), e.g. ``sensor_break@26h``,
    ``comms_loss:furnace@2h``, ``mfc_no_flow:Ar@27h+10m``.

    TIME is the elapsed process time and DURATION how long the fault lasts (both ``90s``,
    ``45m``, ``26h``, ``1.5h`` or bare seconds); without ``+DURATION`` a fault lasts to the
    end of the run (``power_cycle``: its 5 s off time). Device kinds without a target get
    ``furnace``; ``sensor_break`` too. Raises ``ValueError`` with a one-line message naming
    ``text`` and the rule it breaks: unknown kind, missing ``@``, bad time or duration, a
    target where none applies or a missing one where required, an unknown target. Whether
    the station has that device is checked by ``FaultInjector``.
    """
    def fail(rule: str) -> ValueError:
        return ValueError(f"fault {text!r}: {rule}")

    head, at, when = text.strip().partition("@")
    if not at:
        raise fail(f"missing '@TIME' (write {_FORM}, e.g. sensor_break@26h)")
    name, colon, target_text = head.partition(":")
    try:
        kind = FaultKind(name)
    except ValueError:
        raise fail(f"unknown kind {name!r} (known: {', '.join(FaultKind)})") from None
    if colon and not target_text:
        raise fail("empty target after ':'")
    time_text, plus, duration_text = when.partition("+")
    try:
        at_s = parse_duration(time_text)
        duration_s = parse_duration(duration_text) if plus else None
    except ValueError as exc:
        raise fail(str(exc)) from None
    if duration_s is not None and not duration_s > 0.0:
        raise fail("the duration after '+' must be more than 0 s")
    target: str | None = target_text or None
    value: float | None = None
    if kind in _NO_TARGET:
        if target is not None:
            raise fail(f"{kind} takes no target (write {kind}@TIME)")
    elif kind is FaultKind.SENSOR_BREAK:
        target = target or "furnace"
        if target not in ("furnace", "sample_tc"):
            raise fail(f"unknown target {target!r} for {kind} (furnace or sample_tc)")
    elif kind is FaultKind.FRONT_PANEL:
        if target is None:
            raise fail(f"{kind} needs a target: manual or local_sp[=C]")
        target, eq, value_text = target.partition("=")
        if target not in _PANEL_TARGETS or (eq and target != "local_sp"):
            raise fail(f"unknown target {target_text!r} for {kind} (manual or local_sp[=C])")
        if eq:
            try:
                value = float(value_text)
            except ValueError:
                raise fail(f"bad setpoint {value_text!r} in local_sp=C (°C)") from None
            if not math.isfinite(value):
                raise fail(f"bad setpoint {value_text!r} in local_sp=C (°C)")
    elif kind in MFC_KINDS:
        if target is None:
            raise fail(f"{kind} needs a gas as target (e.g. {kind}:Ar@TIME)")
        gas = _gas(target.removeprefix("mfc_"))
        if gas is None:
            raise fail(f"unknown gas {target!r} (Alicat gases: {', '.join(GAS_INDEX)})")
        target = gas
    else:  # a device kind
        device = _device(target or "furnace")
        if device is None:
            raise fail(f"unknown device {target!r} (furnace, mfc_<gas>, o2, sample_tc, "
                       "balance)")
        if device == "balance" and kind is not FaultKind.COMMS_LOSS:
            raise fail(f"{kind} does not apply to the balance (only comms_loss does)")
        target = device
    return FaultSpec(kind.value, target, at_s, duration_s, value)


# ---- effects -----------------------------------------------------------------------------
