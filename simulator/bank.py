"""In-memory register bank: serves a driver's ``RegisterMap`` from engineering-unit slots.

Responsible for addressing, word encoding, access and range checks, and Modbus exception
codes. Not responsible for what the values mean: instrument classes own that logic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from struct import Struct
from typing import Final

from drivers.registers import Access, DType, Register, RegisterMap, WordOrder

__all__ = [
    "ILLEGAL_DATA_ADDRESS",
    "ILLEGAL_DATA_VALUE",
    "MAX_READ_COUNT",
    "MAX_WRITE_COUNT",
    "ModbusExceptionReply",
    "RegisterBank",
    "WriteHook",
]

ILLEGAL_DATA_ADDRESS: Final = 2
ILLEGAL_DATA_VALUE: Final = 3
MAX_READ_COUNT: Final = 125  # FC03 limit, Modbus application protocol v1.1b3 §6.3
MAX_WRITE_COUNT: Final = 123  # FC16 limit, §6.12

_FLOAT: Final = Struct(">f")
_WORDS: Final = Struct(">HH")
_KIND_INT16: Final = 0
_KIND_UINT16: Final = 1
_KIND_UINT32: Final = 2
_KIND_FLOAT32: Final = 3
_KINDS: Final = {DType.INT16: _KIND_INT16, DType.UINT16: _KIND_UINT16,
                 DType.UINT32: _KIND_UINT32, DType.FLOAT32: _KIND_FLOAT32}
_RAW_LIMITS: Final = {_KIND_INT16: (-0x8000, 0x7FFF), _KIND_UINT16: (0, 0xFFFF),
                      _KIND_UINT32: (0, 0xFFFFFFFF)}
# Big-endian struct codes: with high-word-first 32-bit values, ">" bytes are Modbus words.
_STRUCT_CODES: Final = {_KIND_INT16: "h", _KIND_UINT16: "H", _KIND_UINT32: "I",
                        _KIND_FLOAT32: "f"}

_OPEN: Final = (float("-inf"), float("inf"))

WriteHook = Callable[[str, float], None]
"""Called as ``hook(slot_name, value)`` after a bus write was accepted and applied."""

_View = tuple[int, int, int, float, bool, Register]
"""(slot index, word count, kind, scale, high_first, register) of one register."""
_Encoder = Callable[[list[float]], list[int]]
"""Slot values -> the words of one block read."""


class ModbusExceptionReply(Exception):  # noqa: N818 - a protocol reply, not our error
    """The instrument answers with a Modbus exception response.

    ``code`` is the Modbus exception code: 2 illegal data address, 3 illegal data value.
    Buses translate it into ``drivers.errors.DeviceRejectedError``.
    """

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        super().__init__(f"exception {code:02d}" + (f": {detail}" if detail else ""))


def _default_slot(reg: Register) -> str:
    # The Eurotherm float region is a second view of the scaled register (§1.4).
    return reg.name[:-2] if reg.name.endswith(".F") else reg.name


class RegisterBank:
    """Registers of one instrument, stored per slot in engineering units.

    Two registers that map to one slot are two views of one value: the Eurotherm scaled
    register ``X`` and its float alias ``X.F`` both read and write slot ``X``. ``slots``
    maps register names to slot names and overrides the default (strip a ``.F`` suffix).

    Scaled integer views quantise on read exactly as ``drivers.registers.encode`` does and
    saturate at the integer limits instead of raising (a 2-dp instrument cannot show
    1500 °C in int16). Write-only registers read back their stored value. Reads and writes
    are synchronous and never block.
    """

    __slots__ = ("_hooks", "_limits", "_map", "_reads", "_slot_index", "_slot_of", "_values",
                 "_views", "write_counts")

    def __init__(self, register_map: RegisterMap,
                 slots: Mapping[str, str] | None = None) -> None:
        self._map = register_map
        overrides = dict(slots or {})
        self._slot_of: dict[str, str] = {}
        self._slot_index: dict[str, int] = {}
        # start address -> (slot index, word count, kind, scale, high_first, register)
        self._views: dict[int, _View] = {}
        for reg in register_map.registers:
            slot = overrides.get(reg.name, _default_slot(reg))
            self._slot_of[reg.name] = slot
            self._slot_of[slot] = slot
            index = self._slot_index.setdefault(slot, len(self._slot_index))
            self._views[reg.address] = (index, reg.word_count, _KINDS[reg.dtype], reg.scale,
                                        reg.word_order is WordOrder.HIGH_FIRST, reg)
        self._values: list[float] = [0.0] * len(self._slot_index)
        self._limits: dict[int, tuple[float, float]] = {}
        self._hooks: list[WriteHook] = []
        # (address, count) -> the compiled encoder of that block read (see ``read``)
        self._reads: dict[tuple[int, int], _Encoder] = {}
        self.write_counts: dict[str, int] = dict.fromkeys(self._slot_index, 0)
        """Accepted bus writes per slot name (an EEPROM wear counter, among others)."""

    @property
    def register_map(self) -> RegisterMap:
        """The map this bank serves."""
        return self._map

    @property
    def slot_names(self) -> tuple[str, ...]:
        """All slot names, in map order."""
        return tuple(self._slot_index)

    # ---- instrument side -------------------------------------------------------------

    def get(self, name: str) -> float:
        """Current engineering value of a slot or register name. Raises ``KeyError``."""
        return self._values[self._slot_index[self._slot_of[name]]]

    def set(self, name: str, value: float) -> None:
        """Set a slot (instrument side): no access, range or limit checks, no hooks."""
        self._values[self._slot_index[self._slot_of[name]]] = value

    def slot(self, name: str) -> int:
        """Index in ``values`` of the slot of a slot or register name. Raises ``KeyError``."""
        return self._slot_index[self._slot_of[name]]

    @property
    def values(self) -> list[float]:
        """The bank's own list of slot values, by ``slot`` index (instrument side).

        ``values[bank.slot(name)] = x`` is ``set(name, x)`` without its two name lookups:
        for instruments that publish every step, which resolve their slots once.
        """
        return self._values

    def limit(self, name: str, minimum: float | None = None,
              maximum: float | None = None) -> None:
        """Add an instance-specific write limit (engineering units) on a slot.

        Bus writes outside ``[minimum, maximum]`` are answered with exception 3, on top of
        the register's own ``minimum``/``maximum``. ``None`` leaves that side open.
        """
        lo = float("-inf") if minimum is None else minimum
        hi = float("inf") if maximum is None else maximum
        self._limits[self._slot_index[self._slot_of[name]]] = (lo, hi)

    def on_write(self, callback: WriteHook) -> None:
        """Call ``callback(slot_name, value)`` after each accepted bus write, per register."""
        self._hooks.append(callback)

    # ---- bus side --------------------------------------------------------------------

    def read(self, address: int, count: int) -> list[int]:
        """Words from ``address`` (0-based PDU) for ``count`` registers, as FC03 serves them.

        Raises ``ModbusExceptionReply(2)`` unless the span is covered by whole registers,
        ``ModbusExceptionReply(3)`` for a count outside 1..125.
        """
        # A driver reads the same few blocks every scan cycle: each block is checked and
        # compiled into one encoder on its first read, so a repeat is a dict hit and a
        # struct call or two. Only blocks that read successfully are cached.
        encode = self._reads.get((address, count))
        if encode is None:
            encode = self._compile_read(address, count)
        return encode(self._values)

    def _compile_read(self, address: int, count: int) -> _Encoder:
        """Check the span of a block read (raising as ``read`` documents) and cache its
        encoder."""
        if not 0 < count <= MAX_READ_COUNT:
            raise ModbusExceptionReply(ILLEGAL_DATA_VALUE, f"read count {count}")
        views: list[_View] = []
        addr = address
        end = address + count
        while addr < end:
            view = self._views.get(addr)
            if view is None or addr + view[1] > end:
                raise ModbusExceptionReply(ILLEGAL_DATA_ADDRESS,
                                           f"{self._map.model}: no whole register at {addr}")
            views.append(view)
            addr += view[1]
        encode = _block_encoder(views)
        self._reads[(address, count)] = encode
        return encode

    def write(self, address: int, words: Sequence[int]) -> None:
        """Apply an FC16 write of ``words`` from ``address``; all or nothing.

        Raises ``ModbusExceptionReply(2)`` if the span is not covered by whole registers or
        touches a read-only register (the 3216 and Alicat answer "illegal data address" for
        a write to a read-only parameter; we choose 2 over 3 for every device), and
        ``ModbusExceptionReply(3)`` for a value outside the register's or the instance's
        limits, or a word count outside 1..123. Raises ``ValueError`` for a word that is
        not 0..65535 (it cannot be sent on the wire).
        """
        count = len(words)
        if not 0 < count <= MAX_WRITE_COUNT:
            raise ModbusExceptionReply(ILLEGAL_DATA_VALUE, f"write count {count}")
        for w in words:
            if not 0 <= w <= 0xFFFF:
                raise ValueError(f"register word {w} is not 0..65535")
        accepted: list[tuple[int, float, Register]] = []
        addr = address
        end = address + count
        while addr < end:
            view = self._views.get(addr)
            if view is None or addr + view[1] > end:
                raise ModbusExceptionReply(ILLEGAL_DATA_ADDRESS,
                                           f"{self._map.model}: no whole register at {addr}")
            index, n, kind, scale, high_first, reg = view
            if reg.access is Access.RO:
                raise ModbusExceptionReply(ILLEGAL_DATA_ADDRESS, f"{reg.name} is read-only")
            value = _decode(words[addr - address:addr - address + n], kind, scale, high_first)
            lo, hi = self._limits.get(index, _OPEN)
            if not reg.in_range(value) or not lo <= value <= hi:
                raise ModbusExceptionReply(ILLEGAL_DATA_VALUE, f"{reg.name} = {value:g}")
            accepted.append((index, value, reg))
            addr += n
        # Apply every value before any hook runs, so a hook sees the whole write.
        for index, value, _ in accepted:
            self._values[index] = value
        for _, value, reg in accepted:
            slot = self._slot_of[reg.name]
            self.write_counts[slot] += 1
            for hook in self._hooks:
                hook(slot, value)


def _block_encoder(views: Sequence[_View]) -> _Encoder:
    """The encoder of a block read of whole registers ``views``, in address order.

    A block whose 32-bit registers are all high word first (every map the drivers have)
    is one ``struct`` pack into big-endian bytes and one unpack into words: floats go in as
    they are, integer views are quantised and saturated first (``_raw``), so the words are
    those the per-register rules give. A lone integer register, or a block with a
    low-word-first register, goes register by register (``_register_encoder``).
    """
    lone_int = len(views) == 1 and views[0][2] != _KIND_FLOAT32
    if lone_int or any(words == 2 and not high_first for _, words, _, _, high_first, _ in views):
        parts = [_register_encoder(index, kind, scale, high_first)
                 for index, _, kind, scale, high_first, _ in views]
        if len(parts) == 1:
            return parts[0]

        def encode_each(values: list[float]) -> list[int]:
            out: list[int] = []
            for part in parts:
                out += part(values)
            return out

        return encode_each
    pack = Struct(">" + "".join(_STRUCT_CODES[view[2]] for view in views)).pack
    unpack = Struct(f">{sum(view[1] for view in views)}H").unpack
    if len(views) == 1:  # a lone float
        index = views[0][0]
        return lambda values: list(unpack(pack(values[index])))
    get = itemgetter(*(view[0] for view in views))
    ints = [(position, scale, *_RAW_LIMITS[kind])
            for position, (_, _, kind, scale, _, _) in enumerate(views)
            if kind != _KIND_FLOAT32]
    if not ints:
        return lambda values: list(unpack(pack(*get(values))))

    def encode(values: list[float]) -> list[int]:
        args = list(get(values))
        for position, scale, low, high in ints:
            args[position] = _raw(args[position], scale, low, high)
        return list(unpack(pack(*args)))

    return encode


def _raw(value: float, scale: float, low: int, high: int) -> int:
    """An integer view's raw value: quantised as ``drivers.registers.encode`` does and
    saturated at ``low``/``high`` instead of raising."""
    raw = round(value / scale) if scale != 1.0 else round(value)
    return low if raw < low else high if raw > high else raw


def _register_encoder(index: int, kind: int, scale: float, high_first: bool) -> _Encoder:
    """Encoder of one register on slot ``index``: a scaled integer view quantises (as
    ``drivers.registers.encode``) and saturates at the integer limits."""
    if kind == _KIND_FLOAT32:
        def encode_float(values: list[float]) -> list[int]:
            hi, lo = _WORDS.unpack(_FLOAT.pack(values[index]))
            return [hi, lo] if high_first else [lo, hi]

        return encode_float
    low, high = _RAW_LIMITS[kind]
    wide = kind == _KIND_UINT32

    def encode_int(values: list[float]) -> list[int]:
        raw = _raw(values[index], scale, low, high)
        if wide:
            return [raw >> 16, raw & 0xFFFF] if high_first else [raw & 0xFFFF, raw >> 16]
        return [raw & 0xFFFF]

    return encode_int


def _decode(words: Sequence[int], kind: int, scale: float, high_first: bool) -> float:
    """Register words -> engineering value (mirrors ``drivers.registers.decode``)."""
    if kind == _KIND_FLOAT32:
        hi, lo = (words[0], words[1]) if high_first else (words[1], words[0])
        return float(_FLOAT.unpack(_WORDS.pack(hi, lo))[0])
    if kind == _KIND_UINT32:
        hi, lo = (words[0], words[1]) if high_first else (words[1], words[0])
        return ((hi << 16) | lo) * scale
    raw = words[0]
    if kind == _KIND_INT16 and raw & 0x8000:
        raw -= 0x10000
    return raw * scale
