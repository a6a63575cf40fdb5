"""The fault campaign's figures (reference/faults.md §3.1-3.3): every simulator fault kind of
``tests/integration/campaign.py`` run in process on the simulator (virtual clock), then a
small kill -9 campaign against ``furnace sim serve`` as ``test_kill_resume`` does it, then
the fallback kill campaign (issue 9 item 2): the PC killed at random points of the headline
batch, at least once inside every heating ramp, each furnace left alone to its instrument
for 2 h, and the fastest cooling of the true furnace over any 2-minute window after a kill
against the station's limit (``tests/integration/fallback_kills.py``).

Prints one row per fault (kind, interlock, detection and safe-state latency in scan cycles,
end state, survived), the totals, acknowledged audit records lost after kill -9 and the
longest trace gap not explained by a recorded outage. Latencies: detection from the first
symptom in the simulator's ground truth; safe state from detection to the first accepted
write that made the outputs safe (read back), or the instrument's own fallback.

Run: python benchmarks/faults.py [--kills N] [--seed S] [--json results.json] [--only NAME]
         [--fallback-kills N] [--fallback-seed S] [--fallback-only]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the campaign lives with the tests

from controller.recipe.plan import load_recipe, summarize  # noqa: E402
from controller.recipe.station import fallback_rate_c_per_min, load_station  # noqa: E402
from controller.records.verify import verify_batch  # noqa: E402
from tests.integration.campaign import CASES, PERIOD_S, Outcome, judge, run_case  # noqa: E402
from tests.integration.fallback_kills import (  # noqa: E402
    ALONE_S,
    SAMPLE_S,
    WINDOW_S,
    KillPoint,
    heating_ramps,
    max_cooling_c_per_min,
    run_kills,
)
from tests.integration.helpers import furnace, served_simulator  # noqa: E402
from tests.integration.recipes import KILL, write  # noqa: E402
from tests.integration.test_kill_resume import SPEED, _kill  # noqa: E402


def _cycles(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


async def fault_campaign(seed: int, only: set[str]) -> list[Outcome]:
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            if only and case.name not in only:
                continue
            outcome = await run_case(case, Path(tmp) / case.name, seed=seed)
            judge(outcome)
            outcome.rows = []  # keep the figures, not the traces
            outcome.audit = []
            outcome.run = None
            outcomes.append(outcome)
    return outcomes


def print_table(outcomes: list[Outcome]) -> None:
    head = (f"{'case':<30} {'row':<4} {'interlock':<22} {'det cyc':>7} {'budget':>7} "
            f"{'safe cyc':>8} {'end state':<10} {'hot no Ar':>9} {'survived':<8}")
    print(head)
    print("-" * len(head))
    for o in outcomes:
        c = o.case
        expected = "/".join(c.interlocks)
        shown = o.detected_by or f"({expected}: none)"
        survived = "yes" if o.survived else ("NO (bug)" if c.bug else "NO")
        print(f"{c.name:<30} {c.row:<4} {shown[:22]:<22} {_cycles(o.detect_cycles):>7} "
              f"{c.budget_s / PERIOD_S:>7g} {_cycles(o.safe_cycles):>8} {o.state:<10} "
              f"{o.hot_no_inert_s:>8g}s {survived:<8}")
    print()
    for o in outcomes:
        print(f"  {o.case.name}: --fault {o.spec}; {o.end_reason}")
        for check in o.checks:
            if not check.ok:
                print(f"      FAILED {check.name}: {check.detail}")
        if o.case.bug:
            print(f"      known bug: {o.case.bug}")


def print_totals(outcomes: list[Outcome]) -> None:
    survived = sum(o.survived for o in outcomes)
    detect = [o.detect_cycles for o in outcomes if o.detect_cycles is not None]
    safe = [o.safe_cycles for o in outcomes if o.safe_cycles is not None]
    kinds = {o.case.kind for o in outcomes}
    print()
    print(f"faults injected: {len(outcomes)} ({len(kinds)} kinds), survived: {survived}, "
          f"failed: {len(outcomes) - survived} "
          f"({sum(bool(o.case.bug) and not o.survived for o in outcomes)} known bugs)")
    if detect:
        print(f"detection latency (scan cycles from the first symptom): median "
              f"{statistics.median(detect):g}, max {max(detect):g} "
              f"(negative: detected before the truth crossed the symptom's threshold)")
    if safe:
        print(f"safe-state latency (scan cycles from detection): median "
              f"{statistics.median(safe):g}, max {max(safe):g}")
    hot = sum(o.hot_no_inert_s for o in outcomes)
    print(f"time above the air limit without inert flow: {hot:g} s in all "
          f"(allowed only while an inert supply fault is being detected)")
    gap = max((o.max_trace_gap_s for o in outcomes), default=0.0)
    print(f"longest trace gap in the in-process campaign: {gap:g} s "
          f"({gap / PERIOD_S:g} scan periods)")


# ---- kill -9 ------------------------------------------------------------------------------

def _gaps(batch: Path) -> tuple[float, float, float]:
    """Trace gaps of a resumed batch, s of process time: the longest gap that no recorded
    outage (the last record before the crash to control regained after ``batch_resumed``)
    overlaps; the most trace lost just before a crash (rows still in the writer's buffer,
    the unsynced window); the longest gap from control regained to the next row."""
    records = [json.loads(line) for line in (batch / "audit.jsonl").read_text().splitlines()]
    outages = []
    for i, r in enumerate(records):
        if r["event"] == "batch_resumed":
            back = next((float(x["t_s"]) for x in records[i:] if x["event"] == "state_change"
                         and str(x["reason"]).startswith("resumed")), float(r["t_s"]))
            outages.append((float(r["outage_from_t_s"]), back))
    with open(batch / "trace.csv", newline="", encoding="utf-8") as f:
        t = [float(r["elapsed_s"]) for r in csv.DictReader(f)]
    unexplained, lost_before, after = 0.0, 0.0, 0.0
    for a, b in zip(t, t[1:], strict=False):
        hit = [(lo, hi) for lo, hi in outages if a <= hi and b >= lo]
        if not hit:
            unexplained = max(unexplained, b - a)
            continue
        lo, hi = hit[0]
        lost_before = max(lost_before, lo - a)
        after = max(after, b - hi)
    return unexplained, lost_before, after


def kill_campaign(kills: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    result: dict[str, Any] = {"kills": 0, "resumed": 0, "finished_before_kill": 0,
                              "acknowledged": 0, "lost": 0, "verify_failed": 0,
                              "longest_unexplained_gap_s": 0.0, "trace_lost_before_crash_s": 0.0,
                              "first_row_after_outage_s": 0.0, "errors": []}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        recipe = write(tmp, KILL, "kill.toml")
        with served_simulator(tmp, SPEED) as station:
            for k in range(kills):
                batches = tmp / f"b{k}"
                run = subprocess.Popen(furnace("run", str(recipe), "--station", str(station),
                                               "--speed", str(SPEED), "--batches",
                                               str(batches)),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    run.wait(timeout=rng.uniform(1.0, 4.0))
                except subprocess.TimeoutExpired:
                    _kill(run)
                folders = list(batches.iterdir()) if batches.exists() else []
                if not folders:
                    continue
                result["kills"] += 1
                batch = folders[0]
                acknowledged = (batch / "audit.jsonl").read_bytes()
                acknowledged = acknowledged[:acknowledged.rfind(b"\n") + 1]
                lines = acknowledged.splitlines()
                result["acknowledged"] += len(lines)
                if (batch / "summary.json").exists():
                    result["finished_before_kill"] += 1
                else:
                    resumed = subprocess.run(furnace("resume", str(batch), "--speed",
                                                     str(SPEED)),
                                             capture_output=True, timeout=180, check=False)
                    if resumed.returncode not in (0, 1):
                        result["errors"].append(resumed.stderr.decode()[-300:])
                    result["resumed"] += 1
                after = (batch / "audit.jsonl").read_bytes().splitlines()
                result["lost"] += sum(1 for i, line in enumerate(lines)
                                      if i >= len(after) or after[i] != line)
                if not verify_batch(batch).ok:
                    result["verify_failed"] += 1
                gaps = _gaps(batch)
                for key, value in zip(("longest_unexplained_gap_s", "trace_lost_before_crash_s",
                                       "first_row_after_outage_s"), gaps, strict=True):
                    result[key] = max(result[key], value)
    return result


# ---- the PC killed, the furnace left to its instrument -----------------------------------

HEADLINE = ROOT / "profiles" / "pop70-600-1600.toml"


def fallback_campaign(kills: int, seed: int) -> dict[str, Any]:
    """Kill the PC at ``kills`` points of the headline batch (one at a random point of every
    heating ramp, the rest at random process times of the planned batch) and measure the
    true furnace's fastest 2-minute cooling after each. One dry run serves them all."""
    station, _ = load_station(None)
    plan = load_recipe(HEADLINE, {}, station)[1]
    total_s = summarize(plan, station).duration_s
    rng = random.Random(seed)
    ramps = heating_ramps(plan, station.envelope.ambient_c)
    points = [KillPoint(step=i, fraction=rng.uniform(0.02, 0.98)) for i in ramps]
    points += [KillPoint(t_s=rng.uniform(0.0, total_s))
               for _ in range(max(kills - len(points), 0))]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        campaign = asyncio.run(run_kills(HEADLINE, points, Path(tmp)))
    rows = []
    for k in sorted(campaign.kills, key=lambda k: k.t_s):
        rate, at_s = k.max_cooling()
        rows.append({"t_s": k.t_s, "step": k.step, "label": k.label, "heating": k.heating,
                     "furnace_c": k.furnace_c, "max_cooling_c_per_min": rate,
                     "worst_window_from_kill_s": at_s - k.t_s})
    worst = max(rows, key=lambda r: r["max_cooling_c_per_min"])
    heating = [r for r in rows if r["heating"]]
    return {"recipe": plan.sample_name, "station": station.name, "seed": seed,
            "kills": rows, "missed": len(campaign.missed), "forced_in_ramps": len(ramps),
            "heating_ramps_hit": sorted({r["step"] for r in heating}),
            "heating_ramps": ramps,
            "limit_c_per_min": campaign.limit_c_per_min,
            "fallback_c_per_min": fallback_rate_c_per_min(station),
            "worst": worst,
            "worst_in_heating_ramp_c_per_min": max(
                (r["max_cooling_c_per_min"] for r in heating), default=None),
            "batch_max_cooling_c_per_min": max_cooling_c_per_min(campaign.batch)[0],
            "wall_s": time.perf_counter() - started}


def print_fallback(r: dict[str, Any]) -> None:
    print(f"\nfallback kill campaign: {r['recipe']} on {r['station']}, PC killed at "
          f"{len(r['kills'])} points ({r['forced_in_ramps']} at random points of the heating "
          f"ramps, the rest at random process times; seed {r['seed']}), each furnace then "
          f"left alone {ALONE_S / 3600:g} h; truth every {SAMPLE_S:g} s; "
          f"{r['wall_s']:.1f} s wall")
    head = (f"{'t (h)':>7} {'step':>4} {'what':<50} {'heating':<7} {'furnace °C':>10} "
            f"{'max 2-min cooling °C/min':>25}")
    print(head)
    print("-" * len(head))
    for k in r["kills"]:
        print(f"{k['t_s'] / 3600:>7.2f} {k['step']:>4} {k['label'][:50]:<50} "
              f"{'yes' if k['heating'] else '':<7} {k['furnace_c']:>10.1f} "
              f"{k['max_cooling_c_per_min']:>25.2f}")
    if r["missed"]:
        print(f"  {r['missed']} kill points fell after the batch ended")
    w, limit = r["worst"], r["limit_c_per_min"]
    verdict = "within the limit" if w["max_cooling_c_per_min"] <= limit else "EXCEEDS THE LIMIT"
    print(f"station limit {limit:g} °C/min; instrument rate limit (its fallback) "
          f"{r['fallback_c_per_min']:g} °C/min in every step")
    print(f"fastest true cooling over any {WINDOW_S / 60:g}-min window after a kill: "
          f"{w['max_cooling_c_per_min']:.2f} °C/min ({verdict}; kill at {w['t_s'] / 3600:.2f} "
          f"h, {w['label']}, {w['furnace_c']:.0f} °C, window from "
          f"{w['worst_window_from_kill_s']:+.0f} s)")
    hit = len(r["heating_ramps_hit"])
    print(f"inside the heating ramps ({hit} of {len(r['heating_ramps'])} hit, "
          f"{sum(k['heating'] for k in r['kills'])} kills): fastest "
          f"{r['worst_in_heating_ramp_c_per_min']:.2f} °C/min")
    print(f"the batch itself, PC alive: fastest {WINDOW_S / 60:g}-min cooling "
          f"{r['batch_max_cooling_c_per_min']:.2f} °C/min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5, help="kill -9 trials (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="simulator noise seed")
    parser.add_argument("--kill-seed", type=int, default=20261124, help="kill timing seed")
    parser.add_argument("--json", type=Path, default=None, help="write the result records")
    parser.add_argument("--only", action="append", default=[], help="run only this case")
    parser.add_argument("--fallback-kills", type=int, default=30,
                        help="PC kills of the headline batch, furnace left alone (0: none)")
    parser.add_argument("--fallback-seed", type=int, default=20261201,
                        help="fallback kill points seed")
    parser.add_argument("--fallback-only", action="store_true",
                        help="run only the fallback kill campaign")
    args = parser.parse_args()
    outcomes: list[Outcome] = []
    if not args.fallback_only:
        started = time.perf_counter()
        outcomes = asyncio.run(fault_campaign(args.seed, set(args.only)))
        campaign_s = time.perf_counter() - started
        print(f"fault campaign: {len(outcomes)} cases, seed {args.seed}, "
              f"{campaign_s:.1f} s wall, scan period {PERIOD_S:g} s\n")
        print_table(outcomes)
        print_totals(outcomes)
    kills: dict[str, Any] | None = None
    if args.kills > 0 and not args.fallback_only:
        started = time.perf_counter()
        try:
            kills = kill_campaign(args.kills, args.kill_seed)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            print(f"\nkill -9 campaign could not run: {exc}")
        else:
            print(f"\nkill -9 campaign against furnace sim serve (speed {SPEED}, seed "
                  f"{args.kill_seed}): {kills['kills']} kills, {kills['resumed']} resumed, "
                  f"{kills['finished_before_kill']} finished first, "
                  f"{time.perf_counter() - started:.1f} s wall")
            print(f"acknowledged audit records lost after kill -9: {kills['lost']} of "
                  f"{kills['acknowledged']}; furnace verify failed: {kills['verify_failed']}")
            gap = kills["longest_unexplained_gap_s"]
            print(f"longest trace gap not explained by a recorded outage: {gap:.1f} s of "
                  f"process time = {gap / PERIOD_S:.1f} scan periods (at speed {SPEED} a "
                  f"period is {PERIOD_S / SPEED * 1000:.1f} ms of wall time: scan overruns "
                  "over TCP, not lost rows)")
            print(f"trace rows lost just before a kill (the trace's unsynced buffer): up to "
                  f"{kills['trace_lost_before_crash_s']:.1f} s; first row after control "
                  f"regained: within {kills['first_row_after_outage_s']:.1f} s")
            for err in kills["errors"]:
                print(f"  resume error: {err}")
    fallback: dict[str, Any] | None = None
    if args.fallback_kills > 0:
        fallback = fallback_campaign(args.fallback_kills, args.fallback_seed)
        print_fallback(fallback)
    if args.json is not None:
        args.json.write_text(json.dumps({"cases": [o.record() for o in outcomes],
                                         "kill": kills, "fallback": fallback}, indent=2,
                                        default=str),
                             encoding="utf-8")


if __name__ == "__main__":
    main()
