"""Turning user files into validated models, and validation failures into one-line errors:
the one place that words a pydantic error for people, for recipes and stations alike.

Not here: the models themselves (``schema``, ``station``), and how a recipe names its
fields (``schema``, through ``FieldNames``).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from controller.text import one_line
from drivers.errors import ConfigurationError

__all__ = [
    "FieldNames",
    "FieldRuleError",
    "load_model",
    "one_line_error",
    "parse_toml",
    "read_text",
]

M = TypeVar("M", bound=BaseModel)


MAX_FILE_BYTES = 1 << 20  # recipes and stations are a few kB; refuse megabytes
MAX_NESTING = 32  # tables and arrays inside each other; real files nest 3 deep


class FieldRuleError(ValueError):
    """Raised by a model validator that checks several fields: ``field`` (dotted, relative
    to the model) is where the user should look, and ``one_line_error`` names it."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(rule)
        self.field = field


def read_text(path: Path) -> str:
    """Read a UTF-8 text file of at most ``MAX_FILE_BYTES``. Raises ``ConfigurationError``
    if it cannot be read, is not a regular file (a FIFO or a device would block or never
    end) or is too large."""
    try:
        if path.exists() and not path.is_dir() and not path.is_file():
            raise ConfigurationError("not a regular file", source=str(path))
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ConfigurationError(f"larger than {MAX_FILE_BYTES // 1024} KiB; not a "
                                     "recipe or station file", source=str(path))
        return data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigurationError("file not found", source=str(path)) from None
    except IsADirectoryError:
        raise ConfigurationError("is a directory, not a file", source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"not UTF-8 text ({exc.reason})", source=str(path)) from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read ({exc.strerror})", source=str(path)) from None


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """Parse TOML. Raises ``ConfigurationError`` with the line and column of a syntax error."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"not valid TOML: {exc}", source=source) from None
    except (RecursionError, ValueError) as exc:  # absurd nesting, 5000-digit integers
        raise ConfigurationError(f"not valid TOML: {one_line(str(exc))}",
                                 source=source) from None
    if _depth(data) > MAX_NESTING:
        raise ConfigurationError(f"nested more than {MAX_NESTING} levels deep",
                                 source=source)
    return data


def _depth(value: Any) -> int:
    """Nesting depth of tables and arrays, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_NESTING:
                break
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return "<a value too large to show>"
    return one_line(text)


def _loc_part(part: Any) -> str:
    text = str(part)
    return text if re.fullmatch(r"[A-Za-z0-9_.\[\]-]+", text) else _safe_repr(text)


class FieldNames:
    """How a file's fields are named in its error messages.

    This default, for station files, joins pydantic's location with dots
    (``mfc.0.full_scale_sccm``) and gives no hints. A file format with friendlier names
    (recipes: ``stages[preheat].steps[3].to_c``) overrides ``path``; one that wants a "did
    you mean" for a misspelt field overrides ``model_at``; one with a discriminated union
    lists its tags in ``kinds``, and a missing or unknown tag is reported with that list.
    """

    kinds: tuple[str, ...] = ()

    def path(self, loc: Sequence[str | int]) -> str:
        """The field as the user reads it, from pydantic's location; "" for the top level."""
        return ".".join(_loc_part(p) for p in loc)

    def model_at(self, loc: Sequence[str | int]) -> type[BaseModel] | None:
        """The model that holds the last element of ``loc``; None gives no hint."""
        return None


_DOTTED = FieldNames()


def one_line_error(exc: ValidationError, source: str, names: FieldNames | None = None
                   ) -> ConfigurationError:
    """A pydantic failure as one line naming the file, the field and the rule.

    The first error is reported, unless an unknown field is a misspelling of a missing one
    (``to = 220`` for ``to_c``): that one is reported, with "did you mean 'to_c'?".
    ``names`` says how fields are named (default: dotted, no hints; see ``FieldNames``).
    """
    names = names or _DOTTED
    errors = exc.errors()
    err = _prefer_misspelling(errors, names)
    loc: list[str | int] = list(err["loc"])
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, FieldRuleError):
        loc += cause.field.split(".")
    rule = _rule(err)
    if names.kinds and err["type"] in ("union_tag_not_found", "union_tag_invalid"):
        tag = str(err["ctx"]["discriminator"]).strip("'")
        kinds = ", ".join(names.kinds)
        if err["type"] == "union_tag_not_found":
            rule = f"required field {tag!r} is missing (one of: {kinds})"
        else:
            got = err["input"].get(tag) if isinstance(err["input"], dict) else None
            rule = f"unknown {tag} {got!r} (one of: {kinds})"
            loc.append(tag)
    elif err["type"] == "extra_forbidden" and loc:
        hint = _suggest(str(loc[-1]), names.model_at(loc))
        if hint:
            rule = f"{rule}; did you mean {hint!r}?"
    return ConfigurationError(rule, source=source, field=names.path(loc) or "(top level)")


def _rule(err: Any) -> str:
    """One pydantic error's message, reworded for people, with the value given."""
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field (not allowed here)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    elif msg.startswith("Value error, "):
        msg = msg.removeprefix("Value error, ")
    if "input" in err and err["type"] not in ("missing", "extra_forbidden") and not isinstance(
        err["input"], Mapping | list
    ):
        msg = f"{msg} (got {_safe_repr(err['input'])})"
    return one_line(msg, 300)


def _prefer_misspelling(errors: list[Any], names: FieldNames) -> Any:
    """For ``to = 220`` instead of ``to_c``: the unknown ``to`` (it gets a hint), not the
    missing ``to_c``; otherwise the first error."""
    missing = {tuple(e["loc"]) for e in errors if e["type"] == "missing"}
    for e in errors:
        loc = tuple(e["loc"])
        if e["type"] == "extra_forbidden" and loc:
            hint = _suggest(str(loc[-1]), names.model_at(loc))
            if hint is not None and (*loc[:-1], hint) in missing:
                return e
    return errors[0]


def _suggest(name: str, model: type[BaseModel] | None) -> str | None:
    """The field of ``model`` that ``name`` was probably meant to be: one it is the start
    of (``to`` -> ``to_c``), else a close spelling; None if there is none."""
    if model is None:
        return None
    fields = list(model.model_fields)
    prefixed = [f for f in fields if f.startswith(name + "_")]
    if prefixed:
        return prefixed[0]
    close = difflib.get_close_matches(name, fields, n=1, cutoff=0.6)
    return close[0] if close else None


def load_model(model: type[M], text: str, source: str, context: Any = None) -> M:
    """Parse TOML ``text`` into ``model``. Raises ``ConfigurationError`` naming the field."""
    data = parse_toml(text, source)
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise one_line_error(exc, source) from None
