"""Instrument map files (drivers.maps): the shipped files load; the 3216, Alicat and O2 files
are the Python maps register for register; hostile files are refused in one line naming the
file, the field and the rule; the safety completeness check and its waiver; the JSON Schema
and the packaging."""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from drivers.alicat import registers as alicat
from drivers.errors import ConfigurationError
from drivers.eurotherm.registers import Status, build_map
from drivers.maps import (
    BUILTIN_MAPS,
    InstrumentKind,
    MapFileError,
    MassFlowControllerRoles,
    SafetyFeature,
    TemperatureControllerRoles,
    check_safety,
    load_builtin_map,
    load_map_file,
    load_map_text,
    missing_safety_features,
)
from drivers.maps.instrument import RateLimit, StatusWord
from drivers.maps.schema import SCHEMA_PATH, TYPE_NAMES, render_json_schema
from drivers.o2 import registers as o2
from drivers.registers import Access, DType

ROOT = Path(__file__).resolve().parents[2]
MAPS = ROOT / "drivers" / "maps"


def tc_roles(name: str) -> TemperatureControllerRoles:
    roles = load_builtin_map(name).roles
    assert isinstance(roles, TemperatureControllerRoles)
    return roles


# --- the shipped files -------------------------------------------------------------------

@pytest.mark.parametrize("name", BUILTIN_MAPS)
def test_each_shipped_map_loads_from_its_file(name: str) -> None:
    imap = load_map_file(MAPS / f"{name}.toml")
    assert imap.model == name
    assert imap.source == str(MAPS / f"{name}.toml")
    assert load_builtin_map(name).registers == imap.registers
    assert imap.manual.document
    assert imap.manual.section


def test_every_map_file_in_the_package_is_a_builtin_or_the_template() -> None:
    shipped = {p.stem for p in MAPS.glob("*.toml")}
    assert shipped == {*BUILTIN_MAPS, "TEMPLATE"}


def test_the_template_loads_and_passes_the_safety_check() -> None:
    imap = load_map_file(MAPS / "TEMPLATE.toml")
    assert imap.kind is InstrumentKind.TEMPERATURE_CONTROLLER
    assert check_safety(imap) == ()
    counter = imap.register("COUNTER")
    assert counter.word_order.value == "low_first"  # the per-register override


@pytest.mark.parametrize("name", ["eurotherm2400", "eurotherm3500", "bronkhorst"])
def test_new_maps_name_a_source_for_every_address(name: str) -> None:
    imap = load_builtin_map(name)
    for reg in imap.registers:
        assert re.search(r"\[[^\]]+\]", reg.doc), f"{name}: {reg.name} names no source"


@pytest.mark.parametrize("name", [*BUILTIN_MAPS, "TEMPLATE"])
def test_shipped_maps_keep_the_register_map_rules(name: str) -> None:
    # tests/unit/test_registers.py's meta-test, for the files (the wiring step adds them).
    imap = load_map_file(MAPS / f"{name}.toml")
    for reg in imap.registers:
        assert "§" in reg.doc or "ASSUMPTION" in reg.doc, f"{reg.name} names no section"
        if reg.access is not Access.RO:
            assert reg.minimum is not None, reg.name
            assert reg.maximum is not None, reg.name
            if reg.dtype is DType.FLOAT32:
                assert reg.unit, f"writable {reg.name} has no unit"


@pytest.mark.parametrize("decimals", [0, 1, 2])
def test_eurotherm3216_file_is_the_python_map(decimals: int) -> None:
    from_file = load_builtin_map("eurotherm3216").at_decimals(decimals).registers
    python = build_map(decimals)
    assert [r.name for r in from_file] == [r.name for r in python]
    for ours, theirs in zip(from_file, python, strict=True):
        assert ours == theirs, ours.name
    assert from_file == python


def test_eurotherm3216_status_bits_and_roles_are_what_the_driver_uses() -> None:
    imap = load_builtin_map("eurotherm3216")
    roles = tc_roles("eurotherm3216")
    renamed = {"PV_OVER_RANGE": "over_range", "REMOTE_SP_FAIL": "remote_fail"}
    assert roles.status is not None
    assert dict(roles.status.bits) == {renamed.get(f.name, f.name.lower()): int(f)
                                       for f in Status}
    assert roles.status.inverted == "StAt.INV"
    # What drivers/eurotherm/driver.py reads and writes, by name.
    assert (roles.process_value, roles.working_setpoint, roles.output) == (
        "PV.IN.F", "WKG.SP.F", "WRK.OP.F")
    assert (roles.remote_setpoint, roles.local_setpoint, roles.manual_output) == (
        "Rm.SP.F", "TG.SP.F", "MAN.OP.F")
    assert (roles.alarm_high, roles.range_low, roles.range_high) == ("A1.F", "RNG.LO.F",
                                                                     "RNG.HI.F")
    assert roles.process_value_scaled == "PV.IN"
    assert roles.rate_limit == RateLimit("SP.RAT.F", "minute")
    assert roles.remote_select is not None
    assert roles.auto_manual is not None
    assert (roles.remote_select.register, roles.remote_select.remote,
            roles.remote_select.local) == ("L-R", 1, 0)
    assert (roles.auto_manual.register, roles.auto_manual.auto,
            roles.auto_manual.manual) == ("A-M", 0, 1)
    # The EEPROM-backed parameters the driver writes only at preflight, in both views.
    assert imap.eeprom == {"TG.SP", "TG.SP.F", "A1", "A1.F"}
    assert imap.slot("PV.IN.F") == "PV.IN"
    assert imap.slot("StAt") == "StAt"


def test_alicat_file_is_the_python_map() -> None:
    imap = load_builtin_map("alicat")
    assert [r.name for r in imap.registers] == [r.name for r in alicat.MAP]
    for ours, theirs in zip(imap.registers, alicat.MAP, strict=True):
        assert ours == theirs, ours.name
    assert imap.registers == alicat.MAP
    roles = imap.roles
    assert isinstance(roles, MassFlowControllerRoles)
    assert (roles.setpoint, roles.flow, roles.setpoint_readback) == (
        "SETPOINT", "MASS_FLOW", "SETPOINT_RB")
    assert roles.gas is not None
    assert dict(roles.gas.numbers) == alicat.GAS_INDEX
    assert roles.gas.register == alicat.GAS_NUMBER.name
    assert roles.status is not None
    assert {k.upper(): v for k, v in roles.status.bits.items()} == {
        f.name: int(f) for f in alicat.Status}
    fault = alicat.Status.ADC_ERROR | alicat.Status.PID_HOLD | alicat.Status.MEASUREMENT_ABORTED
    assert sum(roles.status.bits[b] for b in roles.status.fault) == int(fault)


def test_o2_file_is_the_python_map() -> None:
    imap = load_builtin_map("o2-analyser")
    assert imap.registers == o2.MAP
    assert imap.registers.registers == o2.MAP.registers


def test_eurotherm2400_has_its_own_status_layout_and_rate_units_check() -> None:
    roles = tc_roles("eurotherm2400")
    assert roles.status is not None
    assert roles.status.bits["sensor_break"] == 1 << 5
    assert "remote_fail" not in roles.status.bits
    assert "ramp_running" not in roles.status.bits
    assert roles.rate_limit == RateLimit("SP.RAT.F", "minute", "RATE.UNITS", 1)
    assert load_builtin_map("eurotherm2400").register("Rm.SP.F").address == 0x8000 + 2 * 26


def test_bronkhorst_setpoint_is_percent_of_full_scale() -> None:
    imap = load_builtin_map("bronkhorst")
    roles = imap.roles
    assert isinstance(roles, MassFlowControllerRoles)
    assert roles.flow_basis == "percent_of_full_scale"
    setpoint = imap.register(roles.setpoint)
    assert setpoint.address == 0x0021
    assert round(100.0 / setpoint.scale) == 32000  # 32000 = 100 % [S31]
    assert roles.gas is not None
    assert not roles.gas.numbers


def test_at_decimals_refuses_what_the_instrument_cannot_show() -> None:
    imap = load_builtin_map("eurotherm3216")
    assert imap.at_decimals(1) is imap
    assert imap.at_decimals(2).register("PV.IN").scale == 0.01
    with pytest.raises(ConfigurationError, match="furnace.decimals") as err:
        imap.at_decimals(3, source="st.toml", field="furnace.decimals")
    assert str(err.value).startswith("st.toml: furnace.decimals: ")


def test_unknown_builtin_map_is_refused() -> None:
    with pytest.raises(MapFileError, match="no built-in map 'yudian'"):
        load_builtin_map("yudian")


def test_role_helpers() -> None:
    rate = RateLimit("R", "second")
    assert rate.to_register(6.0) == pytest.approx(0.1)
    assert RateLimit("R", "hour").to_register(1.0) == 60.0
    assert rate.from_register(rate.to_register(5.0)) == pytest.approx(5.0)
    status = StatusWord("S", {"sensor_break": 0x20, "manual": 0x10}, frozenset({"sensor_break"}))
    assert status.names(0x30) == ("sensor_break", "manual")
    assert status.is_set(0x20, "sensor_break")
    assert not status.is_set(0x20, "ramp_running")
    assert status.is_faulted(0x20)
    assert not status.is_faulted(0x10)


# --- hostile files: exactly one line naming file, field and rule --------------------------

def base_tc() -> dict[str, Any]:
    """A small valid temperature controller map that passes the safety check."""
    def reg(name: str, address: int, dtype: str = "float32", **extra: Any) -> dict[str, Any]:
        return {"name": name, "address": address, "type": dtype, "doc": f"{name}, §1", **extra}
    writable = {"access": "rw", "min": -200.0, "max": 1800.0, "unit": "degC"}
    return {
        "schema_version": 1,
        "instrument": {"model": "test", "kind": "temperature_controller",
                       "manual": {"document": "Manual", "section": "§1"}},
        "registers": [
            reg("PV", 0, unit="degC"),
            reg("WSP", 2, unit="degC"),
            reg("OUT", 4, unit="%"),
            reg("RSP", 6, **writable),
            reg("LSP", 8, **writable, eeprom=True),
            reg("RATE", 10, access="rw", min=0.0, max=100.0, unit="degC/min"),
            reg("MOP", 12, access="rw", min=0.0, max=100.0, unit="%"),
            reg("STATUS", 20, "uint16"),
            reg("LR", 21, "uint16", access="rw", min=0, max=1),
            reg("AM", 22, "uint16", access="rw", min=0, max=1),
            reg("ACK", 23, "uint16", access="wo", min=0, max=1),
        ],
        "roles": {
            "process_value": "PV", "working_setpoint": "WSP", "output": "OUT",
            "remote_setpoint": "RSP", "local_setpoint": "LSP", "manual_output": "MOP",
            "acknowledge_alarms": "ACK",
            "remote_select": {"register": "LR", "remote": 1, "local": 0},
            "auto_manual": {"register": "AM", "auto": 0, "manual": 1},
            "rate_limit": {"register": "RATE", "per": "minute"},
            "status": {"register": "STATUS", "bits": {"sensor_break": 0x20}},
        },
    }


def base_mfc() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "instrument": {"model": "mfc", "kind": "mass_flow_controller",
                       "manual": {"document": "Manual", "section": "§2"}},
        "registers": [
            {"name": "SP", "address": 0, "type": "float32", "access": "rw", "unit": "sccm",
             "min": 0.0, "max": 1000.0, "doc": "setpoint §2"},
            {"name": "FLOW", "address": 2, "type": "float32", "unit": "sccm", "doc": "flow §2"},
        ],
        "roles": {"setpoint": "SP", "flow": "FLOW"},
    }


def assert_one_line(message: str, prefix: str, rule: str) -> None:
    """The refusal is one line that starts with file and field, and states the rule."""
    assert "\n" not in message, message
    assert message.startswith(prefix), message
    assert rule in message, message


def write(tmp_path: Path, doc: dict[str, Any] | str) -> Path:
    path = tmp_path / "hostile.toml"
    path.write_text(doc if isinstance(doc, str) else tomli_w.dumps(doc), encoding="utf-8")
    return path


def test_the_base_documents_are_valid(tmp_path: Path) -> None:
    assert check_safety(load_map_file(write(tmp_path, base_tc()))) == ()
    load_map_file(write(tmp_path, base_mfc()))


Mutation = Callable[[dict[str, Any]], None]


def regs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    registers: list[dict[str, Any]] = doc["registers"]
    return registers


def roles(doc: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = doc["roles"]
    return found


def setreg(index: int, **fields: Any) -> Mutation:
    return lambda doc: regs(doc)[index].update(fields)


def add(**fields: Any) -> Mutation:
    return lambda doc: regs(doc).append({"doc": "extra §9", **fields})


def setrole(path: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        holder = roles(doc)
        for p in parents:
            holder = holder[p]
        if value is None:
            del holder[last]
        else:
            holder[last] = value
    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        for m in mutations:
            m(doc)
    return mutate


HOSTILE: list[tuple[str, Mutation, str, str]] = [
    # registers overlapping (word spans), per table
    ("overlap", add(name="X", address=1, type="uint16"), "registers[11].address",
     "X (words 1-1) overlaps PV (registers[0]) at 1 in the holding table"),
    ("overlap_32bit", add(name="X", address=11, type="uint32"), "registers[11].address",
     "overlaps RATE"),
    ("float_alias_overlap", both(
        lambda d: d["instrument"].update(decimal_places=[1], default_decimals=1),
        lambda d: d.__setitem__("float_region", {"base": 0x8000}),
        add(name="T", address=30, type="int16", decimals=1, float_alias=True),
        add(name="T2.F", address=0x8000 + 2 * 30, type="float32")), "registers[11].float_alias",
     "overlaps T2.F"),
    ("tables_share_one_address_space", add(name="X", address=0, type="uint16",
                                           table="input"),
     "registers[11].address", "one address space"),
    # unknown types
    ("unknown_type", setreg(7, type="int64"), "registers[7].type", "unknown type 'int64'"),
    ("int32_not_yet", setreg(7, type="int32"), "registers[7].type", "int32 is not supported"),
    # addresses out of range, 1-based notation
    ("address_above_65535", setreg(7, address=70000), "registers[7].address",
     "70000 is outside 0..65535"),
    ("address_negative", setreg(7, address=-1), "registers[7].address",
     "-1 is outside 0..65535"),
    ("address_4xxxx", setreg(7, address=40076), "registers[7].address",
     "1-based 4xxxx holding-register notation (register 40076 is PDU address 75)"),
    ("address_4xxxxx", setreg(7, address=400076), "registers[7].address",
     "register 400076 is address 75"),
    ("address_quoted_4x", setreg(7, address="4x0076"), "registers[7].address",
     "4xxxx holding-register notation"),
    ("address_quoted", setreg(7, address="75"), "registers[7].address",
     "must be a TOML integer"),
    ("second_word_past_65535", setreg(3, address=65535), "registers[3].address",
     "the second word passes 65535"),
    ("float_alias_past_65535", both(
        lambda d: d.__setitem__("float_region", {"base": 0x8000}),
        add(name="T", address=20000, type="int16", float_alias=True)),
     "registers[11].float_alias", "past 65535"),
    # decimals and scale nonsense
    ("decimals_and_scale", add(name="T", address=30, type="int16", decimals=1, scale=0.1),
     "registers[11].scale", "give decimals or scale, not both"),
    ("decimals_on_float", setreg(0, decimals=1), "registers[0].decimals",
     "a float32 carries its own decimal point"),
    ("scale_on_float", setreg(0, scale=0.1), "registers[0].scale", "already in engineering"),
    ("scale_zero", add(name="T", address=30, type="int16", scale=0.0), "registers[11].scale",
     "greater than 0"),
    ("decimals_too_many", add(name="T", address=30, type="int16", decimals=9),
     "registers[11].decimals", "less than or equal to 6"),
    ("configured_without_choices", add(name="T", address=30, type="int16",
                                       decimals="configured"),
     "registers[11].decimals", "needs instrument.decimal_places"),
    ("default_decimals_not_a_choice", lambda d: d["instrument"].update(
        decimal_places=[0, 1], default_decimals=2), "instrument.default_decimals",
     "2 is not one of decimal_places"),
    ("word_order_on_16_bit", setreg(7, word_order="low_first"), "registers[7].word_order",
     "applies to 32-bit types only"),
    ("float_alias_without_region", add(name="T", address=30, type="int16", float_alias=True),
     "registers[11].float_alias", "needs a [float_region]"),
    # duplicate names
    ("duplicate_name", add(name="PV", address=30, type="uint16"), "registers[11].name",
     "two registers are named 'PV', like registers[0]"),
    ("alias_duplicates_a_name", both(
        lambda d: d.__setitem__("float_region", {"base": 0x8000}),
        add(name="Q", address=40, type="uint16", float_alias=True),
        add(name="Q.F", address=50, type="float32")),
     "registers[11].float_alias", "its float alias is named 'Q.F', like registers[12]"),
    # min/max
    ("min_above_max", setreg(3, min=10.0, max=5.0), "registers[3].min",
     "min 10 is above max 5"),
    ("writable_without_limits", setreg(8, min=None), "registers[8].min",
     "a writable register (access = 'rw') needs min and max"),
    ("writable_scaled_without_unit", setreg(3, unit=""), "registers[3].unit",
     "needs its unit"),
    # roles bound to unknown registers, or the wrong way
    ("role_unknown_register", setrole("remote_setpoint", "RSPP"), "roles.remote_setpoint",
     "no register named 'RSPP'; did you mean 'RSP'?"),
    ("setpoint_role_on_read_only", setreg(3, access="ro"), "roles.remote_setpoint",
     'RSP is read-only (access = "ro"), but the driver writes this role and reads it back'),
    ("setpoint_role_on_write_only", setreg(3, access="wo"), "roles.remote_setpoint",
     "RSP is write-only"),
    ("reading_role_on_write_only", setreg(0, access="wo", min=0.0, max=1.0),
     "roles.process_value", 'PV is write-only (access = "wo"), but the driver reads this role'),
    ("status_on_write_only", setreg(7, access="wo", min=0, max=1), "roles.status.register",
     "STATUS is write-only"),
    ("ack_on_read_only", setreg(10, access="ro"), "roles.acknowledge_alarms",
     "ACK is read-only"),
    ("select_on_read_only", setreg(8, access="ro"), "roles.remote_select.register",
     "LR is read-only"),
    ("streamed_setpoint_on_eeprom", setreg(3, eeprom=True), "roles.remote_setpoint",
     "RSP is EEPROM-backed (eeprom = true): the driver writes this role every scan"),
    ("role_in_wrong_unit", setreg(0, unit="degF"), "roles.process_value",
     "PV is in 'degF', but this role is in 'degC'"),
    ("rate_unit_against_per", setrole("rate_limit.per", "hour"),
     "roles.rate_limit.register", "RATE is in 'degC/min', but this role is in 'degC/h'"),
    ("remote_select_without_local_setpoint", setrole("local_setpoint", None),
     "roles.remote_select", "needs roles.local_setpoint"),
    ("select_value_outside_limits", setrole("remote_select.remote", 2),
     "roles.remote_select.remote", "2 is outside the limits of LR (0..1)"),
    ("select_values_equal", setrole("remote_select.local", 1), "roles.remote_select.local",
     "remote and local must be different"),
    ("select_on_float", setrole("remote_select.register", "RATE"),
     "roles.remote_select.register", "RATE is a float32"),
    # status bits
    ("status_bit_not_single", setrole("status.bits", {"sensor_break": 0x30}),
     "roles.status.bits.sensor_break", "0x30 is not a single bit"),
    ("status_bit_zero", setrole("status.bits", {"sensor_break": 0}),
     "roles.status.bits.sensor_break", "0x0 is not a single bit"),
    ("status_bit_outside_16_bits", setrole("status.bits", {"sensor_break": 0x10000}),
     "roles.status.bits.sensor_break", "0x10000 is outside the 16 bits of STATUS"),
    ("status_fault_not_a_bit", setrole("status.fault", ["broken"]), "roles.status.fault[0]",
     "'broken' is not one of bits"),
    # the format itself
    ("unknown_field_with_hint", setreg(2, adress=4), "registers[2].adress",
     "unknown field (not allowed here); did you mean 'address'?"),
    ("missing_field", setreg(2, type=None), "registers[2].type", "required field is missing"),
    ("unknown_kind", lambda d: d["instrument"].update(kind="thermostat"), "instrument.kind",
     "unknown kind 'thermostat' (one of: temperature_controller"),
    ("schema_version", lambda d: d.update(schema_version=2), "schema_version", "1"),
    ("role_missing", setrole("process_value", None), "roles.process_value",
     "required field is missing"),
]


def _drop_nones(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nones(v) for v in value]
    return value


@pytest.mark.parametrize(("mutate", "field", "rule"),
                         [pytest.param(m, f, r, id=i) for i, m, f, r in HOSTILE])
def test_hostile_map_is_refused_in_one_line(tmp_path: Path, mutate: Mutation, field: str,
                                            rule: str) -> None:
    doc = copy.deepcopy(base_tc())
    mutate(doc)
    path = write(tmp_path, _drop_nones(doc))
    with pytest.raises(MapFileError) as err:
        load_map_file(path)
    assert_one_line(str(err.value), f"{path}: {field}: ", rule)
    assert isinstance(err.value, ConfigurationError)  # the CLI's exit 2


@pytest.mark.parametrize(("mutate", "field", "rule"), [
    pytest.param(lambda d: regs(d)[0].update(eeprom=True), "roles.setpoint",
                 "SP is EEPROM-backed", id="mfc_setpoint_on_eeprom"),
    pytest.param(lambda d: regs(d)[0].update(access="ro"), "roles.setpoint",
                 "SP is read-only", id="mfc_setpoint_on_read_only"),
    pytest.param(lambda d: roles(d).update(flow_basis="percent_of_full_scale"), "roles.setpoint",
                 "SP is in 'sccm', but this role is in '%'", id="mfc_basis_against_unit"),
    pytest.param(lambda d: roles(d).update(status={"register": "FLOW", "bits": {"x": 1}}),
                 "roles.status.register", "FLOW is a float32", id="mfc_status_on_float"),
    pytest.param(lambda d: roles(d).update(remote_setpoint="SP"), "roles.remote_setpoint",
                 "unknown field", id="mfc_with_tc_role"),
])
def test_hostile_mfc_map_is_refused_in_one_line(tmp_path: Path, mutate: Mutation, field: str,
                                                rule: str) -> None:
    doc = copy.deepcopy(base_mfc())
    mutate(doc)
    path = write(tmp_path, doc)
    with pytest.raises(MapFileError) as err:
        load_map_file(path)
    message = str(err.value)
    assert_one_line(message, f"{path}: {field}: ", rule)


@pytest.mark.parametrize(("text", "rule"), [
    ("schema_version = 1\n[instrument\n", "not valid TOML"),
    ("schema_version = 1\n", "instrument: required table is missing"),
    ('schema_version = 1\n[instrument]\nmodel = "x"\n', "instrument.kind: required field is "
                                                         "missing (one of: "),
    ('schema_version = 1\ninstrument = "x"\n', "instrument: must be a table"),
])
def test_broken_file_is_refused_in_one_line(tmp_path: Path, text: str, rule: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(MapFileError) as err:
        load_map_file(path)
    message = str(err.value)
    assert_one_line(message, f"{path}: ", rule)


def test_unreadable_file_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(MapFileError, match="file not found"):
        load_map_file(tmp_path / "nope.toml")
    with pytest.raises(MapFileError, match="is a directory"):
        load_map_file(tmp_path)
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (300 * 1024))
    with pytest.raises(MapFileError, match="larger than 256 KiB"):
        load_map_file(big)


def test_high_addresses_lets_a_device_use_40001_to_49999(tmp_path: Path) -> None:
    doc = base_tc()
    regs(doc)[7]["address"] = 40076
    doc["instrument"]["high_addresses"] = True
    assert load_map_file(write(tmp_path, doc)).register("STATUS").address == 40076


# --- the safety completeness check -------------------------------------------------------

def test_complete_maps_need_no_waiver() -> None:
    for name in ("eurotherm3216", "eurotherm2400"):
        assert missing_safety_features(load_builtin_map(name)) == ()
        assert check_safety(load_builtin_map(name)) == ()


SAFETY_CASES = [
    (SafetyFeature.VOLATILE_SETPOINT, setrole("remote_select", None), "roles.remote_select"),
    (SafetyFeature.RATE_LIMIT, setrole("rate_limit", None), "roles.rate_limit"),
    (SafetyFeature.SENSOR_BREAK, setrole("status.bits", {"manual": 0x10}),
     "roles.status.bits.sensor_break"),
    (SafetyFeature.SENSOR_BREAK, setrole("status", None), "roles.status"),
    (SafetyFeature.OUTPUT_OFF, setrole("auto_manual", None), "roles.auto_manual"),
    (SafetyFeature.OUTPUT_OFF, setrole("manual_output", None), "roles.manual_output"),
]


@pytest.mark.parametrize(("feature", "mutate", "field"), SAFETY_CASES)
def test_missing_safety_feature_is_refused_unless_waived(
        tmp_path: Path, feature: SafetyFeature, mutate: Mutation, field: str) -> None:
    doc = base_tc()
    mutate(doc)
    path = write(tmp_path, doc)
    imap = load_map_file(path)  # the format is fine; the safety design is not
    assert missing_safety_features(imap) == (feature,)
    with pytest.raises(MapFileError) as err:
        check_safety(imap)
    message = str(err.value)
    assert_one_line(message, f"{path}: {field}: ", "accept running without it")
    assert f'accept_missing = ["{feature}"]' in message
    assert check_safety(imap, [feature.value], station="st.toml") == (feature,)


def test_eurotherm3500_is_refused_until_completed_or_waived() -> None:
    imap = load_builtin_map("eurotherm3500")
    lacking = (SafetyFeature.VOLATILE_SETPOINT, SafetyFeature.SENSOR_BREAK,
               SafetyFeature.OUTPUT_OFF)
    assert missing_safety_features(imap) == lacking
    with pytest.raises(MapFileError, match=r"^builtin:eurotherm3500: roles.remote_setpoint: "):
        check_safety(imap)
    with pytest.raises(MapFileError, match="roles.status: "):
        check_safety(imap, ["volatile_setpoint"])
    assert check_safety(imap, [f.value for f in lacking]) == lacking


def test_no_volatile_setpoint_and_no_rate_limit_cannot_be_waived(tmp_path: Path) -> None:
    doc = base_tc()
    for role in ("remote_setpoint", "remote_select", "rate_limit"):
        del roles(doc)[role]
    imap = load_map_file(write(tmp_path, doc))
    every = [f.value for f in SafetyFeature if f is not SafetyFeature.SENSOR_BREAK
             and f is not SafetyFeature.OUTPUT_OFF]
    with pytest.raises(MapFileError, match="cannot be waived"):
        check_safety(imap, every)


@pytest.mark.parametrize(("waived", "rule"), [
    (["rate_limit"], "accepts running without rate_limit, but builtin:eurotherm3216 has a "
                     "setpoint rate limit"),
    (["sensor-break"], "unknown safety feature 'sensor-break' (one of: volatile_setpoint"),
])
def test_a_wrong_waiver_is_refused_naming_the_station_field(waived: list[str],
                                                            rule: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        check_safety(load_builtin_map("eurotherm3216"), waived, station="st.toml",
                     field="furnace.accept_missing")
    message = str(err.value)
    assert_one_line(message, "st.toml: furnace.accept_missing: ", rule)


def test_flow_controllers_have_nothing_to_waive() -> None:
    imap = load_builtin_map("alicat")
    assert check_safety(imap) == ()
    with pytest.raises(ConfigurationError, match="not a temperature controller"):
        check_safety(imap, ["rate_limit"], station="st.toml")


# --- the JSON Schema and the packaging ---------------------------------------------------

def test_checked_in_json_schema_is_the_generated_one() -> None:
    assert SCHEMA_PATH.read_text("utf-8") == render_json_schema(), (
        "drivers/maps/schema.json is stale: run python -m drivers.maps")
    schema = json.loads(SCHEMA_PATH.read_text("utf-8"))
    assert len(schema["oneOf"]) == 3


def test_type_names_are_the_register_primitives_types() -> None:
    assert set(TYPE_NAMES) == {d.value for d in DType}


def test_map_files_are_package_data() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["drivers"]
    for path in [*MAPS.glob("*.toml"), *MAPS.glob("*.json")]:
        relative = path.relative_to(ROOT / "drivers").as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative


def test_load_map_text_names_its_source() -> None:
    with pytest.raises(MapFileError, match=r"^station.toml \[furnace.map\]: "):
        load_map_text("schema_version = 1\n", "station.toml [furnace.map]")
