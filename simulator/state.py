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
from collections.abc import Iterator
from typing import Any, Final

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
    ``StateError``, before changing anything, if the state does not fit the world."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise StateError("not a simulated world's state of this software")
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
            kind, now = _kind(encoded), getattr(part, attr)
            fits = {"v": isinstance(now, _SCALARS) and not isinstance(now, enum.Enum),
                    "enum": isinstance(now, enum.Enum), "list": isinstance(now, list),
                    "tuple": isinstance(now, tuple), "dict": isinstance(now, dict)}
            if not fits.get(kind, False):
                raise StateError(f"the state's {name}.{attr} is of another kind")
            plan.append((part, attr, encoded, now))
    for part, attr, encoded, now in plan:
        _put(part, attr, encoded, now)
    t_s = float(state["t_s"])
    world.now_s = t_s
    return t_s


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
