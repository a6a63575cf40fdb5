"""CLI start-up: how long a command takes from process start to exit, each in a fresh
process, against ``python -c "import pydantic"`` (the least any command that reads a
recipe or station must import) and a bare interpreter start.

The cases run round-robin, so a machine that gets busier part-way slows every case alike;
each figure is the median of N runs. The target (issue 10): ``furnace --help`` costs at
most 2x ``import pydantic``. Which modules each command imports is pinned by a test
(tests/integration/test_cli_imports.py), not timed.
Run: python benchmarks/cli_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "profiles" / "pop70-600-1600.toml"


def furnace() -> list[str]:
    """The installed ``furnace`` entry point beside this interpreter, else the module."""
    script = Path(sys.executable).with_name("furnace")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "controller.cli"]


def cases() -> dict[str, list[str]]:
    cmd = furnace()
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        'python -c "import pydantic"': [sys.executable, "-c", "import pydantic"],
        "furnace --help": [*cmd, "--help"],
        f"furnace validate {RECIPE.relative_to(ROOT)}": [*cmd, "validate", str(RECIPE)],
        "furnace ctl --help": [*cmd, "ctl", "--help"],
    }


def once(argv: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          cwd=ROOT, check=False)
    elapsed_s = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}: "
                         f"{proc.stderr.decode(errors='replace').strip()}")
    return elapsed_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="runs of each case (median)")
    args = parser.parse_args()
    todo = cases()
    for argv in todo.values():  # warm the file cache and any .pyc files
        once(argv)
    times: dict[str, list[float]] = {name: [] for name in todo}
    for _ in range(args.runs):
        for name, argv in todo.items():
            times[name].append(once(argv))
    median_s = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"median of {args.runs} runs each, {' '.join(furnace())} as furnace")
    for name, seconds in median_s.items():
        print(f"  {name:48s} {seconds * 1000:7.1f} ms")
    ratio = median_s["furnace --help"] / median_s['python -c "import pydantic"']
    print(f"furnace --help / import pydantic: {ratio:.2f} (target: at most 2)")


if __name__ == "__main__":
    main()
