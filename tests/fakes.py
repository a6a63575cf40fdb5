"""Test doubles with behaviour (STYLE.md C5: ``Fake*``): an in-memory register bus.

Not here: physics (that is the simulator) or ``unittest.mock`` objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from drivers.errors import DeviceRejectedError, DeviceTimeoutError


@dataclass
class FakeRegisterBus:
    """A dict of registers per unit plus a call log.

    Program it to fail: ``fail_on_call[n] = exc`` raises ``exc`` on the n-th call (0-based),
    ``rejected[(unit, address)] = code`` answers a Modbus exception for that address;
    ``mirrors[(unit, address)] = other`` copies a write at ``address`` to ``other`` too (an
    instrument's read-back register).
    Reading an address never written answers exception 02, as an instrument would.
    """

    registers: dict[int, dict[int, int]] = field(default_factory=dict)
    calls: list[tuple[str, int, int, tuple[int, ...]]] = field(default_factory=list)
    fail_on_call: dict[int, Exception] = field(default_factory=dict)
    rejected: dict[tuple[int, int], int] = field(default_factory=dict)
    mirrors: dict[tuple[int, int], int] = field(default_factory=dict)
    closed: bool = False

    def preset(self, unit: int, address: int, words: Sequence[int]) -> None:
        """Put ``words`` at ``address`` without logging a call."""
        bank = self.registers.setdefault(unit, {})
        for i, w in enumerate(words):
            bank[address + i] = w

    def _check(self, unit: int, address: int, count: int) -> None:
        n = len(self.calls) - 1
        if n in self.fail_on_call:
            raise self.fail_on_call.pop(n)
        if unit not in self.registers:
            raise DeviceTimeoutError("no reply", device=f"unit {unit}")
        for a in range(address, address + count):
            if (unit, a) in self.rejected:
                raise DeviceRejectedError("rejected", exception_code=self.rejected[(unit, a)])

    async def read_registers(self, unit: int, address: int, count: int) -> list[int]:
        self.calls.append(("read", unit, address, (count,)))
        self._check(unit, address, count)
        bank = self.registers[unit]
        missing = [a for a in range(address, address + count) if a not in bank]
        if missing:
            raise DeviceRejectedError("illegal data address", exception_code=2)
        return [bank[a] for a in range(address, address + count)]

    async def write_registers(self, unit: int, address: int, words: Sequence[int], *,
                              idempotent: bool = True) -> None:
        self.calls.append(("write", unit, address, tuple(words)))
        self._check(unit, address, len(words))
        self.preset(unit, address, words)
        if (unit, address) in self.mirrors:
            self.preset(unit, self.mirrors[(unit, address)], words)

    async def close(self) -> None:
        self.closed = True

    def writes(self) -> list[tuple[int, int, tuple[int, ...]]]:
        """Every write as (unit, address, words), in order."""
        return [(u, a, w) for kind, u, a, w in self.calls if kind == "write"]
