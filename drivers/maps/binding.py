"""Role bindings: each role of a map file bound to a register that exists and may be used as
the role needs (read, written, written and read back), in the role's unit, never an
EEPROM-backed register for a role written every scan; status masks one bit each.

Not here: the file format (``schema``), the register layout checks (``loader``), what the
safety design needs (``safety``).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final, Literal

from drivers.maps.instrument import (
    AutoManual,
    GasTable,
    MapFileError,
    MassFlowControllerRoles,
    OxygenAnalyserRoles,
    RateLimit,
    RemoteSelect,
    StatusWord,
    TemperatureControllerRoles,
)
from drivers.maps.schema import MfcMapFile, O2MapFile, RegisterSpec, StatusSpec, TcMapFile
from drivers.registers import Access, DType, Register

__all__ = ["RoleChecker", "mfc_roles", "o2_roles", "tc_roles"]

_TEMPERATURE: Final = ("degC",)
_RATE_UNIT: Final = {"second": "degC/s", "minute": "degC/min", "hour": "degC/h"}
_FLOW_UNIT: Final = {"sccm": "sccm", "percent_of_full_scale": "%"}
_INTEGER_TYPES: Final = (DType.INT16, DType.UINT16, DType.UINT32)
_RAW_MAX: Final = {DType.INT16: 0x7FFF, DType.UINT16: 0xFFFF, DType.UINT32: 0xFFFFFFFF}

Need = Literal["read", "write", "readwrite", "any"]


class RoleChecker:
    """Checks role bindings against the registers, one rule at a time."""

    def __init__(self, regs: Mapping[str, Register], specs: Mapping[str, RegisterSpec],
                 eeprom: frozenset[str], source: str) -> None:
        self.regs = regs
        self.specs = specs  # file entries by name (aliases are not there)
        self.eeprom = eeprom
        self.source = source

    def fail(self, field: str, rule: str) -> MapFileError:
        return MapFileError(rule, source=self.source, field=field)

    def bind(self, field: str, name: str | None, need: Need, units: Sequence[str] = (),
             *, integer: bool = False, streamed: bool = False) -> Register | None:
        """Check the register bound at ``field`` exists, may be used as ``need`` says, has
        one of ``units`` (if given), is an integer type (``integer``) and, if ``streamed``
        (written every scan), is not EEPROM-backed."""
        if name is None:
            return None
        reg = self.regs.get(name)
        if reg is None:
            close = difflib.get_close_matches(name, list(self.regs), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.fail(field, f"no register named {name!r}{hint}")
        if need in ("write", "readwrite") and reg.access is Access.RO:
            raise self.fail(field, f'{name} is read-only (access = "ro"), but the driver '
                            + ('writes this role: it needs access = "wo" or "rw"'
                               if need == "write" else 'writes this role and reads it back: '
                               'it needs access = "rw"'))
        if need in ("read", "readwrite") and reg.access is Access.WO:
            raise self.fail(field, f'{name} is write-only (access = "wo"), but the driver '
                            + ('reads this role: it needs access = "ro" or "rw"'
                               if need == "read" else 'reads this role back after writing '
                               'it: it needs access = "rw"'))
        if units and reg.unit not in units:
            want = " or ".join(repr(u) for u in units)
            raise self.fail(field, f"{name} is in {reg.unit or 'no unit'!r}, but this role "
                            f"is in {want}: set the instrument and the register's unit to it")
        if integer and reg.dtype not in _INTEGER_TYPES:
            raise self.fail(field, f"{name} is a {reg.dtype}: this role needs an integer "
                            "register (int16, uint16 or uint32)")
        if streamed and name in self.eeprom:
            raise self.fail(field, f"{name} is EEPROM-backed (eeprom = true): the driver "
                            "writes this role every scan and would wear it out; bind a "
                            "volatile register")
        return reg

    def value(self, field: str, reg: Register, value: int) -> None:
        """A value the driver writes to ``reg`` must fit its type and limits."""
        if value > _RAW_MAX.get(reg.dtype, 0xFFFF):
            raise self.fail(field, f"{value} does not fit {reg.name} ({reg.dtype})")
        if not reg.in_range(value):
            lo = "" if reg.minimum is None else f"{reg.minimum:g}"
            hi = "" if reg.maximum is None else f"{reg.maximum:g}"
            raise self.fail(field, f"{value} is outside the limits of {reg.name} ({lo}..{hi})")

    def selector(self, field: str, register_name: str, values: Mapping[str, int]) -> None:
        """A read-write integer register the driver writes one of ``values`` to (a
        setpoint source or auto/manual select): each must fit it."""
        reg = self.bind(f"{field}.register", register_name, "readwrite", integer=True)
        if reg is not None:
            for name, value in values.items():
                self.value(f"{field}.{name}", reg, value)

    def status(self, field: str, spec: StatusSpec | None) -> StatusWord | None:
        if spec is None:
            return None
        self.bind(f"{field}.register", spec.register_name, "read", integer=True)
        reg = self.regs[spec.register_name]
        width = 16 * reg.word_count
        if spec.inverted is not None:
            inv = self.bind(f"{field}.inverted", spec.inverted, "read", integer=True)
            if inv is not None and inv.word_count != reg.word_count:
                raise self.fail(f"{field}.inverted", f"{inv.name} is {16 * inv.word_count} "
                                f"bits, the status word {width}")
        for name, mask in spec.bits.items():
            where = f"{field}.bits.{name}"
            if mask <= 0 or mask & (mask - 1):
                raise self.fail(where, f"{mask:#x} is not a single bit: give one mask per "
                                "bit (0x0020 for bit 5)")
            if mask >= 1 << width:
                raise self.fail(where, f"{mask:#x} is outside the {width} bits of "
                                f"{reg.name}")
        return StatusWord(spec.register_name, MappingProxyType(dict(spec.bits)),
                          frozenset(spec.fault), spec.inverted)


def tc_roles(doc: TcMapFile, check: RoleChecker) -> TemperatureControllerRoles:
    """Check and convert a temperature controller's ``[roles]``. Raises ``MapFileError``."""
    r = doc.roles
    b = check.bind
    b("roles.process_value", r.process_value, "read", _TEMPERATURE)
    b("roles.working_setpoint", r.working_setpoint, "read", _TEMPERATURE)
    b("roles.output", r.output, "read", ("%",))
    scaled = b("roles.process_value_scaled", r.process_value_scaled, "read", _TEMPERATURE,
               integer=True)
    if scaled is not None and doc.instrument.decimal_places is not None:
        spec = check.specs.get(scaled.name)
        if spec is None or spec.decimals != "configured":
            raise check.fail("roles.process_value_scaled", f"{scaled.name} is not scaled by "
                             'the configured decimal places (decimals = "configured"): it '
                             "cannot tell the station's decimals apart")
    b("roles.remote_setpoint", r.remote_setpoint, "readwrite", _TEMPERATURE, streamed=True)
    remote_select = None
    if r.remote_select is not None:
        sel = r.remote_select
        check.selector("roles.remote_select", sel.register_name,
                       {"remote": sel.remote, "local": sel.local})
        if r.remote_setpoint is None:
            raise check.fail("roles.remote_select", "selecting a remote setpoint needs "
                             "roles.remote_setpoint (the register it selects)")
        if r.local_setpoint is None:
            raise check.fail("roles.remote_select", "selecting a remote setpoint needs "
                             "roles.local_setpoint: preflight sets what the instrument falls "
                             "back to when the remote setpoint stops")
        remote_select = RemoteSelect(sel.register_name, sel.remote, sel.local)
    b("roles.local_setpoint", r.local_setpoint, "readwrite", _TEMPERATURE)
    rate_limit = None
    if r.rate_limit is not None:
        rl = r.rate_limit
        b("roles.rate_limit.register", rl.register_name, "readwrite", (_RATE_UNIT[rl.per],))
        units = b("roles.rate_limit.units_register", rl.units_register, "read", integer=True)
        if units is not None and rl.units_value is not None:
            check.value("roles.rate_limit.units_value", units, rl.units_value)
        rate_limit = RateLimit(rl.register_name, rl.per, rl.units_register, rl.units_value)
    b("roles.manual_output", r.manual_output, "readwrite", ("%",))
    auto_manual = None
    if r.auto_manual is not None:
        am = r.auto_manual
        check.selector("roles.auto_manual", am.register_name,
                       {"auto": am.auto, "manual": am.manual})
        auto_manual = AutoManual(am.register_name, am.auto, am.manual)
    b("roles.alarm_high", r.alarm_high, "readwrite", _TEMPERATURE)
    b("roles.acknowledge_alarms", r.acknowledge_alarms, "write", integer=True)
    b("roles.range_low", r.range_low, "read", _TEMPERATURE)
    b("roles.range_high", r.range_high, "read", _TEMPERATURE)
    b("roles.display_decimals", r.display_decimals, "read", integer=True)
    for name in ("proportional_band", "integral_time", "derivative_time", "output_high",
                 "output_low", "error"):
        b(f"roles.{name}", getattr(r, name), "any")
    status = check.status("roles.status", r.status)
    return TemperatureControllerRoles(
        process_value=r.process_value, working_setpoint=r.working_setpoint, output=r.output,
        process_value_scaled=r.process_value_scaled, remote_setpoint=r.remote_setpoint,
        remote_select=remote_select, local_setpoint=r.local_setpoint, rate_limit=rate_limit,
        manual_output=r.manual_output, auto_manual=auto_manual, alarm_high=r.alarm_high,
        acknowledge_alarms=r.acknowledge_alarms, range_low=r.range_low,
        range_high=r.range_high, display_decimals=r.display_decimals,
        proportional_band=r.proportional_band, integral_time=r.integral_time,
        derivative_time=r.derivative_time, output_high=r.output_high,
        output_low=r.output_low, error=r.error, status=status)


def mfc_roles(doc: MfcMapFile, check: RoleChecker) -> MassFlowControllerRoles:
    """Check and convert a mass-flow controller's ``[roles]``. Raises ``MapFileError``."""
    r = doc.roles
    unit = (_FLOW_UNIT[r.flow_basis],)
    check.bind("roles.setpoint", r.setpoint, "readwrite", unit, streamed=True)
    check.bind("roles.flow", r.flow, "read", unit)
    check.bind("roles.setpoint_readback", r.setpoint_readback, "read", unit)
    check.bind("roles.full_scale", r.full_scale, "read", ("sccm",))
    gas = None
    if r.gas is not None:
        check.bind("roles.gas.register", r.gas.register_name, "read", integer=True)
        gas = GasTable(r.gas.register_name, MappingProxyType(dict(r.gas.numbers)))
    return MassFlowControllerRoles(
        setpoint=r.setpoint, flow=r.flow, flow_basis=r.flow_basis,
        setpoint_readback=r.setpoint_readback, full_scale=r.full_scale, gas=gas,
        status=check.status("roles.status", r.status))


def o2_roles(doc: O2MapFile, check: RoleChecker) -> OxygenAnalyserRoles:
    """Check and convert an oxygen analyser's ``[roles]``. Raises ``MapFileError``."""
    check.bind("roles.o2", doc.roles.o2, "read", ("ppm",))
    return OxygenAnalyserRoles(doc.roles.o2, check.status("roles.status", doc.roles.status))
