"""Register primitives: typed register descriptions and pure encode/decode functions.

Not here: any I/O. Maps are data built from these (one ``registers.py`` per device) and
both the drivers and the simulator import them.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from operator import mul
from typing import Final

__all__ = [
    "Access",
    "DType",
    "Register",
    "RegisterBlock",
    "RegisterMap",
    "Table",
    "WordOrder",
    "decode",
    "encode",
    "read_spans",
]


class Table(StrEnum):
    """Modbus data table."""

    HOLDING = "holding"
    INPUT = "input"


class DType(StrEnum):
    """How the register's words hold a number."""

    INT16 = "int16"
    UINT16 = "uint16"
    UINT32 = "uint32"
    FLOAT32 = "float32"


class Access(StrEnum):
    """Who may write the register."""

    RO = "ro"
    RW = "rw"
    WO = "wo"


class WordOrder(StrEnum):
    """Order of the 16-bit words of a 32-bit value on the wire."""

    HIGH_FIRST = "high_first"  # "ABCD": Eurotherm float region, Alicat, Bronkhorst
    LOW_FIRST = "low_first"  # "CDAB": some legacy Alicat firmware


MAX_READ_WORDS: Final = 125  # FC03's limit, Modbus application protocol v1.1b3 §6.3
_WORDS: Final = {DType.INT16: 1, DType.UINT16: 1, DType.UINT32: 2, DType.FLOAT32: 2}


@dataclass(frozen=True, slots=True)
class Register:
    """One register (or a 32-bit pair) as the manual describes it.

    ``address`` is the 0-based PDU address as sent on the wire. Engineering value =
    raw integer * ``scale`` for integer types; floats are already engineering values.
    ``minimum``/``maximum`` bound what may be written (engineering units).
    """

    name: str
    address: int
    dtype: DType
    scale: float = 1.0
    unit: str = ""
    access: Access = Access.RO
    minimum: float | None = None
    maximum: float | None = None
    word_order: WordOrder = WordOrder.HIGH_FIRST
    table: Table = Table.HOLDING
    doc: str = ""

    @property
    def word_count(self) -> int:
        """Number of 16-bit words the value occupies."""
        return _WORDS[self.dtype]

    @property
    def is_writable(self) -> bool:
        """True if the instrument accepts writes to this register."""
        return self.access is not Access.RO

    def in_range(self, value: float) -> bool:
        """True if ``value`` (engineering units) lies within the writable limits."""
        if math.isnan(value):
            return False
        if self.minimum is not None and value < self.minimum:
            return False
        return self.maximum is None or value <= self.maximum


def encode(reg: Register, value: float) -> list[int]:
    """Engineering value -> register words. Raises ``ValueError`` if it does not fit."""
    if reg.dtype is DType.FLOAT32:
        hi, lo = struct.unpack(">HH", struct.pack(">f", value))
        return [hi, lo] if reg.word_order is WordOrder.HIGH_FIRST else [lo, hi]
    raw = round(value / reg.scale)
    if reg.dtype is DType.INT16:
        if not -0x8000 <= raw <= 0x7FFF:
            raise ValueError(f"{reg.name}: {value} does not fit int16 at scale {reg.scale}")
        return [raw & 0xFFFF]
    if reg.dtype is DType.UINT16:
        if not 0 <= raw <= 0xFFFF:
            raise ValueError(f"{reg.name}: {value} does not fit uint16 at scale {reg.scale}")
        return [raw]
    if not 0 <= raw <= 0xFFFFFFFF:
        raise ValueError(f"{reg.name}: {value} does not fit uint32 at scale {reg.scale}")
    hi, lo = raw >> 16, raw & 0xFFFF
    return [hi, lo] if reg.word_order is WordOrder.HIGH_FIRST else [lo, hi]


def decode(reg: Register, words: Sequence[int]) -> float:
    """Register words -> engineering value. Raises ``ValueError`` on a wrong word count."""
    if len(words) != reg.word_count:
        raise ValueError(f"{reg.name}: expected {reg.word_count} words, got {len(words)}")
    if reg.word_count == 2:
        hi, lo = (words[0], words[1]) if reg.word_order is WordOrder.HIGH_FIRST else (
            words[1], words[0])
        if reg.dtype is DType.FLOAT32:
            return float(struct.unpack(">f", struct.pack(">HH", hi, lo))[0])
        return ((hi << 16) | lo) * reg.scale
    raw = words[0]
    if reg.dtype is DType.INT16 and raw & 0x8000:
        raw -= 0x10000
    return raw * reg.scale


_STRUCT_CODES: Final = {DType.INT16: "h", DType.UINT16: "H", DType.UINT32: "I",
                        DType.FLOAT32: "f"}


class RegisterBlock:
    """Registers read in one transaction, decoded by one precompiled ``struct``.

    ``decode(words)`` gives the same numbers as ``decode(reg, ...)`` register by register
    (the same bits through the same arithmetic: raw * scale for integers), in a fraction of
    the time: the scan cycle decodes a block of every instrument every cycle. Words between
    the registers (a gap in the map) are read and ignored.
    """

    __slots__ = ("address", "count", "registers", "_order", "_scales", "_values", "_words")

    def __init__(self, registers: Sequence[Register]) -> None:
        if not registers:
            raise ValueError("a register block needs at least one register")
        regs = tuple(sorted(registers, key=lambda r: r.address))
        self.registers = regs
        self.address = regs[0].address
        last = regs[-1]
        self.count = last.address + last.word_count - self.address
        codes: list[str] = []
        order: list[int] = []  # where each packed word comes from in the words read
        position = self.address
        for reg in regs:
            if reg.address < position:
                raise ValueError(f"{reg.name} overlaps the register before it")
            gap = reg.address - position
            codes.append(f"{2 * gap}x" if gap else "")
            order += range(position - self.address, reg.address - self.address)
            at = reg.address - self.address
            swapped = reg.word_count == 2 and reg.word_order is WordOrder.LOW_FIRST
            order += [at + 1, at] if swapped else range(at, at + reg.word_count)
            codes.append(_STRUCT_CODES[reg.dtype])
            position = reg.address + reg.word_count
        self._words = struct.Struct(f">{self.count}H")
        self._values = struct.Struct(">" + "".join(codes))
        self._order = None if order == list(range(self.count)) else tuple(order)
        # Integers are raw * scale; a float32 times 1.0 is itself. None: floats alone.
        self._scales = (None if all(r.dtype is DType.FLOAT32 for r in regs) else
                        tuple(1.0 if r.dtype is DType.FLOAT32 else r.scale for r in regs))

    def decode(self, words: Sequence[int]) -> tuple[float, ...]:
        """Words read from ``address`` -> one engineering value per register, in address
        order. Raises ``ValueError`` on a wrong word count or a word outside 0..65535."""
        if len(words) != self.count:
            raise ValueError(f"{self.registers[0].name}..{self.registers[-1].name}: expected "
                             f"{self.count} words, got {len(words)}")
        order = self._order
        try:
            packed = self._words.pack(*(words if order is None else
                                        [words[i] for i in order]))
        except struct.error as exc:
            raise ValueError(f"register word out of range: {exc}") from None
        values: tuple[float, ...] = self._values.unpack(packed)
        scales = self._scales
        return values if scales is None else tuple(map(mul, values, scales))


@dataclass(frozen=True, slots=True)
class RegisterMap:
    """All the registers of one device model, looked up by name or by address."""

    model: str
    registers: tuple[Register, ...]
    by_address: dict[int, Register] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[int, Register] = {}
        for reg in self.registers:
            for offset in range(reg.word_count):
                if reg.address + offset in index:
                    other = index[reg.address + offset]
                    raise ValueError(f"{self.model}: {reg.name} overlaps {other.name}")
                index[reg.address + offset] = reg
        object.__setattr__(self, "by_address", index)

    def __iter__(self) -> Iterator[Register]:
        return iter(self.registers)

    def span(self, first: Register, last: Register) -> tuple[int, int]:
        """(start address, word count) of a block read from ``first`` through ``last``."""
        return first.address, last.address + last.word_count - first.address


def _covered(register_map: RegisterMap, start: int, stop: int) -> bool:
    """True if the words ``start``..``stop - 1`` are whole readable registers of the map
    (an instrument answers a read only over registers it has)."""
    address = start
    while address < stop:
        reg = register_map.by_address.get(address)
        if (reg is None or reg.address != address or reg.access is Access.WO
                or reg.address + reg.word_count > stop):
            return False
        address += reg.word_count
    return True


def read_spans(register_map: RegisterMap, wanted: Sequence[Register], *,
               max_words: int = MAX_READ_WORDS) -> tuple[tuple[Register, ...], ...]:
    """``wanted`` grouped into block reads, in address order (each group one
    ``RegisterBlock``): registers share a read when every word between them is a whole
    readable register of ``register_map`` (read and skipped), they are in one table and the
    span stays within ``max_words``; else a new read starts. A register wanted twice is
    read once.
    """
    regs = sorted({reg.name: reg for reg in wanted}.values(), key=lambda r: r.address)
    groups: list[tuple[Register, ...]] = []
    current: list[Register] = []
    end = 0
    for reg in regs:
        if current and (reg.table is current[0].table
                        and reg.address >= end
                        and reg.address + reg.word_count - current[0].address <= max_words
                        and _covered(register_map, end, reg.address)):
            current.append(reg)
        else:
            if current:
                groups.append(tuple(current))
            current = [reg]
        end = reg.address + reg.word_count
    if current:
        groups.append(tuple(current))
    return tuple(groups)
