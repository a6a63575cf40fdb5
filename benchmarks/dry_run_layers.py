"""The per-layer breakdown of a cProfile of a dry run, for ``benchmarks/dry_run.py``.

Time is attributed by the file a function lives in (paths relative to the measured tree):

- physics: ``simulator/`` except the register bank and the in-process bus (thermal, kinetics,
  sample, the instrument models, gas, world, faults, journal);
- registers+bus: ``simulator/bank.py``, ``simulator/inprocess.py``, ``drivers/registers.py``,
  ``drivers/bus.py``, ``drivers/modbus_bus.py``;
- drivers: the rest of ``drivers/`` (each device's ``driver.py`` and register map as data,
  ``drivers/balance/*``, roles, errors);
- records: ``controller/records/``;
- controller: the rest of ``controller/`` (run/, session, recorder, recipe, clock...).

Standard-library, builtin and third-party functions have no layer of their own: their time
goes to the layers of their callers, in proportion to the time each caller's calls took
(pstats' per-caller figures), walking up through callers that are themselves outside the
project. What reaches no project caller (the event loop, the harness) stays "other".
Not responsible for running anything (``dry_run.py`` and ``dry_run_child.py`` do).
"""

from __future__ import annotations

import os
import pstats
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

LAYERS = ("physics", "registers+bus", "drivers", "controller", "records")
OTHER = "other"

REGISTERS_BUS = frozenset({"simulator/bank.py", "simulator/inprocess.py", "drivers/registers.py",
                           "drivers/bus.py", "drivers/modbus_bus.py"})
PACKAGES = ("controller", "drivers", "simulator")

Func = tuple[str, int, str]  # pstats' key: (filename, line, function name)


def layer_of_path(rel: str) -> str | None:
    """The layer of a project file (posix path relative to the tree), None if not one of ours."""
    if rel in REGISTERS_BUS:
        return "registers+bus"
    top, _, rest = rel.partition("/")
    if not rest:
        return None
    if top == "simulator":
        return "physics"
    if top == "drivers":
        return "drivers"
    if top == "controller":
        return "records" if rest.startswith("records/") else "controller"
    return None


def coverage(tree: Path) -> tuple[Counter[str], list[str]]:
    """Files per layer over every importable package of ``tree``, and the unmapped ones.

    A package is any top-level directory with an ``__init__.py`` except tests/benchmarks, so a
    new top-level package shows up as unmapped instead of silently landing in "other".
    """
    counts: Counter[str] = Counter()
    unmapped: list[str] = []
    for pkg in sorted(p.parent for p in tree.glob("*/__init__.py")):
        if pkg.name in ("tests", "benchmarks"):
            continue
        for path in sorted(pkg.rglob("*.py")):
            rel = path.relative_to(tree).as_posix()
            layer = layer_of_path(rel)
            if layer is None:
                unmapped.append(rel)
            else:
                counts[layer] += 1
    return counts, unmapped


@dataclass(frozen=True, slots=True)
class Breakdown:
    """Seconds of tottime per layer: the project's own code, and what it spent in callees
    outside the project (stdlib, builtins, third party)."""

    own_s: dict[str, float]
    called_s: dict[str, float]
    total_s: float
    top: list[tuple[Func, int, float, str]]  # function, calls, tottime s, layer label


class Attributor:
    """Layers of the functions of one profile, including the caller-weighted mix of the
    functions outside the project."""

    def __init__(self, stats: pstats.Stats, tree: Path) -> None:
        self.stats = stats.stats  # type: ignore[attr-defined]  # typeshed omits it
        self.tree = str(tree.resolve()) + os.sep
        self._by_file: dict[str, str | None] = {}
        self._mix: dict[Func, dict[str, float]] = {}

    def layer(self, func: Func) -> str | None:
        """The layer of a project function, None for anything else."""
        filename = func[0]
        if filename not in self._by_file:
            layer = None
            if filename.endswith(".py") and os.path.isabs(filename):
                real = os.path.realpath(filename)
                if real.startswith(self.tree):
                    layer = layer_of_path(Path(real[len(self.tree):]).as_posix())
            self._by_file[filename] = layer
        return self._by_file[filename]

    def mix(self, func: Func, active: frozenset[Func] = frozenset()) -> dict[str, float]:
        """Fractions of ``func``'s own time per layer (its callers' layers if it has none)."""
        layer = self.layer(func)
        if layer is not None:
            return {layer: 1.0}
        if func in self._mix:
            return self._mix[func]
        callers = self.stats[func][4] if func in self.stats else {}
        weights = {c: float(v[2]) for c, v in callers.items() if c not in active}
        total = sum(weights.values())
        if func[0] == "<string>" or total <= 0.0:  # the harness (-c), or the root of the calls
            return {OTHER: 1.0}
        out: dict[str, float] = defaultdict(float)
        for caller, weight in weights.items():
            for name, share in self.mix(caller, active | {func}).items():
                out[name] += share * weight / total
        result = dict(out)
        self._mix[func] = result
        return result

    def label(self, func: Func) -> str:
        """The layer of a function for a table: its own, or ``stdlib→LAYER`` (main caller)."""
        layer = self.layer(func)
        if layer is not None:
            return layer
        mix = self.mix(func)
        name, share = max(mix.items(), key=lambda item: item[1])
        return f"stdlib→{name}" + ("" if share > 0.995 else f" {share:.0%}")

    def breakdown(self, top_n: int) -> Breakdown:
        """Attribute every function's tottime; the ``top_n`` functions by tottime."""
        own: dict[str, float] = defaultdict(float)
        called: dict[str, float] = defaultdict(float)
        for func, (_, _, tt, _, _) in self.stats.items():
            layer = self.layer(func)
            if layer is not None:
                own[layer] += tt
                continue
            for name, share in self.mix(func).items():
                called[name] += tt * share
        ranked = sorted(self.stats.items(), key=lambda item: item[1][2], reverse=True)[:top_n]
        top = [(func, int(v[1]), float(v[2]), self.label(func)) for func, v in ranked]
        total = sum(own.values()) + sum(called.values())
        return Breakdown(dict(own), dict(called), total, top)


def where(func: Func, tree: Path) -> str:
    """A short ``file:line(function)`` for a table row."""
    filename, line, name = func
    if filename == "~":  # builtins: pstats writes "<built-in method ...>" as the name
        return name
    path = os.path.realpath(filename)
    root = str(tree.resolve()) + os.sep
    if path.startswith(root):
        path = path[len(root):]
    else:
        for marker in ("site-packages" + os.sep, "lib" + os.sep + "python3"):
            if marker in path:
                path = path.split(marker, 1)[1]
                if marker.startswith("lib"):  # "lib/python3.11/x.py" -> "x.py"
                    path = path.split(os.sep, 1)[-1]
                break
    return f"{path}:{line}({name})"


def layer_table(result: Breakdown, plain_us_per_cycle: float) -> Iterable[str]:
    """Rows: seconds and share per layer, and the plain run's µs per cycle split the same way."""
    yield (f"  {'layer':<15}{'own code s':>11}{'+ stdlib s':>12}{'total s':>10}{'share':>8}"
           f"{'≈ µs/cycle':>12}")
    for name in (*LAYERS, OTHER):
        own = result.own_s.get(name, 0.0)
        called = result.called_s.get(name, 0.0)
        share = (own + called) / result.total_s if result.total_s else 0.0
        yield (f"  {name:<15}{own:>11.2f}{called:>12.2f}{own + called:>10.2f}{share:>8.1%}"
               f"{share * plain_us_per_cycle:>12.0f}")
    yield (f"  {'total':<15}{sum(result.own_s.values()):>11.2f}"
           f"{sum(result.called_s.values()):>12.2f}{result.total_s:>10.2f}{1:>8.0%}"
           f"{plain_us_per_cycle:>12.0f}")
