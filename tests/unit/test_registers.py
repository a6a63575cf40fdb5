"""Rung 1: register encode/decode from the manuals' worked examples, round trips, and a
meta-test over every map."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.alicat import registers as alicat
from drivers.eurotherm.registers import FLOAT_BASE, build_map
from drivers.o2 import registers as o2
from drivers.registers import (
    Access,
    DType,
    Register,
    RegisterBlock,
    RegisterMap,
    WordOrder,
    decode,
    encode,
)

EURO = {r.name: r for r in build_map(1).registers}
ALL_MAPS = [build_map(0), build_map(1), build_map(2), alicat.MAP, o2.MAP]


def test_scaled_integer_worked_example() -> None:
    # hardware.md §1.4 [S10]: 24.2 °C with one decimal place reads as 242.
    assert encode(EURO["PV.IN"], 24.2) == [242]
    assert decode(EURO["PV.IN"], [242]) == pytest.approx(24.2)


def test_negative_scaled_value_is_twos_complement() -> None:
    assert encode(EURO["PV.IN"], -12.5) == [0x10000 - 125]
    assert decode(EURO["PV.IN"], [0x10000 - 125]) == pytest.approx(-12.5)


@pytest.mark.parametrize(("name", "address"), [
    ("PV.IN.F", 0x8002), ("TG.SP.F", 0x8004), ("WRK.OP.F", 0x8008), ("WKG.SP.F", 0x800A),
    ("SP.RAT.F", 0x8046), ("Rm.SP.F", 0x8034)])
def test_float_alias_addresses_match_manual(name: str, address: int) -> None:
    # hardware.md §1.4: float_addr = 0x8000 + 2 × addr, DERIVED examples.
    assert EURO[name].address == address
    assert EURO[name].dtype is DType.FLOAT32


def test_alicat_one_based_register_numbers() -> None:
    # hardware.md §2.1: register 1010 (setpoint) is PDU address 1009; mass flow 1209 -> 1208.
    assert alicat.SETPOINT.address == 1009
    assert alicat.MASS_FLOW.address == 1208
    assert alicat.GAS_NUMBER.address == 1199


def test_float_is_big_endian_high_word_first() -> None:
    hi, lo = struct.unpack(">HH", struct.pack(">f", 123.5))
    assert encode(alicat.SETPOINT, 123.5) == [hi, lo]


def test_low_first_word_order_swaps() -> None:
    reg = Register("X", 0, DType.FLOAT32, word_order=WordOrder.LOW_FIRST)
    hi, lo = struct.unpack(">HH", struct.pack(">f", 1.0))
    assert encode(reg, 1.0) == [lo, hi]
    assert decode(reg, [lo, hi]) == 1.0


def test_out_of_range_integer_raises() -> None:
    with pytest.raises(ValueError, match="int16"):
        encode(EURO["PV.IN"], 4000.0)  # 40000 raw does not fit int16


def test_wrong_word_count_raises() -> None:
    with pytest.raises(ValueError, match="expected 2 words"):
        decode(alicat.MASS_FLOW, [1])


def test_overlap_is_rejected() -> None:
    with pytest.raises(ValueError, match="overlaps"):
        RegisterMap("bad", (Register("A", 0, DType.FLOAT32), Register("B", 1, DType.UINT16)))


@given(st.floats(min_value=-3000, max_value=3000, allow_nan=False))
def test_scaled_round_trip_within_half_a_count(value: float) -> None:
    reg = EURO["Rm.SP"]
    assert abs(decode(reg, encode(reg, value)) - value) <= 0.05 + 1e-9


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float_round_trip_is_exact(value: float) -> None:
    assert decode(alicat.SETPOINT, encode(alicat.SETPOINT, value)) == value


@given(st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_uint32_round_trip(raw: int) -> None:
    assert decode(alicat.STATUS, encode(alicat.STATUS, raw)) == raw


@pytest.mark.parametrize("regmap", ALL_MAPS, ids=lambda m: m.model)
def test_every_map_is_documented_and_bounded(regmap: RegisterMap) -> None:
    for reg in regmap.registers:
        assert reg.doc, f"{reg.name} has no doc"
        assert "§" in reg.doc or "ASSUMPTION" in reg.doc, f"{reg.name} names no section"
        if reg.access is not Access.RO:
            assert reg.minimum is not None, reg.name
            assert reg.maximum is not None, reg.name
            if reg.dtype is DType.FLOAT32:
                assert reg.unit, f"writable {reg.name} has no unit"


def test_scaled_and_float_regions_are_disjoint() -> None:
    regmap = build_map(1)
    scaled = [r for r in regmap.registers if r.address < FLOAT_BASE]
    assert all(r.address + r.word_count <= FLOAT_BASE for r in scaled)


# ---- RegisterBlock: one precompiled struct per block read, the same numbers as decode()

_BLOCK_REGS = (
    Register("I16", 10, DType.INT16, scale=0.1),
    Register("U16", 11, DType.UINT16),
    # a gap word at 12
    Register("U32", 13, DType.UINT32, scale=0.01),
    Register("U32.LO", 15, DType.UINT32, word_order=WordOrder.LOW_FIRST),
    Register("F", 17, DType.FLOAT32),
    Register("F.LO", 19, DType.FLOAT32, word_order=WordOrder.LOW_FIRST),
)


@given(st.lists(st.integers(0, 0xFFFF), min_size=11, max_size=11))
def test_block_decode_equals_decode_register_by_register(words: list[int]) -> None:
    block = RegisterBlock(_BLOCK_REGS)
    assert (block.address, block.count) == (10, 11)
    got = block.decode(words)
    want = [decode(r, words[r.address - 10:r.address - 10 + r.word_count])
            for r in _BLOCK_REGS]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):  # bit for bit, NaN included
        assert struct.pack(">d", g) == struct.pack(">d", w)


def test_block_of_every_map_decodes_as_its_registers() -> None:
    for reg_map in ALL_MAPS:
        for reg in reg_map:
            block = RegisterBlock([reg])
            words = encode(reg, 12.5) if reg.dtype is not DType.UINT16 else [7]
            assert block.decode(words) == (decode(reg, words),)


@pytest.mark.parametrize(("words", "message"), [
    ([1] * 10, "expected 11 words, got 10"),
    ([1] * 10 + [0x10000], "register word out of range"),
])
def test_block_refuses_a_wrong_reply(words: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RegisterBlock(_BLOCK_REGS).decode(words)


def test_block_refuses_overlapping_registers() -> None:
    with pytest.raises(ValueError, match="overlaps"):
        RegisterBlock([Register("A", 0, DType.FLOAT32), Register("B", 1, DType.INT16)])
