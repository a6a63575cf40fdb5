"""Reading every register of an instrument's map once, for ``furnace probe``: grouped into
block reads, each value decoded, status words named bit by bit, a read error per register.

Not here: printing (the command line) or the connect checks (each driver's ``verify``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Final

from drivers.bus import RegisterBus
from drivers.errors import DeviceError, DeviceRejectedError, DeviceTimeoutError
from drivers.maps import AutoManual, GasTable, InstrumentMap, RateLimit, RemoteSelect, StatusWord
from drivers.registers import Access, DType, Register, RegisterBlock, read_spans

__all__ = ["ProbedRegister", "probe_instrument", "role_names"]

_NOT_ASKED: Final = "not read: the instrument did not answer an earlier read"


@dataclass(frozen=True, slots=True)
class ProbedRegister:
    """One register as read: ``value`` in its unit (None if the read failed: ``error``),
    ``text`` the value as shown, ``roles`` the roles that bind it, ``bits`` the named
    status bits set (a status word)."""

    name: str
    address: int
    unit: str
    roles: tuple[str, ...]
    value: float | None
    text: str
    error: str = ""
    bits: tuple[str, ...] = ()


def role_names(imap: InstrumentMap) -> dict[str, tuple[str, ...]]:
    """Register name -> the roles bound to it (``remote_select``, ``status.inverted``...)."""
    out: dict[str, list[str]] = {}

    def add(name: str | None, role: str) -> None:
        if name is not None:
            out.setdefault(name, []).append(role)

    roles = imap.roles
    for f in fields(roles):
        value = getattr(roles, f.name)
        if f.name == "flow_basis":  # a unit, not a register
            continue
        if isinstance(value, str):
            add(value, f.name)
        elif isinstance(value, RateLimit):
            add(value.register, f.name)
            add(value.units_register, f"{f.name}.units")
        elif isinstance(value, StatusWord):
            add(value.register, f.name)
            add(value.inverted, f"{f.name}.inverted")
        elif isinstance(value, RemoteSelect | AutoManual | GasTable):
            add(value.register, f.name)
    return {name: tuple(names) for name, names in out.items()}


def _statuses(imap: InstrumentMap) -> dict[str, StatusWord]:
    status = getattr(imap.roles, "status", None)
    if not isinstance(status, StatusWord):
        return {}
    found = {status.register: status}
    if status.inverted is not None:  # the inverted copy: its bits are the NOT of the word
        found[status.inverted] = status
    return found


def _text(reg: Register, value: float) -> str:
    if reg.dtype is DType.FLOAT32:
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    if reg.scale == 1.0:
        return f"{round(value)}"
    places = max(0, round(-math.log10(reg.scale))) if reg.scale < 1.0 else 0
    return f"{value:.{places}f}"


async def probe_instrument(bus: RegisterBus, unit: int, imap: InstrumentMap
                           ) -> tuple[ProbedRegister, ...]:
    """Read every readable register of ``imap`` once from ``unit`` on ``bus``, in address
    order: adjacent registers in one block read; a block the instrument refuses is read
    again register by register, so that each refusal is shown where it belongs; after no
    reply at all, the rest is not asked (a wrong unit id costs one timeout). Never raises
    ``DeviceError``: every failure is in its register's ``error``."""
    roles = role_names(imap)
    statuses = _statuses(imap)
    readable = [r for r in imap.registers.registers if r.access is not Access.WO]
    values: dict[str, tuple[float | None, str]] = {}
    silent = ""

    async def read(block: RegisterBlock) -> None:
        nonlocal silent
        if silent:
            for reg in block.registers:
                values[reg.name] = (None, silent)
            return
        try:
            decoded = block.decode(await bus.read_registers(unit, block.address, block.count))
        except DeviceRejectedError as exc:
            if len(block.registers) > 1:
                for reg in block.registers:
                    await read(RegisterBlock([reg]))
                return
            values[block.registers[0].name] = (None, str(exc))
            return
        except DeviceTimeoutError as exc:
            silent = f"{exc}; {_NOT_ASKED}"
            for reg in block.registers:
                values[reg.name] = (None, str(exc))
            return
        except (DeviceError, ValueError) as exc:
            for reg in block.registers:
                values[reg.name] = (None, str(exc))
            return
        for reg, value in zip(block.registers, decoded, strict=True):
            values[reg.name] = (value, "")

    for group in read_spans(imap.registers, readable):
        await read(RegisterBlock(group))
    out: list[ProbedRegister] = []
    for reg in sorted(readable, key=lambda r: r.address):
        value, error = values[reg.name]
        bits: tuple[str, ...] = ()
        text = ""
        if value is not None:
            text = _text(reg, value)
            status = statuses.get(reg.name)
            if status is not None:
                word = round(value)
                if reg.name != status.register:
                    word = ~word & ((1 << (16 * reg.word_count)) - 1)
                bits = status.names(word)
                text = f"0x{round(value):0{4 * reg.word_count}X}"
        out.append(ProbedRegister(reg.name, reg.address, reg.unit, roles.get(reg.name, ()),
                                  value, text, error, bits))
    return tuple(out)

