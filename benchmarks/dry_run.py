"""Dry-run speed: the headline batch (profiles/pop70-600-1600.toml) on the built-in simulated
station with a virtual clock, in simulated seconds per wall second and µs per scan cycle.

Every measured run is a fresh child process (``dry_run_child.py``, passed with ``python -P
-c``) whose ``PYTHONPATH`` is the tree under test; it times ``run_batch`` alone and reports the
``__file__`` of the packages it imported, which must lie in that tree. This process imports no
project package, so no PYTHONPATH is needed. A dry run has no real-time baseline worth
comparing, so speed is compared against another revision (``--baseline``).

    python benchmarks/dry_run.py [--repeat N]   median and best of N runs (default 3)
    python benchmarks/dry_run.py --baseline GIT_REF [--repeat N]
        the same for GIT_REF side by side: it is checked out into a temporary git worktree
        (removed afterwards, on Ctrl-C/SIGTERM and on failure too) and the runs alternate
        baseline, candidate, baseline, candidate... so machine load hits both alike; prints
        both and the ratio candidate/baseline. The candidate is this working tree,
        uncommitted changes included.
    python benchmarks/dry_run.py --breakdown    one plain and one cProfile'd run: time per
        layer (physics, registers+bus, drivers, controller, records, other; the mapping is
        in dry_run_layers.py) and the top 15 functions
    python benchmarks/dry_run.py --rss          peak RSS of a ~1 h and a ~25 h batch (the same
        simple recipe, longer dwell), each in a fresh process: memory must stay flat

Issue 14's acceptance figure, from the candidate's worktree (one invocation, interleaved):
    python benchmarks/dry_run.py --baseline main --repeat 3
or as a command pair, one per tree (not interleaved, so noisier on a busy machine):
    cd /path/to/main-worktree && python benchmarks/dry_run.py --repeat 3
    cd /path/to/candidate-worktree && python benchmarks/dry_run.py --repeat 3
A single run per tree on a loaded machine can be off by 50 % either way: use --repeat 3 or
more and read the medians. --tmp DIR puts batch folders (and the baseline worktree) under DIR
instead of the system temp directory (fsync costs depend on its file system); --timeout S
bounds each run (default 1800 s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dry_run_layers import LAYERS, Attributor, coverage, layer_table, where

ROOT = Path(__file__).resolve().parent.parent
HEADLINE = Path("profiles") / "pop70-600-1600.toml"
CHILD = Path(__file__).resolve().with_name("dry_run_child.py")
MARKER = "DRY-RUN-RESULT "
TOP_N = 15

# A simple recipe for --rss, modelled on profiles/smoke-600.toml: purge, ramp, dwell, cool.
# Only the dwell differs between the short and the long batch (24 h apart).
RSS_RECIPE = """\
schema_version = 1
name = "{name}"
sample = "{name}"
description = "benchmarks/dry_run.py --rss: purge, ramp to 100 °C, dwell, controlled cool"

[sample_material]
precursor = "pitch"
acid_wt = 0
mass_g = 0.5

[[stages]]
name = "purge"
atmosphere = "Ar"

[[stages.steps]]
kind = "purge"
gas = "Ar"
flow_sccm = 500
volumes = 8

[[stages.steps]]
kind = "gas"
flows_sccm = {{ Ar = 200 }}

[[stages]]
name = "heat"
atmosphere = "Ar"

[[stages.steps]]
kind = "ramp"
to_c = 100
rate_c_per_min = 3.5

[[stages.steps]]
kind = "dwell"
duration_min = {dwell_min}
band_c = 5

[[stages]]
name = "cool"
atmosphere = "Ar"

[[stages.steps]]
kind = "cool"
to_c = 90
rate_c_per_min = 3.5

[[stages.steps]]
kind = "end"
"""
RSS_DWELL_MIN = {"rss-1h": 1, "rss-25h": 1 + 24 * 60}  # 1.2 h and 25.2 h simulated


class BenchError(RuntimeError):
    """A child run failed, or ran code from the wrong tree."""


@dataclass(frozen=True, slots=True)
class Tree:
    """A source tree to measure: its label, root and what revision it is."""

    label: str
    root: Path
    revision: str


@dataclass(frozen=True, slots=True)
class Run:
    """One child's dry run: simulated and wall seconds of ``run_batch``, cycles, peak RSS
    (KiB, None where the platform gives none)."""

    sim_s: float
    wall_s: float
    cycles: int
    peak_rss_kib: int | None
    loop_peak_rss_kib: int | None  # as of the last scan cycle (--loop-rss only)
    files: dict[str, str]

    @property
    def speed(self) -> float:
        """Simulated seconds per wall second."""
        return self.sim_s / self.wall_s

    @property
    def us_per_cycle(self) -> float:
        """Wall µs per scan cycle."""
        return self.wall_s / self.cycles * 1e6


def short(text: str, width: int = 56) -> str:
    """A commit subject cut to ``width`` characters for a header line."""
    return text if len(text) <= width else text[:width - 1] + "…"


def git(*args: str) -> str:
    """Run git in this tree; its stdout. Raises BenchError naming the command on failure."""
    proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise BenchError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def candidate() -> Tree:
    """This working tree, uncommitted changes included."""
    dirty = git("status", "--porcelain", "--untracked-files=no")
    revision = short(git("log", "-1", "--format=%h %s"))
    return Tree("candidate", ROOT, revision + (" + uncommitted changes" if dirty else ""))


@contextlib.contextmanager
def baseline_worktree(ref: str, workdir: Path) -> Iterator[Tree]:
    """``ref`` checked out (detached) into a temporary git worktree, removed on leaving."""
    try:
        sha = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except BenchError:
        raise BenchError(f"--baseline {ref}: not a commit in {ROOT}") from None
    path = workdir / "baseline"
    git("worktree", "add", "--detach", "--quiet", str(path), sha)
    try:
        subject = short(git("log", "-1", "--format=%h %s", sha))
        yield Tree("baseline", path, subject if sha.startswith(ref) else f"{ref} = {subject}")
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a 2nd Ctrl-C: still clean up
        try:
            git("worktree", "remove", "--force", str(path))
        except BenchError as exc:
            shutil.rmtree(path, ignore_errors=True)
            print(f"warning: {exc}; removed {path} by hand, run `git worktree prune`",
                  file=sys.stderr)
        finally:
            signal.signal(signal.SIGINT, previous)


def run_child(tree: Tree, recipe: Path, workdir: Path, *, profile_out: Path | None = None,
              loop_rss: bool = False, timeout_s: float) -> Run:
    """One dry run of ``recipe`` in a fresh process importing the package from ``tree``.

    Raises BenchError if the child fails, the batch does not complete, or a package came
    from anywhere but ``tree``. Blocks until the child ends (Ctrl-C kills it).
    """
    batches = Path(tempfile.mkdtemp(prefix="batches-", dir=workdir))
    argv = [sys.executable, "-P", "-c", CHILD.read_text(encoding="utf-8"), str(recipe),
            str(batches)]
    if profile_out is not None:
        argv += ["--profile", str(profile_out)]
    if loop_rss:
        argv.append("--loop-rss")
    env = {**os.environ, "PYTHONPATH": str(tree.root)}
    try:
        proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    finally:
        shutil.rmtree(batches, ignore_errors=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise BenchError(f"{tree.label} run of {recipe.name} exited {proc.returncode}:\n{tail}")
    report: dict[str, Any] = json.loads(lines[-1][len(MARKER):])
    if report.get("outcome") not in (None, "completed"):
        raise BenchError(f"{tree.label}: batch {report['outcome']}: {report.get('end_reason')}")
    root = tree.root.resolve()
    for name, file in report["files"].items():
        if not Path(file).resolve().is_relative_to(root):
            raise BenchError(f"{tree.label}: imported {name} from {file}, not from {root}")
    return Run(report["sim_s"], report["wall_s"], report["cycles"], report["peak_rss_kib"],
               report.get("loop_peak_rss_kib"), report["files"])


def machine() -> str:
    """CPU count and 1-minute load average, to judge how noisy the figures are."""
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    return f"{os.cpu_count()} CPUs{load}"


def headline_recipe(tree: Tree) -> Path:
    """The tree's own copy of the headline recipe (older revisions parse their own)."""
    path = tree.root / HEADLINE
    if not path.is_file():
        raise BenchError(f"{tree.label} has no {HEADLINE}")
    return path


def summarise(tree: Tree, runs: list[Run]) -> dict[str, float]:
    """Median and best of both figures over ``runs``."""
    speeds, costs = [r.speed for r in runs], [r.us_per_cycle for r in runs]
    return {"speed_median": statistics.median(speeds), "speed_best": max(speeds),
            "us_median": statistics.median(costs), "us_best": min(costs)}


def headline(trees: list[Tree], repeat: int, workdir: Path, timeout_s: float) -> None:
    """Item 1 (one tree) or the side-by-side comparison (baseline, candidate), interleaved."""
    print(f"headline batch {HEADLINE.as_posix()}, built-in simulated station, virtual clock; "
          f"{repeat} run(s) per tree, each a fresh process; machine: {machine()}")
    for tree in trees:
        print(f"  {tree.label:<9} {tree.root}  ({tree.revision})")
    recipes = {t.label: headline_recipe(t) for t in trees}
    texts = {recipes[t.label].read_bytes() for t in trees}
    if len(texts) > 1:
        print(f"  note: {HEADLINE.as_posix()} differs between the trees; each runs its own")
    runs: dict[str, list[Run]] = {t.label: [] for t in trees}
    for i in range(repeat):
        for tree in trees:  # ABAB...: a busier machine part-way slows both alike
            run = run_child(tree, recipes[tree.label], workdir, timeout_s=timeout_s)
            if i == 0:
                print(f"  {tree.label} imports controller from {run.files['controller']}")
            runs[tree.label].append(run)
            print(f"  {tree.label:<9} run {i + 1}/{repeat}: {run.wall_s:7.2f} s wall, "
                  f"{run.sim_s / 3600:.2f} h simulated, {run.cycles:,} cycles: "
                  f"{run.speed:,.0f} sim s/wall s, {run.us_per_cycle:.0f} µs/cycle", flush=True)
    print(f"  machine at the end: {machine()}")
    stats = {t.label: summarise(t, runs[t.label]) for t in trees}
    rows = [("simulated s per wall s, median", "speed_median", ",.0f", ""),
            ("simulated s per wall s, best", "speed_best", ",.0f", ""),
            ("µs per scan cycle, median", "us_median", ",.0f", " µs"),
            ("µs per scan cycle, best", "us_best", ",.0f", " µs")]
    header = f"  {'':<32}" + "".join(f"{t.label:>14}" for t in trees)
    print(header + (f"{'cand./base.':>14}" if len(trees) == 2 else ""))
    for title, key, fmt, unit in rows:
        cells = "".join(f"{format(stats[t.label][key], fmt) + unit:>14}" for t in trees)
        ratio = ""
        if len(trees) == 2:
            ratio = f"{stats['candidate'][key] / stats['baseline'][key]:>13.2f}x"
        print(f"  {title:<32}{cells}{ratio}")
    if len(trees) == 2:
        base, cand = runs["baseline"][0], runs["candidate"][0]
        print("  ratio > 1 in simulated s per wall s and < 1 in µs per cycle: candidate faster")
        if (base.cycles, round(base.sim_s)) != (cand.cycles, round(cand.sim_s)):
            print(f"  note: the batches differ (baseline {base.sim_s:.0f} s / {base.cycles:,} "
                  f"cycles, candidate {cand.sim_s:.0f} s / {cand.cycles:,}): compare µs/cycle")


def breakdown(tree: Tree, workdir: Path, timeout_s: float) -> None:
    """Item 3: one plain run, one profiled run, time per layer and the top functions."""
    recipe = headline_recipe(tree)
    counts, unmapped = coverage(tree.root)
    print(f"breakdown of one headline dry run ({tree.root}, {tree.revision}); "
          f"machine: {machine()}")
    print(f"  layer map covers {sum(counts.values())} project .py files: "
          + ", ".join(f"{name} {counts[name]}" for name in LAYERS))
    if unmapped:
        print(f"  warning: not in any layer (counted as other): {', '.join(unmapped)}")
    plain = run_child(tree, recipe, workdir, timeout_s=timeout_s)
    out = workdir / "dry_run.prof"
    profiled = run_child(tree, recipe, workdir, profile_out=out, timeout_s=timeout_s * 4)
    print(f"  plain run:    {plain.wall_s:6.2f} s wall, {plain.speed:,.0f} sim s/wall s, "
          f"{plain.us_per_cycle:.0f} µs/cycle ({plain.cycles:,} cycles)")
    print(f"  profiled run: {profiled.wall_s:6.2f} s wall, {profiled.us_per_cycle:.0f} µs/cycle "
          f"({profiled.wall_s / plain.wall_s:.1f}x the plain run)")
    print("  cProfile adds a cost to every Python call, so layers made of many small calls look\n"
          "  bigger than they are: the shares are indicative. '≈ µs/cycle' spreads the plain\n"
          "  run's µs per cycle by these shares. '+ stdlib s': stdlib/builtin/third-party time\n"
          "  given to the layer that called it; 'other' is the event loop and the harness.")
    result = Attributor(pstats.Stats(str(out)), tree.root).breakdown(TOP_N)
    for line in layer_table(result, plain.us_per_cycle):
        print(line)
    print(f"  top {TOP_N} functions by own time (profiled):")
    print(f"  {'own s':>7}{'share':>7}{'calls':>11}{'µs/call':>9}  {'layer':<22}function")
    for func, calls, tt, label in result.top:
        print(f"  {tt:>7.2f}{tt / result.total_s:>7.1%}{calls:>11,}{tt / calls * 1e6:>9.2f}  "
              f"{label:<22}{where(func, tree.root)}")


def mib(kib: int | None) -> str:
    """KiB as MiB for a table, or n/a."""
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


def rss(tree: Tree, workdir: Path, timeout_s: float) -> None:
    """Item 4: peak RSS of a ~1 h and a ~25 h batch, each in a fresh process."""
    print(f"peak RSS, ~1 h against ~25 h batch ({tree.root}, {tree.revision})")
    env = {**os.environ, "PYTHONPATH": str(tree.root)}
    runs: dict[str, Run] = {}
    for name, dwell_min in RSS_DWELL_MIN.items():
        recipe = workdir / f"{name}.toml"
        recipe.write_text(RSS_RECIPE.format(name=name, dwell_min=dwell_min), encoding="utf-8")
        check = subprocess.run([sys.executable, "-P", "-m", "controller.cli", "validate",
                                str(recipe)], cwd=workdir, env=env, capture_output=True,
                               text=True, check=False)
        if check.returncode != 0:
            raise BenchError(f"{recipe.name} does not validate: {check.stdout}{check.stderr}")
        run = runs[name] = run_child(tree, recipe, workdir, loop_rss=True, timeout_s=timeout_s)
        print(f"  {name:<8} {run.sim_s / 3600:5.2f} h simulated, {run.cycles:>6,} cycles, "
              f"{run.wall_s:5.1f} s wall: peak RSS to the last scan cycle "
              f"{mib(run.loop_peak_rss_kib)}, whole process {mib(run.peak_rss_kib)}", flush=True)
    short, long = runs["rss-1h"], runs["rss-25h"]
    for what, a, b in (("to the last scan cycle", short.loop_peak_rss_kib,
                        long.loop_peak_rss_kib),
                       ("whole process", short.peak_rss_kib, long.peak_rss_kib)):
        if a is None or b is None:
            print(f"  difference, {what}: n/a (no peak RSS here: install psutil on Windows)")
        else:
            hours = (long.sim_s - short.sim_s) / 3600
            print(f"  difference, {what}: {(b - a) / 1024:+.1f} MiB over {hours:.1f} h more "
                  f"batch ({(b - a) / a:+.1%})")
    print("  'whole process' includes the end of run_batch, where the summary reads the batch's\n"
          "  records back; 'to the last scan cycle' is the scan loop alone.")


def main() -> int:
    """Parse the options, run what they ask for; exit 1 on a failed run, 130 on Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs per tree (default 3)")
    parser.add_argument("--baseline", metavar="GIT_REF", help="measure this revision alongside")
    parser.add_argument("--breakdown", action="store_true", help="per-layer profile")
    parser.add_argument("--rss", action="store_true", help="peak RSS, 1 h against 25 h batch")
    parser.add_argument("--tmp", type=Path, help="where batch folders go (default system temp)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds allowed per run (default 1800)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up as on Ctrl-C
    try:
        with contextlib.ExitStack() as stack:
            workdir = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="dry-run-", dir=args.tmp)))
            cand = candidate()
            if args.baseline or not (args.breakdown or args.rss):
                trees = [cand]
                if args.baseline:
                    trees.insert(0, stack.enter_context(baseline_worktree(args.baseline,
                                                                          workdir)))
                headline(trees, args.repeat, workdir, args.timeout)
            if args.breakdown:
                breakdown(cand, workdir, args.timeout)
            if args.rss:
                rss(cand, workdir, args.timeout)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: temporary worktree and batch folders removed", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
