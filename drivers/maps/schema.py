"""Instrument map files: the pydantic models of what a map file may say, and its JSON Schema.

Not here: the checks that need more than one field (overlapping registers: ``loader``;
roles bound to registers, units of roles: ``binding``), the frozen result
(``instrument``) and the safety completeness check (``safety``). Run
``python -m drivers.maps`` to rewrite ``schema.json`` after changing a model; a test
compares the two.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    model_validator,
)

__all__ = [
    "KINDS",
    "MODEL_BY_KIND",
    "SCHEMA_PATH",
    "TYPE_NAMES",
    "FieldRuleError",
    "FloatRegionSpec",
    "InstrumentSpec",
    "ManualSpec",
    "MapFileSpec",
    "MfcMapFile",
    "MfcRolesSpec",
    "O2MapFile",
    "O2RolesSpec",
    "RegisterSpec",
    "StatusSpec",
    "TcMapFile",
    "TcRolesSpec",
    "json_schema",
    "render_json_schema",
    "write_json_schema",
]

SCHEMA_PATH: Final = Path(__file__).with_name("schema.json")
MAX_REGISTERS: Final = 2000
MAX_ADDRESS: Final = 0xFFFF
# The register types the primitives in drivers.registers encode (DType); a test keeps the
# two in step. int32 is not among them yet: DType has no INT32.
TYPE_NAMES: Final = ("int16", "uint16", "uint32", "float32")
KINDS: Final = ("temperature_controller", "mass_flow_controller", "oxygen_analyser")


class FieldRuleError(ValueError):
    """Raised by a model validator that checks several fields: ``field`` (dotted, relative
    to the model) is where the user should look."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(rule)
        self.field = field


def _printable(allowed: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        for ch in value:
            if ch not in allowed and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl",
                                                                   "Zp"):
                raise ValueError(f"must be printable text (found U+{ord(ch):04X})")
        return value
    return check


Line = Annotated[str, Field(max_length=300), AfterValidator(_printable(""))]
Doc = Annotated[str, Field(min_length=1, max_length=300), AfterValidator(_printable(""))]
Text = Annotated[str, Field(max_length=4000), AfterValidator(_printable("\n\t"))]
RegisterName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9._-]{0,39}$")]
BitName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
GasName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9]{0,19}$")]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Word = Annotated[int, Field(strict=True, ge=0, le=0xFFFF)]
Flag = Annotated[bool, Field(strict=True)]

_FOUR_X: Final = re.compile(r"^\s*4\s*[xX:]?\s*(\d{4,5})\s*$")


def _address_before(value: Any) -> Any:
    """Strings are refused with a hint: a quoted 40027 or 4x0027 is the 1-based notation."""
    if isinstance(value, str):
        m = _FOUR_X.match(value)
        if m is not None:
            number = int(m.group(1))
            raise ValueError(f"{value!r} is the 1-based 4xxxx holding-register notation; give "
                             f"the 0-based PDU address as a TOML integer (register 4x{number:04d}"
                             f" is address {number - 1})")
        raise ValueError("the address must be a TOML integer: the 0-based PDU address as "
                         "sent on the wire (26, or 0x8034 in hex)")
    return value


def _address_after(value: int) -> int:
    if 400_001 <= value <= 465_536:
        raise ValueError(f"{value} is the 1-based 4xxxxx holding-register notation; give the "
                         f"0-based PDU address (register {value} is address {value - 400_001})")
    if not 0 <= value <= MAX_ADDRESS:
        raise ValueError(f"{value} is outside 0..65535 (a Modbus PDU address is 16 bits)")
    return value


# 0-based PDU address as sent on the wire. The range check lives in the after-validator (it
# words the 4xxxxx case); the schema still says 0..65535.
Address = Annotated[int, BeforeValidator(_address_before), Field(strict=True),
                    AfterValidator(_address_after),
                    Field(json_schema_extra={"minimum": 0, "maximum": MAX_ADDRESS})]


def _known_type(value: Any) -> Any:
    if isinstance(value, str) and value not in TYPE_NAMES:
        extra = ("; int32 is not supported yet (drivers.registers.DType has no INT32): use "
                 "uint32 if the value is never negative") if value == "int32" else ""
        raise ValueError(f"unknown type {value!r} (one of: {', '.join(TYPE_NAMES)}){extra}")
    return value


def _decimals_word(value: Any) -> Any:
    if isinstance(value, str) and value != "configured":
        raise ValueError('decimals is a number of decimal places (0-6) or "configured"')
    return value


Decimals = Annotated[Annotated[int, Field(strict=True, ge=0, le=6)] | Literal["configured"],
                     BeforeValidator(_decimals_word)]
RegisterType = Annotated[Literal["int16", "uint16", "uint32", "float32"],
                         BeforeValidator(_known_type)]
TableName = Literal["holding", "input"]
WordOrderName = Literal["high_first", "low_first"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ManualSpec(_Model):
    """Where the addresses come from: the manual's name (and number) and the section."""

    document: Annotated[Line, Field(min_length=1)]
    section: Annotated[Line, Field(min_length=1)]
    url: Line = ""


class InstrumentSpec(_Model):
    """``[instrument]``: what the file describes."""

    model: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,39}$")]
    kind: Literal["temperature_controller", "mass_flow_controller", "oxygen_analyser"]
    manual: ManualSpec
    notes: Text = ""
    # The decimal places the instrument may be configured to show; registers with
    # decimals = "configured" are scaled by 10^-d for the d the station gives.
    decimal_places: Annotated[tuple[Annotated[int, Field(strict=True, ge=0, le=4)], ...],
                              Field(min_length=1, max_length=5)] | None = None
    default_decimals: Annotated[int, Field(strict=True, ge=0, le=4)] | None = None
    # True if the device really has PDU addresses 40001..49999 (not 4xxxx notation).
    high_addresses: Flag = False

    @model_validator(mode="after")
    def _decimals_consistent(self) -> InstrumentSpec:
        places = self.decimal_places
        if places is None:
            if self.default_decimals is not None:
                raise FieldRuleError("default_decimals", "default_decimals needs "
                                     "decimal_places (the choices it is one of)")
            return self
        if len(set(places)) != len(places):
            raise FieldRuleError("decimal_places", "each choice may appear once")
        if self.default_decimals is None:
            raise FieldRuleError("default_decimals", "required with decimal_places (the "
                                 "decimal places assumed when the station does not say)")
        if self.default_decimals not in places:
            raise FieldRuleError("default_decimals", f"{self.default_decimals} is not one of "
                                 f"decimal_places {list(places)}")
        return self


class DefaultsSpec(_Model):
    """``[defaults]``: what a register says when it does not say."""

    table: TableName = "holding"
    word_order: WordOrderName = "high_first"


class FloatRegionSpec(_Model):
    """``[float_region]``: registers with ``float_alias = true`` are also served as an
    IEEE-754 float at ``base + 2 * address`` (the Eurotherm 2000/3000 upper region), named
    ``NAME.F``: two views of one value."""

    base: Address
    word_order: WordOrderName = "high_first"
    doc: Annotated[Doc, Field(pattern=r"\{name\}")] = "float alias of {name}"


class RegisterSpec(_Model):
    """One ``[[registers]]`` entry: a register (or a 32-bit pair) as the manual gives it."""

    name: RegisterName
    address: Address
    type: RegisterType
    decimals: Decimals | None = None
    scale: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)] | None = None
    word_order: WordOrderName | None = None
    table: TableName | None = None
    access: Literal["ro", "rw", "wo"] = "ro"
    unit: Annotated[Line, Field(max_length=20)] = ""
    min: Number | None = None
    max: Number | None = None
    eeprom: Flag = False
    float_alias: Flag = False
    doc: Doc

    @model_validator(mode="after")
    def _consistent(self) -> RegisterSpec:
        is_float = self.type == "float32"
        if self.decimals is not None and self.scale is not None:
            raise FieldRuleError("scale", "give decimals or scale, not both")
        if is_float and self.decimals is not None:
            raise FieldRuleError("decimals", "a float32 carries its own decimal point: no "
                                 "decimals")
        if is_float and self.scale is not None:
            raise FieldRuleError("scale", "a float32 is already in engineering units: no "
                                 "scale")
        if self.word_order is not None and self.type in ("int16", "uint16"):
            raise FieldRuleError("word_order", f"a {self.type} is one word: word_order "
                                 "applies to 32-bit types only")
        if is_float and self.float_alias:
            raise FieldRuleError("float_alias", "a float32 needs no float alias")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise FieldRuleError("min", f"min {self.min:g} is above max {self.max:g}")
        if self.access != "ro" and (self.min is None or self.max is None):
            raise FieldRuleError("min" if self.min is None else "max",
                                 f"a writable register (access = {self.access!r}) needs min "
                                 "and max: the bounds every write is checked against")
        scaled = is_float or self.decimals is not None or (self.scale not in (None, 1.0))
        if self.access != "ro" and scaled and not self.unit:
            raise FieldRuleError("unit", "a writable register with engineering values needs "
                                 "its unit (degC, %, sccm, ...)")
        return self


class RemoteSelectSpec(_Model):
    """The register that selects the remote (comms) setpoint, and its two values."""

    register_name: RegisterName = Field(alias="register")
    remote: Word
    local: Word

    @model_validator(mode="after")
    def _differ(self) -> RemoteSelectSpec:
        if self.remote == self.local:
            raise FieldRuleError("local", "remote and local must be different values")
        return self


class AutoManualSpec(_Model):
    """The register that selects automatic or manual output, and its two values."""

    register_name: RegisterName = Field(alias="register")
    auto: Word
    manual: Word

    @model_validator(mode="after")
    def _differ(self) -> AutoManualSpec:
        if self.auto == self.manual:
            raise FieldRuleError("manual", "auto and manual must be different values")
        return self


class RateLimitSpec(_Model):
    """The setpoint rate limit: its register and the time base it counts in."""

    register_name: RegisterName = Field(alias="register")
    per: Literal["second", "minute", "hour"]
    # Optional: the register that holds the time base, and the value meaning ``per``; the
    # connect check reads it and refuses another value.
    units_register: RegisterName | None = None
    units_value: Word | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> RateLimitSpec:
        if (self.units_register is None) != (self.units_value is None):
            raise FieldRuleError("units_value" if self.units_value is None
                                 else "units_register",
                                 "give units_register and units_value together")
        return self


class StatusSpec(_Model):
    """A status word: named bits as masks (one bit each), and which mean a fault."""

    register_name: RegisterName = Field(alias="register")
    inverted: RegisterName | None = None  # a register holding the bitwise NOT (a check)
    bits: Annotated[dict[BitName, Annotated[int, Field(strict=True)]], Field(min_length=1)]
    fault: tuple[BitName, ...] = ()

    @model_validator(mode="after")
    def _faults_are_bits(self) -> StatusSpec:
        for i, name in enumerate(self.fault):
            if name not in self.bits:
                raise FieldRuleError(f"fault.{i}", f"{name!r} is not one of bits")
        return self


class GasSpec(_Model):
    """The gas (fluid) selection register, and the number each gas has on it."""

    register_name: RegisterName = Field(alias="register")
    numbers: dict[GasName, Word] = Field(default_factory=dict)


class TcRolesSpec(_Model):
    """``[roles]`` of a temperature controller: which register plays which part."""

    process_value: RegisterName
    working_setpoint: RegisterName
    output: RegisterName
    process_value_scaled: RegisterName | None = None
    remote_setpoint: RegisterName | None = None
    remote_select: RemoteSelectSpec | None = None
    local_setpoint: RegisterName | None = None
    rate_limit: RateLimitSpec | None = None
    manual_output: RegisterName | None = None
    auto_manual: AutoManualSpec | None = None
    alarm_high: RegisterName | None = None
    acknowledge_alarms: RegisterName | None = None
    range_low: RegisterName | None = None
    range_high: RegisterName | None = None
    display_decimals: RegisterName | None = None
    proportional_band: RegisterName | None = None
    integral_time: RegisterName | None = None
    derivative_time: RegisterName | None = None
    output_high: RegisterName | None = None
    output_low: RegisterName | None = None
    error: RegisterName | None = None
    status: StatusSpec | None = None


class MfcRolesSpec(_Model):
    """``[roles]`` of a mass-flow controller."""

    setpoint: RegisterName
    flow: RegisterName
    flow_basis: Literal["sccm", "percent_of_full_scale"] = "sccm"
    setpoint_readback: RegisterName | None = None
    full_scale: RegisterName | None = None
    gas: GasSpec | None = None
    status: StatusSpec | None = None


class O2RolesSpec(_Model):
    """``[roles]`` of an oxygen analyser."""

    o2: RegisterName
    status: StatusSpec | None = None


class _MapFileBase(_Model):
    schema_version: Literal[1]
    defaults: DefaultsSpec = DefaultsSpec()
    float_region: FloatRegionSpec | None = None
    registers: Annotated[tuple[RegisterSpec, ...], Field(min_length=1,
                                                         max_length=MAX_REGISTERS)]


class TcInstrument(InstrumentSpec):
    """``[instrument]`` of a temperature controller."""

    kind: Literal["temperature_controller"]


class MfcInstrument(InstrumentSpec):
    """``[instrument]`` of a mass-flow controller."""

    kind: Literal["mass_flow_controller"]


class O2Instrument(InstrumentSpec):
    """``[instrument]`` of an oxygen analyser."""

    kind: Literal["oxygen_analyser"]


class TcMapFile(_MapFileBase):
    """A temperature controller's map file."""

    instrument: TcInstrument
    roles: TcRolesSpec


class MfcMapFile(_MapFileBase):
    """A mass-flow controller's map file."""

    instrument: MfcInstrument
    roles: MfcRolesSpec


class O2MapFile(_MapFileBase):
    """An oxygen analyser's map file."""

    instrument: O2Instrument
    roles: O2RolesSpec


MODEL_BY_KIND: Final[dict[str, type[_MapFileBase]]] = {
    "temperature_controller": TcMapFile,
    "mass_flow_controller": MfcMapFile,
    "oxygen_analyser": O2MapFile,
}


def _kind_of(data: Any) -> str | None:
    if isinstance(data, dict):
        instrument = data.get("instrument")
        if isinstance(instrument, dict):
            kind = instrument.get("kind")
            return kind if isinstance(kind, str) else None
    return None


# The whole format, chosen by instrument.kind. The loader picks the model itself (for
# plainer error locations); this union is what the JSON Schema describes.
MapFileSpec = Annotated[
    Annotated[TcMapFile, Tag("temperature_controller")]
    | Annotated[MfcMapFile, Tag("mass_flow_controller")]
    | Annotated[O2MapFile, Tag("oxygen_analyser")],
    Discriminator(_kind_of),
]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a map file (draft 2020-12, as pydantic writes it)."""
    schema = TypeAdapter(MapFileSpec).json_schema()
    schema["title"] = "Instrument map file"
    schema["description"] = ("A Modbus instrument's registers and the roles they play for the "
                             "furnace controller (drivers/maps, decision 0015). Addresses are "
                             "0-based PDU addresses as sent on the wire.")
    return schema


def render_json_schema() -> str:
    """``json_schema()`` as the text of ``schema.json`` (sorted keys, two-space indent)."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"



def write_json_schema(path: Path = SCHEMA_PATH) -> None:
    """Rewrite ``schema.json`` from the models (``python -m drivers.maps``)."""
    path.write_text(render_json_schema(), encoding="utf-8")
