"""A simulated world's state as plain data (JSON), so that a dry run killed and resumed in
another process goes on with the furnace, gas, sample and instruments where they were.

What is kept: every plain value each part of the world holds (numbers, flags, names, lists
and tables of them, each register bank's values), found by walking the parts' own
attributes, so a value added to a part later is kept without a list to update here. What is
not: references between the parts and to the maps, callables (fault hooks, the journal),
caches, which a world rebuilt from the same spec has already; and the noise generators'
states: the rebuilt world's noise starts again from its seed (noise is noise, and keeping
seven Mersenne states would triple the cost of every checkpoint of a dry run).

``capture(world, t_s)`` and ``restore(world, state)``; ``restore`` refuses (``StateError``)
a state whose parts or values do not match the world's, which then stays as built.
Not responsible for when the state is written or read (the controller's session).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator
from typing import Any, Final, TypeGuard

from simulator.bank import RegisterBank
from simulator.world import SimWorld

__all__ = ["FORMAT", "StateError", "capture", "restore"]

FORMAT: Final = 1
_SCALARS: Final = (float, int, bool, str, type(None))


class StateError(ValueError):
    """A state that does not fit the world (another station, material or software)."""


def _parts(world: SimWorld) -> dict[str, object]:
    """Each part of ``world`` by a stable name, register banks included."""
    parts: dict[str, object] = {"world": world, "furnace": world.furnace,
                                "thermal": world.furnace.thermal, "tube": world.tube,
                                "sample": world.sample}
    for gas, mfc in world.mfcs.items():
        parts[f"mfc:{gas}"] = mfc
    for name in ("o2", "kinetics", "sample_tc", "balance"):
        part = getattr(world, name)
        if part is not None:
            parts[name] = part
    for name, part in list(parts.items()):
        bank = getattr(part, "bank", None)
        if isinstance(bank, RegisterBank):
            parts[f"{name}.bank"] = bank
    return parts


_SLOT_NAMES: dict[type, tuple[str, ...]] = {}


def _slot_names(cls: type) -> tuple[str, ...]:
    """The slots along ``cls``'s classes, in order (looked up once per class)."""
    names = _SLOT_NAMES.get(cls)
    if names is None:
        found: list[str] = []
        for klass in cls.__mro__:
            slots = klass.__dict__.get("__slots__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                if name not in found and name not in ("__dict__", "__weakref__"):
                    found.append(name)
        names = _SLOT_NAMES[cls] = tuple(found)
    return names


def _attributes(obj: object) -> Iterator[tuple[str, Any]]:
    """The attributes ``obj`` stores itself (slots along its classes, then its dict)."""
    names = _slot_names(type(obj))
    for name in names:
        try:
            yield name, getattr(obj, name)
        except AttributeError:  # a slot never set
            continue
    for name, value in getattr(obj, "__dict__", {}).items():
        if name not in names:
            yield name, value


_SKIP: Final = object()  # a value that is not kept


def _encode(value: Any) -> Any:
    """A plain value as JSON-able data: a scalar as itself, anything else as ``[kind,
    payload]``; ``_SKIP`` for a value that is not kept (a reference, a callable, a cache)."""
    kind = type(value)
    if kind is float or kind is int or kind is bool or value is None or kind is str:
        return value
    if isinstance(value, enum.Enum):
        return ["enum", value.name]
    if isinstance(value, _SCALARS):
        return value
    # Containers of plain values only, and not empty ones (an empty list of hooks or an
    # empty cache says nothing a freshly built world does not say).
    if (isinstance(value, list | tuple) and value
            and all(isinstance(v, _SCALARS) for v in value)):
        return ["list" if isinstance(value, list) else "tuple", list(value)]
    if isinstance(value, dict) and value and all(
            isinstance(k, str) and isinstance(v, _SCALARS) for k, v in value.items()):
        return ["dict", dict(value)]
    return _SKIP


def _kind(encoded: Any) -> str:
    return str(encoded[0]) if isinstance(encoded, list) else "v"


def capture(world: SimWorld, t_s: float) -> dict[str, Any]:
    """``world``'s state at process time ``t_s`` (the world's own ``now_s`` may count from
    another origin)."""
    parts: dict[str, dict[str, Any]] = {}
    for name, part in _parts(world).items():
        kept = {}
        for attr, value in _attributes(part):
            encoded = _encode(value)
            if encoded is not _SKIP:
                kept[attr] = encoded
        parts[name] = kept
    return {"format": FORMAT, "t_s": t_s, "parts": parts}


def restore(world: SimWorld, state: dict[str, Any]) -> float:
    """Put ``state`` (from ``capture``) into ``world``, a world freshly built from the same
    spec; its clock is set to the state's process time, which is returned. Raises
    ``StateError``, before changing anything, if the state does not fit the world: other
    parts or values, a value of another type than the world's own (a string, a table or
    nothing where a number was, a list of another length, an enum it has no member of), a
    number that is not one (NaN, or infinite where the world's is finite), another
    integration step."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise StateError("not a simulated world's state of this software")
    t_s: object = state.get("t_s")
    if not _number(t_s) or not math.isfinite(t_s):
        raise StateError(f"the state's time is not a number of seconds: {t_s!r}")
    parts = _parts(world)
    saved = state.get("parts")
    if not isinstance(saved, dict) or set(saved) != set(parts):
        raise StateError("the state is of another station (its parts differ)")
    plan: list[tuple[object, str, Any, Any]] = []
    for name, part in parts.items():
        current = {attr: _encode(value) for attr, value in _attributes(part)}
        # Every value the state holds is one this world has, and every single value this
        # world has (not a container: those are kept only when they hold plain values) is
        # in the state: else it is another software's.
        singles = {attr for attr, enc in current.items()
                   if enc is not _SKIP and _kind(enc) in ("v", "enum")}
        mine = saved[name]
        if (not isinstance(mine, dict) or not set(mine) <= set(current)
                or not singles <= set(mine)):
            raise StateError(f"the state's {name} holds other values than this software's")
        for attr, encoded in mine.items():
            now = getattr(part, attr)
            if not _fits(encoded, now):
                raise StateError(f"the state's {name}.{attr} is of another kind")
            plan.append((part, attr, encoded, now))
    if saved["world"].get("substep_s") != world.substep_s:
        raise StateError("the state's world integrates in other steps than this software's")
    for part, attr, encoded, now in plan:
        _put(part, attr, encoded, now)
    world.now_s = float(t_s)
    return float(t_s)


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fits_scalar(saved: Any, now: Any) -> bool:
    """Whether the plain value ``saved`` may stand where ``now`` (the world's own) is: of
    its type (an int for a float too; anything plain for a None, which says nothing), a
    number (not NaN; infinite only where the world's is the same)."""
    if isinstance(now, enum.Enum) or not isinstance(saved, _SCALARS):
        return False
    if _number(saved) and not math.isfinite(saved) and saved != now:
        return False
    if now is None:
        return saved is None or _number(saved)
    if isinstance(now, bool) or isinstance(saved, bool):
        return type(saved) is type(now)
    if isinstance(now, float):
        return _number(saved)
    return type(saved) is type(now)


def _fits(encoded: Any, now: Any) -> bool:
    """Whether ``encoded`` (``_encode``'s form) may replace the world's value ``now``."""
    if not isinstance(encoded, list):
        return _fits_scalar(encoded, now)
    if len(encoded) != 2 or not isinstance(encoded[0], str):
        return False
    kind, value = encoded
    if kind == "enum":
        return (isinstance(now, enum.Enum) and isinstance(value, str)
                and value in type(now).__members__)
    if kind in ("list", "tuple"):
        return (isinstance(now, list if kind == "list" else tuple)
                and not isinstance(now, enum.Enum) and isinstance(value, list)
                and len(value) == len(now)
                and all(_fits_scalar(v, n) for v, n in zip(value, now, strict=True)))
    if kind == "dict":
        return (isinstance(now, dict) and isinstance(value, dict) and set(value) == set(now)
                and all(_fits_scalar(v, now[k]) for k, v in value.items()))
    return False


def _put(part: object, attr: str, encoded: Any, now: Any) -> None:
    if not isinstance(encoded, list):
        setattr(part, attr, encoded)
        return
    kind, value = encoded
    if kind == "enum":
        setattr(part, attr, type(now)[value])
    elif kind == "list":
        now[:] = value  # in place: a part may share its list (a bank's values)
    elif kind == "tuple":
        setattr(part, attr, tuple(value))
    else:  # "dict"
        now.clear()
        now.update(value)
