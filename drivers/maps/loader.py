"""Loading instrument map files: TOML -> pydantic -> the checks across fields -> InstrumentMap.

Not here: the models (``schema``), the role bindings (``binding``) and what the safety
design needs of a temperature controller (``safety``). Every refusal is one
``MapFileError`` whose text is one line naming the file, the field
(``registers[3].address``, ``roles.rate_limit.register``) and the rule.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, get_args

from pydantic import BaseModel, ValidationError

from drivers.maps.binding import RoleChecker, mfc_roles, o2_roles, tc_roles
from drivers.maps.instrument import (
    InstrumentKind,
    InstrumentMap,
    ManualReference,
    MapFileError,
    Roles,
)
from drivers.maps.schema import (
    KINDS,
    MODEL_BY_KIND,
    FieldRuleError,
    MfcMapFile,
    O2MapFile,
    RegisterSpec,
    TcMapFile,
)
from drivers.registers import Access, DType, Register, RegisterMap, Table, WordOrder

__all__ = [
    "BUILTIN_MAPS",
    "BUILTIN_PREFIX",
    "MAX_FILE_BYTES",
    "MapFileError",
    "builtin_map_text",
    "load_builtin_map",
    "load_map_file",
    "load_map_text",
    "read_map_file",
]

MAX_FILE_BYTES: Final = 256 * 1024  # the 3216's map is ~10 kB
BUILTIN_PREFIX: Final = "builtin:"
# The shipped map files (drivers/maps/<name>.toml), by the name a station gives them.
BUILTIN_MAPS: Final = ("alicat", "bronkhorst", "eurotherm2400", "eurotherm3216",
                       "eurotherm3500", "o2-analyser")
_FOUR_X_LOW, _FOUR_X_HIGH = 40_001, 49_999


# ---------------------------------------------------------------------------- reading


def _read(path: Path) -> str:
    source = str(path)
    try:
        if path.exists() and not path.is_dir() and not path.is_file():
            raise MapFileError("not a regular file", source=source)
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise MapFileError("file not found", source=source) from None
    except IsADirectoryError:
        raise MapFileError("is a directory, not a map file", source=source) from None
    except OSError as exc:
        raise MapFileError(f"cannot read ({exc.strerror})", source=source) from None
    if len(data) > MAX_FILE_BYTES:
        raise MapFileError(f"larger than {MAX_FILE_BYTES // 1024} KiB; not a map file",
                           source=source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MapFileError(f"not UTF-8 text ({exc.reason})", source=source) from None


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError, absurd nesting or digits
        raise MapFileError(f"not valid TOML: {_one_line(str(exc))}", source=source) from None


# ------------------------------------------------------------- pydantic, in one line


# The names pydantic gives the members of a union in an error's location
# (decimals: int | "configured" -> "constrained-int", "literal['configured']"): not fields.
_UNION_TAG: Final = re.compile(r"^(constrained-\w+|literal\[.*\]|function-[\w-]+\[.*\]|"
                               r"int|float|str|bool|none|(tuple|dict|list)\[.*\])$")


def _path(loc: Sequence[str | int]) -> str:
    """``("registers", 3, "address")`` -> ``registers[3].address``."""
    out = ""
    for part in loc:
        if isinstance(part, str) and _UNION_TAG.match(part):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        else:
            text = part if all(c.isalnum() or c in "_.-" for c in part) else repr(part)
            out += f".{text}" if out else text
    return _one_line(out, 120)


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        fields = {info.alias or name: info for name, info in model.model_fields.items()}
        info = fields.get(part)
        model = None if info is None else _inner_model(info.annotation)
    return model


def _rule(err: Mapping[str, Any]) -> str:
    """One pydantic error's message, reworded for people, with the value given."""
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field (not allowed here)"
    if kind == "missing":
        return "required field is missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    value = err.get("input")
    if "input" in err and not isinstance(value, dict | list):
        try:
            shown = repr(value)
        except ValueError:  # an integer too long to print
            shown = "a number too large to show"
        if shown not in msg:
            msg = f"{msg} (got {_one_line(shown, 60)})"
    return msg


def _from_validation(exc: ValidationError, model: type[BaseModel], source: str
                     ) -> MapFileError:
    err = exc.errors()[0]
    loc: list[str | int] = list(err["loc"])
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, FieldRuleError):
        loc += [int(p) if p.isdigit() else p for p in cause.field.split(".")]
    rule = _rule(err)
    if err["type"] == "extra_forbidden" and loc:
        holder = _model_at(model, loc[:-1])
        if holder is not None:
            names = [info.alias or name for name, info in holder.model_fields.items()]
            close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
            if close:
                rule = f"{rule}; did you mean {close[0]!r}?"
    return MapFileError(_one_line(rule), source=source, field=_path(loc) or "(top level)")


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True, slots=True)
class _Entry:
    """A register as built, with where it came from in the file."""

    reg: Register
    index: int  # registers[index]
    alias: bool  # the float alias of registers[index]

    @property
    def field(self) -> str:
        return f"registers[{self.index}]" + (".float_alias" if self.alias else "")


def _scale(spec: RegisterSpec, decimals: int | None) -> float:
    if spec.decimals == "configured":
        return 10.0 ** -(decimals or 0)
    if spec.decimals is not None:
        return 10.0 ** -spec.decimals
    return spec.scale if spec.scale is not None else 1.0


def _build(doc: TcMapFile | MfcMapFile | O2MapFile, decimals: int | None) -> list[_Entry]:
    entries: list[_Entry] = []
    aliases: list[_Entry] = []
    region = doc.float_region
    for i, spec in enumerate(doc.registers):
        dtype = DType(spec.type)
        wide = dtype in (DType.UINT32, DType.FLOAT32)
        order = spec.word_order or (doc.defaults.word_order if wide else "high_first")
        table = Table(spec.table or doc.defaults.table)
        access = Access(spec.access)
        reg = Register(spec.name, spec.address, dtype, scale=_scale(spec, decimals),
                       unit=spec.unit, access=access, minimum=spec.min, maximum=spec.max,
                       word_order=WordOrder(order), table=table, doc=spec.doc)
        entries.append(_Entry(reg, i, alias=False))
        if spec.float_alias and region is not None:
            alias = Register(f"{spec.name}.F", region.base + 2 * spec.address, DType.FLOAT32,
                             unit=spec.unit, access=access, minimum=spec.min,
                             maximum=spec.max, word_order=WordOrder(region.word_order),
                             table=table, doc=region.doc.replace("{name}", spec.name))
            aliases.append(_Entry(alias, i, alias=True))
    return entries + aliases


def _check_registers(doc: TcMapFile | MfcMapFile | O2MapFile, entries: list[_Entry],
                     source: str) -> None:
    def fail(field: str, rule: str) -> MapFileError:
        return MapFileError(rule, source=source, field=field)

    high_ok = doc.instrument.high_addresses
    for i, spec in enumerate(doc.registers):
        if spec.decimals == "configured" and doc.instrument.decimal_places is None:
            raise fail(f"registers[{i}].decimals", 'decimals = "configured" needs '
                       "instrument.decimal_places (the decimal places the instrument may "
                       "be configured to show)")
        if spec.float_alias and doc.float_region is None:
            raise fail(f"registers[{i}].float_alias", "float_alias needs a [float_region] "
                       "table (where the floats start)")
        if not high_ok and _FOUR_X_LOW <= spec.address <= _FOUR_X_HIGH:
            raise fail(f"registers[{i}].address",
                       f"{spec.address} looks like the 1-based 4xxxx holding-register "
                       f"notation (register {spec.address} is PDU address "
                       f"{spec.address - _FOUR_X_LOW}); give the 0-based PDU address, or set "
                       "instrument.high_addresses = true if the device really uses "
                       "40001-49999")
    names: dict[str, _Entry] = {}
    words: dict[tuple[Table, int], _Entry] = {}
    anywhere: dict[int, _Entry] = {}
    for entry in entries:
        reg = entry.reg
        first = names.get(reg.name)
        if first is not None:
            what = "its float alias is" if entry.alias else "two registers are"
            raise fail(entry.field if entry.alias else f"{entry.field}.name",
                       f"{what} named {reg.name!r}, like {first.field}")
        names[reg.name] = entry
        last = reg.address + reg.word_count - 1
        if last > 0xFFFF:
            if entry.alias:
                raise fail(entry.field, f"the float alias of {reg.name[:-2]} at "
                           f"{reg.address} needs words {reg.address}-{last}: past 65535")
            raise fail(f"{entry.field}.address", f"a {reg.dtype} at {reg.address} needs "
                       f"words {reg.address}-{last}: the second word passes 65535")
        for address in range(reg.address, last + 1):
            other = words.get((reg.table, address))
            where = entry.field if entry.alias else f"{entry.field}.address"
            if other is not None:
                raise fail(where, f"{reg.name} (words {reg.address}-{last}) overlaps "
                           f"{other.reg.name} ({other.field}) at {address} in the "
                           f"{reg.table} table")
            other = anywhere.get(address)
            if other is not None:
                raise fail(where, f"{reg.name} ({reg.table}) shares address {address} with "
                           f"{other.reg.name} ({other.reg.table}): the register primitives "
                           "keep one address space for both tables")
            words[(reg.table, address)] = entry
            anywhere[address] = entry


# --------------------------------------------------------------------------- loading


def _validate(data: dict[str, Any], source: str) -> TcMapFile | MfcMapFile | O2MapFile:
    instrument = data.get("instrument")
    if not isinstance(instrument, dict):
        raise MapFileError("required table is missing" if instrument is None else
                           "must be a table ([instrument])", source=source,
                           field="instrument")
    kind = instrument.get("kind")
    if kind not in KINDS:
        rule = ("required field is missing" if kind is None else
                f"unknown kind {_one_line(repr(kind), 60)}")
        raise MapFileError(f"{rule} (one of: {', '.join(KINDS)})", source=source,
                           field="instrument.kind")
    model = MODEL_BY_KIND[kind]
    try:
        doc = model.model_validate(data)
    except ValidationError as exc:
        raise _from_validation(exc, model, source) from None
    if not isinstance(doc, TcMapFile | MfcMapFile | O2MapFile):  # pragma: no cover
        raise TypeError(type(doc).__name__)
    return doc


def load_map_text(text: str, source: str) -> InstrumentMap:
    """Load a map file's TOML ``text``; ``source`` names it in messages.

    Raises ``MapFileError`` (one line: source, field, rule) for anything the format, the
    register layout or the role bindings forbid. The safety completeness of a temperature
    controller is a separate check (``drivers.maps.check_safety``).
    """
    doc = _validate(_parse(text, source), source)
    places = doc.instrument.decimal_places
    default = doc.instrument.default_decimals
    entries = _build(doc, default)
    _check_registers(doc, entries, source)
    eeprom = frozenset(e.reg.name for e in entries if doc.registers[e.index].eeprom)
    regs = {e.reg.name: e.reg for e in entries}
    specs = {spec.name: spec for spec in doc.registers}
    check = RoleChecker(regs, specs, eeprom, source)
    roles: Roles
    if isinstance(doc, TcMapFile):
        roles = tc_roles(doc, check)
    elif isinstance(doc, MfcMapFile):
        roles = mfc_roles(doc, check)
    else:
        roles = o2_roles(doc, check)
    model = doc.instrument.model
    variants = {d: RegisterMap(model, tuple(e.reg for e in _build(doc, d)))
                for d in places or ()}
    registers = variants[default] if default is not None else RegisterMap(
        model, tuple(e.reg for e in entries))
    manual = doc.instrument.manual
    return InstrumentMap(
        source=source, model=model, kind=InstrumentKind(doc.instrument.kind),
        manual=ManualReference(manual.document, manual.section, manual.url),
        notes=doc.instrument.notes, registers=registers, roles=roles, eeprom=eeprom,
        aliases=MappingProxyType({e.reg.name: doc.registers[e.index].name
                                  for e in entries if e.alias}),
        decimals=default, decimal_places=tuple(places or ()),
        high_addresses=doc.instrument.high_addresses,
        variants=MappingProxyType(variants))


def load_map_file(path: str | Path) -> InstrumentMap:
    """Load and check the instrument map file at ``path``.

    Raises ``MapFileError`` (a ``ConfigurationError``: exit 2, one line naming the file,
    the field and the rule) if it cannot be read or is not a valid map.
    """
    return load_map_text(read_map_file(path), str(path))


def read_map_file(path: str | Path) -> str:
    """The text of the map file at ``path`` (what a batch freezes), read as
    ``load_map_file`` reads it. Raises ``MapFileError`` if it cannot be read."""
    return _read(Path(path))


def builtin_map_text(name: str) -> str:
    """The TOML text of the shipped map ``name`` (one of ``BUILTIN_MAPS``).

    Raises ``MapFileError`` for an unknown name.
    """
    if name not in BUILTIN_MAPS:
        raise MapFileError(f"no built-in map {name!r} (one of: {', '.join(BUILTIN_MAPS)})",
                           source=f"{BUILTIN_PREFIX}{name}")
    return resources.files("drivers.maps").joinpath(f"{name}.toml").read_text("utf-8")


@cache
def load_builtin_map(name: str) -> InstrumentMap:
    """The shipped map ``name``, loaded once (``source`` is ``builtin:<name>``)."""
    return load_map_text(builtin_map_text(name), f"{BUILTIN_PREFIX}{name}")
