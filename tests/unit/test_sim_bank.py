"""RegisterBank: views of one slot, exception codes, limits, write counting, word order."""

from __future__ import annotations

import random
import struct

import pytest

from drivers.alicat.registers import MAP as ALICAT_MAP
from drivers.alicat.registers import MASS_FLOW, SETPOINT
from drivers.eurotherm.registers import build_map
from drivers.registers import DType, Register, RegisterMap, WordOrder, decode, encode
from simulator.alicat import SimAlicatMFC
from simulator.bank import ModbusExceptionReply, RegisterBank
from simulator.eurotherm import SimEurotherm3216

EURO = {r.name: r for r in build_map(1).registers}


def write(bank: RegisterBank, reg: Register, value: float) -> None:
    bank.write(reg.address, encode(reg, value))


def read(bank: RegisterBank, reg: Register) -> float:
    return decode(reg, bank.read(reg.address, reg.word_count))


def code_of(excinfo: pytest.ExceptionInfo[ModbusExceptionReply]) -> int:
    return excinfo.value.code


@pytest.fixture
def bank() -> RegisterBank:
    return RegisterBank(build_map(1))


def test_float_write_is_read_quantised_from_the_scaled_view(bank: RegisterBank) -> None:
    write(bank, EURO["TG.SP.F"], 123.46)
    assert bank.read(EURO["TG.SP"].address, 1) == [1235]  # 1 dp: 123.46 -> 1235
    assert read(bank, EURO["TG.SP.F"]) == pytest.approx(123.46, abs=1e-4)
    assert bank.get("TG.SP") == bank.get("TG.SP.F")


def test_scaled_write_is_read_by_the_float_view(bank: RegisterBank) -> None:
    bank.write(EURO["TG.SP"].address, [2420])
    assert read(bank, EURO["TG.SP.F"]) == pytest.approx(242.0)


def test_scaled_read_quantises_like_encode(bank: RegisterBank) -> None:
    reg = EURO["PV.IN"]
    for value in (24.2, 24.25, -3.14, 1499.96, 0.05):
        bank.set("PV.IN", value)
        assert bank.read(reg.address, 1) == encode(reg, value)


def test_scaled_read_saturates_where_int16_cannot_hold_the_value() -> None:
    bank = RegisterBank(build_map(2))
    bank.set("PV.IN", 1500.0)  # 150000 at 2 dp does not fit int16
    assert bank.read(1, 1) == [0x7FFF]


def test_block_read_of_five_floats(bank: RegisterBank) -> None:
    for name, value in (("PV.IN", 20.5), ("TG.SP", 30.0), ("WKG.SP", 25.0)):
        bank.set(name, value)
    words = bank.read(0x8002, 10)
    assert decode(EURO["PV.IN.F"], words[0:2]) == 20.5
    assert decode(EURO["WKG.SP.F"], words[8:10]) == 25.0


@pytest.mark.parametrize(("address", "count"), [
    (10, 1),  # nothing at 10
    (7, 1),  # nothing at 7 (between PB and Ti)
    (1, 10),  # 1-9 mapped but 7 is a gap
    (0x8002, 1),  # half of a 32-bit float
    (0x8003, 2),  # starts in the middle of PV.IN.F
    (0x8008, 3),  # WRK.OP.F then half of WKG.SP.F
])
def test_unmapped_or_partial_reads_answer_illegal_data_address(
        bank: RegisterBank, address: int, count: int) -> None:
    with pytest.raises(ModbusExceptionReply) as excinfo:
        bank.read(address, count)
    assert code_of(excinfo) == 2


@pytest.mark.parametrize("count", [0, 126])
def test_read_count_outside_the_protocol_limit_is_illegal_data_value(
        bank: RegisterBank, count: int) -> None:
    with pytest.raises(ModbusExceptionReply) as excinfo:
        bank.read(1, count)
    assert code_of(excinfo) == 3


@pytest.mark.parametrize("name", ["PV.IN", "WKG.SP", "WKG.SP.F", "StAt"])
def test_write_to_read_only_answers_illegal_data_address(bank: RegisterBank, name: str) -> None:
    reg = EURO[name]
    with pytest.raises(ModbusExceptionReply) as excinfo:
        bank.write(reg.address, encode(reg, 5.0))
    assert code_of(excinfo) == 2
    assert bank.get(name) == 0.0


def test_partial_or_unmapped_write_answers_illegal_data_address(bank: RegisterBank) -> None:
    for address, words in ((0x8004, [0x4300]), (10, [1]), (0x8005, [0, 0])):
        with pytest.raises(ModbusExceptionReply) as excinfo:
            bank.write(address, words)
        assert code_of(excinfo) == 2


def test_out_of_range_write_answers_illegal_data_value(bank: RegisterBank) -> None:
    for name, value in (("MAN.OP.F", 150.0), ("A-M", 2), ("TG.SP.F", 2000.0), ("Ti", -1)):
        reg = EURO[name]
        with pytest.raises(ModbusExceptionReply) as excinfo:
            bank.write(reg.address, encode(reg, value))
        assert code_of(excinfo) == 3


def test_instance_limit_answers_illegal_data_value(bank: RegisterBank) -> None:
    bank.limit("TG.SP", -50.0, 1768.0)  # Type S input range
    with pytest.raises(ModbusExceptionReply) as excinfo:
        write(bank, EURO["TG.SP.F"], 1800.0)  # inside the map's -200..1820, outside S
    assert code_of(excinfo) == 3
    write(bank, EURO["TG.SP.F"], 1768.0)
    assert bank.get("TG.SP") == 1768.0


def test_a_rejected_write_changes_nothing(bank: RegisterBank) -> None:
    # OP.HI (30) and OP.LO (31) in one FC16; OP.LO out of range rejects both.
    bank.set("OP.HI", 100.0)
    with pytest.raises(ModbusExceptionReply):
        bank.write(30, [500, 2000])
    assert bank.get("OP.HI") == 100.0
    assert bank.write_counts["OP.HI"] == 0


def test_write_hook_sees_slot_names_and_counts(bank: RegisterBank) -> None:
    seen: list[tuple[str, float]] = []
    bank.on_write(lambda name, value: seen.append((name, value)))
    write(bank, EURO["Rm.SP.F"], 500.0)
    bank.write(EURO["Rm.SP"].address, [5010])
    assert seen == [("Rm.SP", 500.0), ("Rm.SP", pytest.approx(501.0))]
    assert bank.write_counts["Rm.SP"] == 2


def test_tg_sp_writes_are_counted_as_eeprom_wear() -> None:
    furnace = SimEurotherm3216()
    write(furnace.bank, EURO["TG.SP.F"], 100.0)
    furnace.bank.write(EURO["TG.SP"].address, [2000])
    write(furnace.bank, EURO["Rm.SP.F"], 300.0)  # volatile: not counted
    furnace.bank.set("TG.SP", 50.0)  # instrument side: not a bus write
    assert furnace.eeprom_writes == 2


def test_word_outside_16_bits_is_a_programming_error(bank: RegisterBank) -> None:
    with pytest.raises(ValueError, match="65535"):
        bank.write(2, [70000])


def test_alicat_floats_are_big_endian_ieee754() -> None:
    bank = RegisterBank(ALICAT_MAP)
    bank.set("MASS_FLOW", 123.456)
    expected = list(struct.unpack(">HH", struct.pack(">f", 123.456)))
    assert bank.read(MASS_FLOW.address, 2) == expected
    bank.write(SETPOINT.address, list(struct.unpack(">HH", struct.pack(">f", 250.5))))
    assert bank.get("SETPOINT") == 250.5


def test_alicat_setpoint_above_full_scale_is_rejected() -> None:
    mfc = SimAlicatMFC("Ar", 500.0)
    with pytest.raises(ModbusExceptionReply) as excinfo:
        write(mfc.bank, SETPOINT, 500.5)
    assert code_of(excinfo) == 3
    write(mfc.bank, SETPOINT, 500.0)
    assert mfc.setpoint_sccm == 500.0


def _reference_words(reg: Register, value: float) -> list[int]:
    """One register's words by the documented rule: ``encode``, saturating integers."""
    if reg.dtype is DType.FLOAT32:
        return encode(reg, value)
    low, high = {DType.INT16: (-0x8000, 0x7FFF), DType.UINT16: (0, 0xFFFF),
                 DType.UINT32: (0, 0xFFFFFFFF)}[reg.dtype]
    raw = min(max(round(value / reg.scale), low), high)
    return encode(reg, raw * reg.scale) if reg.scale == 1.0 else encode(
        Register(reg.name, reg.address, reg.dtype, word_order=reg.word_order), raw)


MIXED = RegisterMap("mixed", (
    Register("A", 0, DType.INT16, scale=0.1),
    Register("B", 1, DType.FLOAT32),
    Register("C", 3, DType.FLOAT32),
    Register("D", 5, DType.UINT32, word_order=WordOrder.LOW_FIRST),
    Register("E", 7, DType.FLOAT32, word_order=WordOrder.LOW_FIRST),
    Register("F", 9, DType.UINT16, scale=0.5),
    Register("G", 10, DType.UINT32),
    Register("H", 12, DType.FLOAT32),
))


@pytest.mark.parametrize("register_map", [build_map(1), build_map(2), ALICAT_MAP, MIXED],
                         ids=lambda m: m.model)
def test_every_block_read_is_its_registers_words_in_order(register_map: RegisterMap) -> None:
    # Block reads are compiled and cached per (address, count): every contiguous block of
    # whole registers must read as the per-register rule gives, fresh and after new values.
    bank = RegisterBank(register_map)
    regs = sorted(register_map.registers, key=lambda r: r.address)
    rng = random.Random(14)
    for _ in range(3):
        values = {r.name: rng.choice([0.0, -0.0, 1.5, -2.25, 123.456, -7.0e4, 9.9e9,
                                      rng.uniform(-1e3, 1e3)]) for r in regs}
        for reg in regs:
            bank.set(reg.name, values[reg.name])
        for i, first in enumerate(regs):
            expected: list[int] = []
            for reg in regs[i:]:
                if reg.address != first.address + len(expected):
                    break  # a gap: blocks end here
                expected += _reference_words(reg, bank.get(reg.name))
                assert bank.read(first.address, len(expected)) == expected, (first, reg)


def test_a_store_by_slot_index_is_a_set(bank: RegisterBank) -> None:
    # Instruments publish every step by index into ``values`` instead of ``set(name)``.
    index = bank.slot("PV.IN.F")
    assert index == bank.slot("PV.IN")
    bank.values[index] = 123.4
    assert bank.get("PV.IN") == 123.4
    assert bank.read(EURO["PV.IN"].address, 1) == [1234]
    assert read(bank, EURO["PV.IN.F"]) == pytest.approx(123.4, abs=1e-4)
    with pytest.raises(KeyError):
        bank.slot("NO.SUCH")
