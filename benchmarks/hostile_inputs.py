"""How long ``furnace validate`` takes on hostile inputs (faults.md §2.7 R1-R6: "quickly").

The contract itself (exit 0 with files that really compile, or exit 2 with one line) is
tested in ``tests/integration/test_hostile_inputs.py``; the time it takes is measured here,
against the budgets those tests once asserted with the wall clock:

- a recipe of 10^5 dwell steps (6 MB): within 30 s;
- a 50 MB recipe file (a comment, a string, random bytes): within 30 s each;
- 40 000 stages validated at model level (``Recipe.model_validate``): within 6 s (a
  quadratic check took about 17 s; the linear one well under 2 s).

Prints one line per input (seconds, budget, exit code) and exits 1 if any is over budget.
Run: python benchmarks/hostile_inputs.py
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import tomli_w

from controller.cli import main as furnace
from controller.recipe.schema import Recipe

ROOT = Path(__file__).resolve().parent.parent
RECIPE_FILE = ROOT / "profiles" / "pop70-600-1600.toml"
RECIPE_TEXT = RECIPE_FILE.read_text(encoding="utf-8")


def _validate(path: Path) -> tuple[float, int]:
    """Seconds and exit code of ``furnace validate PATH`` in this process (output dropped)."""
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = furnace(["validate", str(path)])
    return time.perf_counter() - started, code


def _many_stages() -> tuple[float, int]:
    stages = [{"name": f"s{i}", "atmosphere": "Ar",
               "steps": [{"kind": "dwell", "duration_min": 1, "band_c": 5}]}
              for i in range(40_000)]
    stages[-1]["steps"] = [{"kind": "end"}]
    started = time.perf_counter()
    try:
        Recipe.model_validate({"schema_version": 1, "name": "n", "sample": "S",
                               "stages": stages})
        code = 0
    except ValueError:
        code = 2  # rejected by a limit: also within the contract
    return time.perf_counter() - started, code


def main() -> int:
    over = 0
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cases: list[tuple[str, float, Path | None]] = []
        doc = copy.deepcopy(tomllib.loads(RECIPE_TEXT))
        doc["stages"][3]["steps"][1:1] = [{"kind": "dwell", "duration_min": 1, "band_c": 5}
                                          ] * 100_000
        steps = tmp / "100k-steps.toml"
        steps.write_text(tomli_w.dumps(doc), encoding="utf-8")
        cases.append(("recipe of 10^5 steps", 30.0, steps))
        size = 50 * 1024 * 1024
        for kind, data in (
                ("comment", (RECIPE_TEXT + "# " + "x" * size + "\n").encode()),
                ("string", RECIPE_TEXT.replace('description = "',
                                               'description = "' + "x" * size, 1).encode()),
                ("binary", os.urandom(size))):
            path = tmp / f"50mb-{kind}.toml"
            path.write_bytes(data)
            cases.append((f"50 MB file ({kind})", 30.0, path))
        cases.append(("40 000 stages, model level", 6.0, None))
        for name, budget_s, path in cases:
            seconds, code = _validate(path) if path is not None else _many_stages()
            verdict = "ok" if seconds <= budget_s else "OVER BUDGET"
            over += seconds > budget_s
            print(f"{name:<28} {seconds:7.2f} s  budget {budget_s:4.0f} s  exit {code}  "
                  f"{verdict}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
