"""Turning user files into validated models, and validation failures into one-line errors.

Not here: the models themselves (``recipe``, ``station``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from drivers.errors import ConfigurationError

__all__ = ["first_error", "load_model", "parse_toml", "read_text"]

M = TypeVar("M", bound=BaseModel)


def read_text(path: Path) -> str:
    """Read a UTF-8 text file. Raises ``ConfigurationError`` if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
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
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"not valid TOML: {exc}", source=source) from None


def first_error(exc: ValidationError, source: str) -> ConfigurationError:
    """The first pydantic error as a one-line ``ConfigurationError`` (file, field, rule)."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
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
        msg = f"{msg} (got {err['input']!r})"
    return ConfigurationError(msg, source=source, field=loc)


def load_model(model: type[M], text: str, source: str, context: Any = None) -> M:
    """Parse TOML ``text`` into ``model``. Raises ``ConfigurationError`` naming the field."""
    data = parse_toml(text, source)
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise first_error(exc, source) from None
