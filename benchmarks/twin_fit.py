"""``furnace twin fit`` of the headline batch (issue 16: under a minute on the 2-core machine).

Records the headline recipe (profiles/pop70-600-1600.toml) once as a dry run on the built-in
station, then fits the built-in station's twin to it ``--repeat`` times, each as a fresh
``furnace twin fit`` process timed from start to exit (reading the 60,000-row trace, the
three fit stages, the figure and the station file). Prints each fit's wall time, the
replays the fit ran, and the fitted values against the built-in ones the batch was recorded
with (a fit of a furnace to its own record should give them back); then the median against
the target. Batches and outputs go to a temporary folder; ``--batch DIR`` fits a batch
already recorded instead (with ``--station`` the station file it ran on).

Run: python benchmarks/twin_fit.py [--repeat N] [--batch DIR --station FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "profiles" / "pop70-600-1600.toml"
BUILTIN = ROOT / "controller" / "builtin" / "sim.toml"
TARGET_S = 60.0


def _furnace(*args: str, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "controller.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, check=False)
    return time.perf_counter() - started, proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=Path, default=None)
    parser.add_argument("--station", type=Path, default=BUILTIN)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="twin-fit-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "FURNACE_ANCHOR_DIR": str(work / "anchors"),
               "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT),
                                                           os.environ.get("PYTHONPATH"))))}
        station = work / "station.toml"
        station.write_text(args.station.read_text(encoding="utf-8"), encoding="utf-8")
        batch = args.batch
        if batch is None:
            run_s, proc = _furnace("run", str(RECIPE), "--yes", "--batches",
                                   str(work / "batches"), env=env)
            if proc.returncode != 0:
                print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n")
                return 1
            batch = next((work / "batches").iterdir())
            print(f"recorded {batch.name} as a dry run in {run_s:.1f} s")
        rows = sum(1 for _ in (batch / "trace.csv").open(encoding="utf-8")) - 1
        times_s = []
        for i in range(args.repeat):
            out = work / f"fitted-{i}.toml"
            wall_s, proc = _furnace("twin", "fit", str(batch), "--station", str(station),
                                    "-o", str(out), env=env)
            if proc.returncode != 0:
                print(proc.stdout[-3000:], proc.stderr[-2000:], sep="\n")
                return 1
            times_s.append(wall_s)
            load = f", load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
            print(f"fit {i + 1}: {wall_s:.1f} s for {rows} trace rows{load}")
        twin = tomllib.loads(out.read_text(encoding="utf-8"))["twin"]
        given = tomllib.loads(args.station.read_text(encoding="utf-8"))
        built_in = given.get("twin", {})
        print("fitted against the station's values (the batch was recorded with them):")
        from simulator.twin import TwinParams  # after the timing: not part of it

        defaults = {**TwinParams().as_dict(),
                    "tube_volume_l": given["envelope"]["tube_volume_l"]}
        for name, value in twin.items():
            if name == "fit":
                continue
            before = built_in.get(name, defaults[name])
            sigma = twin["fit"]["one_sigma"].get(name)
            spread = f" ± {sigma:.3g}" if sigma is not None else " (held)"
            print(f"  {name:24} {value:12.5g}{spread:14} station {before:.5g} "
                  f"({100.0 * (value - before) / before if before else 0.0:+.1f} %)")
        median_s = statistics.median(times_s)
        print(f"median fit {median_s:.1f} s (target under {TARGET_S:g} s): "
              f"{'met' if median_s < TARGET_S else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
