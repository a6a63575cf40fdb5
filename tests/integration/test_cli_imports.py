"""Which modules each CLI command imports (issue 10): --help nothing beyond the standard
library; validate, verify and ctl neither pymodbus nor the simulator nor matplotlib; plan
runs the simulator (issue 12) but opens no batch and no session.
Pinned by module names in a fresh process, not by timing (benchmarks/cli_startup.py
times it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPE = str(ROOT / "profiles" / "pop70-600-1600.toml")

# runs the front door as `python -m controller.cli` does, then lists what got imported
PROBE = """
import json, runpy, sys
out, sys.argv = sys.argv[1], ["furnace", *sys.argv[2:]]
code = 0
try:
    runpy.run_module("controller.cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
with open(out, "w", encoding="utf-8") as f:
    json.dump({"exit": code, "modules": sorted(sys.modules)}, f)
"""

NEVER_OFF_THE_BUS = ("pymodbus", "simulator", "matplotlib", "serial", "controller.session",
                     "controller.station_factory", "controller.cli_station")
THIRD_PARTY = ("pydantic", "rich", "numpy", "transitions", "filelock", "platformdirs",
               "tomli_w")


def imported(tmp_path: Path, *argv: str) -> tuple[int, set[str]]:
    """Run ``furnace ARGV`` in a fresh interpreter; its exit code and the top-level and
    controller modules it imported."""
    out = tmp_path / "modules.json"
    subprocess.run([sys.executable, "-c", PROBE, str(out), *argv], cwd=tmp_path,
                   capture_output=True, timeout=60, check=False)
    result = json.loads(out.read_text(encoding="utf-8"))
    names = set(result["modules"])
    return result["exit"], names | {n.split(".")[0] for n in names}


def present(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return [n for n in names if n in modules]


def test_help_imports_only_the_standard_library(tmp_path: Path) -> None:
    code, modules = imported(tmp_path, "--help")
    assert code == 0
    assert present(modules, NEVER_OFF_THE_BUS + THIRD_PARTY) == []
    assert present(modules, ("controller.cli_tools", "controller.recipe", "drivers",
                             "asyncio")) == []


@pytest.mark.parametrize(("argv", "exit_code"), [
    (("validate", RECIPE), 0),
    (("ctl", "--help"), 0),
    (("ctl", ".", "hold", "--operator", "ann"), 2),  # not running: no control.json
    (("verify", "."), 2),  # not a batch folder
], ids=["validate", "ctl-help", "ctl", "verify"])
def test_commands_that_open_no_bus_import_no_bus(tmp_path: Path, argv: tuple[str, ...],
                                                 exit_code: int) -> None:
    code, modules = imported(tmp_path, *argv)
    assert code == exit_code
    assert "controller.cli_tools" in modules  # the command's own module did load
    assert present(modules, NEVER_OFF_THE_BUS) == []


def test_run_help_does_import_the_bus_and_the_simulator(tmp_path: Path) -> None:
    """The probe sees what a command imports: run's module brings the bus and the
    simulator, as it must."""
    code, modules = imported(tmp_path, "run", "--help")
    assert code == 0
    assert present(modules, ("pymodbus", "simulator", "controller.cli_station")) == [
        "pymodbus", "simulator", "controller.cli_station"]


def test_plan_runs_the_simulator_but_no_session(tmp_path: Path) -> None:
    """``plan`` predicts by running the recipe on the simulated twin (issue 12): it brings
    the simulator, never the session (no batch folder, no lock, no control server) nor
    matplotlib."""
    code, modules = imported(tmp_path, "plan", str(ROOT / "profiles" / "smoke-600.toml"))
    assert code == 0
    assert present(modules, ("controller.cli_plan", "controller.predict", "simulator")) == [
        "controller.cli_plan", "controller.predict", "simulator"]
    assert present(modules, ("controller.session", "controller.cli_station",
                             "matplotlib")) == []
