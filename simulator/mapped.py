"""What a simulated instrument needs of its instrument map: a register bank serving it (one
slot per value: a float alias and the register it is a view of share one) and the slot each
role's register lives in.

Not here: what the instrument does (``eurotherm``, ``alicat``, ``o2``, ``sample``).
"""

from __future__ import annotations

from collections.abc import Mapping

from drivers.maps import InstrumentMap, StatusWord
from simulator.bank import RegisterBank

__all__ = ["Published", "bank_for", "publish_readings", "slot_index", "slot_of",
           "status_masks"]

Published = tuple[int, int, int, int | None, int | None, int | None]
"""The slot indexes a temperature controller publishes into: PV, working setpoint, output,
error, status word, inverted status word (None: a register the map does not have)."""


def bank_for(imap: InstrumentMap) -> RegisterBank:
    """A register bank serving ``imap``'s registers, two views of one value in one slot."""
    return RegisterBank(imap.registers,
                        slots={reg.name: imap.slot(reg.name) for reg in imap.registers})


def slot_of(imap: InstrumentMap, register: str | None) -> str | None:
    """The slot (bank name) of the register a role names, or None for an unbound role."""
    return None if register is None else imap.slot(register)


def slot_index(bank: RegisterBank, slot: str | None) -> int | None:
    """The index in ``bank.values`` of ``slot``, or None for an unbound role (an
    instrument that publishes every step resolves its slots once)."""
    return None if slot is None else bank.slot(slot)


def publish_readings(values: list[float], published: Published, pv_c: float,
                     working_c: float, output_pct: float, status: int) -> None:
    """Store a temperature controller's readings in a bank's ``values`` by slot index."""
    pv_i, wsp_i, op_i, err_i, status_i, inverse_i = published
    values[pv_i] = pv_c
    values[wsp_i] = working_c
    values[op_i] = output_pct
    if err_i is not None:
        values[err_i] = pv_c - working_c
    if status_i is not None:
        values[status_i] = float(status)
    if inverse_i is not None:
        values[inverse_i] = float(~status & 0xFFFF)


def status_masks(status: StatusWord | None, *names: str) -> tuple[int, ...]:
    """The int mask of each named status bit; 0 for a bit the map does not have (so that
    ``word |= mask`` is a no-op for it)."""
    bits: Mapping[str, int] = status.bits if status is not None else {}
    return tuple(bits.get(name, 0) for name in names)
