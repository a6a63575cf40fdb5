"""Turning user files into validated models, and validation failures into one-line errors.

Not here: the models themselves (``recipe``, ``station``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from controller.text import one_line
from drivers.errors import ConfigurationError

__all__ = [
    "FieldRuleError",
    "first_error",
    "load_model",
    "parse_toml",
    "read_text",
]

M = TypeVar("M", bound=BaseModel)


MAX_FILE_BYTES = 1 << 20  # recipes and stations are a few kB; refuse megabytes
MAX_NESTING = 32  # tables and arrays inside each other; real files nest 3 deep


class FieldRuleError(ValueError):
    """Raised by a model validator that checks several fields: ``field`` (dotted, relative
    to the model) is where the user should look, and ``first_error`` names it."""

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


def first_error(exc: ValidationError, source: str) -> ConfigurationError:
    """The first pydantic error as a one-line ``ConfigurationError`` (file, field, rule)."""
    err = exc.errors()[0]
    parts = list(err["loc"])
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, FieldRuleError):
        parts += cause.field.split(".")
    loc = ".".join(_loc_part(p) for p in parts) or "(top level)"
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
    return ConfigurationError(one_line(msg, 300), source=source, field=loc)


def load_model(model: type[M], text: str, source: str, context: Any = None) -> M:
    """Parse TOML ``text`` into ``model``. Raises ``ConfigurationError`` naming the field."""
    data = parse_toml(text, source)
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise first_error(exc, source) from None
