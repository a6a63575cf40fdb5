"""Plan against prediction against dry run, per profile (issue 12): the old analytic plan
(``summarize``), ``furnace plan``'s prediction (the recipe run on the simulated twin
without records) and a dry run's actual (``run_batch`` on the same simulator, with its
batch folder), in duration and gas, with the wall time of the prediction and of the dry run.

Run: python benchmarks/plan_prediction.py [PROFILE...]   (default: every file in profiles/)
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from controller.predict import predict_plan
from controller.recipe.plan import load_recipe, summarize
from controller.recipe.station import load_station
from controller.run.clock import VirtualClock
from controller.session import run_batch

ROOT = Path(__file__).resolve().parent.parent


def _h(seconds: float) -> str:
    return f"{seconds / 3600:6.2f} h"


def _gas(litres: dict[str, float]) -> str:
    return " ".join(f"{g} {v:6.1f}" for g, v in litres.items() if v > 0.05) or "-"


def one(path: Path, batches: Path) -> None:
    station, station_text = load_station(None)
    _, plan, frozen = load_recipe(path, {}, station)
    planned = summarize(plan, station)
    started = time.perf_counter()
    predicted = predict_plan(plan, station)
    predict_wall_s = time.perf_counter() - started
    started = time.perf_counter()
    result = asyncio.run(run_batch(plan=plan, station=station, recipe_text=frozen,
                                   station_text=station_text, clock=VirtualClock(),
                                   batches_dir=batches, operator="benchmark"))
    dry_wall_s = time.perf_counter() - started
    actual = result.summary
    err = (predicted.total_s - actual["actual_s"]) / actual["actual_s"] * 100
    print(f"{path.stem:16} planned {_h(planned.duration_s)}  predicted "
          f"{_h(predicted.total_s)}  dry run {_h(actual['actual_s'])}  ({err:+.2f} %)  "
          f"wall: prediction {predict_wall_s:5.1f} s, dry run {dry_wall_s:5.1f} s")
    print(f"{'':16} gas L  planned [{_gas(dict(planned.gas_l))}]  predicted "
          f"[{_gas(dict(predicted.gas_l))}]  dry run [{_gas(dict(actual['gas_used_l']))}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="*", type=Path)
    args = parser.parse_args()
    paths = args.profiles or sorted((ROOT / "profiles").glob("*.toml"))
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            one(path, Path(tmp))


if __name__ == "__main__":
    main()
