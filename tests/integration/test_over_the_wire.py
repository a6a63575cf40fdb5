"""Rung 4: a whole batch over real Modbus (TCP, and RTU framing on a virtual serial link)
against the served simulator, compared with the in-process dry run of the same recipe.

Server and controller share one event loop and one virtual clock, so the batch is
deterministic and fast, while every register still crosses a loopback socket. The smoke
batch runs with its peak at 450 °C instead of 600 °C (``--set peak_c=450``: the same purge,
ramp, dwell and cool, 2.8 h of process time instead of 4.4 h); over a socket it still takes
10-20 s (``slow``). Its in-process twin is a session dry run (``dry_runs``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli import main
from controller.recipe.plan import load_recipe
from controller.recipe.station import Station, load_station, load_station_text
from controller.records.verify import verify_batch
from controller.run.clock import VirtualClock
from controller.run.runstate import Phase
from controller.session import run_batch
from controller.station_factory import serve_simulator
from tests.conftest import PROFILES, ROOT
from tests.integration.helpers import Batch, DryRuns, free_port, read_batch

SMOKE = PROFILES / "smoke-600.toml"
PEAK_C = 450
SETS = {"peak_c": str(PEAK_C)}


def _station(name: str, modbus_port: int, balance_port: int) -> tuple[Station, str]:
    text = (ROOT / "stations" / name).read_text(encoding="utf-8")
    # Whole quoted values: a port put in first must not match a later pattern (a Modbus
    # port 5022x once became "socket://127.0.0.1:<balance port>x").
    text = text.replace("port = 5020\n", f"port = {modbus_port}\n")
    text = text.replace('"socket://127.0.0.1:5021"', f'"socket://127.0.0.1:{modbus_port}"')
    text = text.replace('"socket://127.0.0.1:5022"', f'"socket://127.0.0.1:{balance_port}"')
    return load_station_text(text, name), text


async def _over_the_wire(tmp_path: Path, name: str, framer: str) -> Batch:
    modbus_port, balance_port = free_port(), free_port()
    station, text = _station(name, modbus_port, balance_port)
    clock = VirtualClock()
    served = await serve_simulator(
        station, clock, host="127.0.0.1",
        port=modbus_port if framer == "socket" else None,
        rtu_port=modbus_port if framer == "rtu" else None,
        balance=f"tcp:{balance_port}")
    try:
        _, plan, frozen = load_recipe(SMOKE, SETS, station)
        result = await run_batch(plan=plan, station=station, recipe_text=frozen,
                                 station_text=text, clock=clock, batches_dir=tmp_path,
                                 operator="pytest", station_source=name)
    finally:
        await served.stop()
    return read_batch(result, plan)


@pytest.fixture(scope="module")
def in_process(dry_runs: DryRuns) -> Batch:
    return dry_runs(SMOKE, SETS)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "framer"), [("sim-tcp.toml", "socket"),
                                              ("sim-rtu.toml", "rtu")])
async def test_batch_over_the_wire_matches_the_dry_run(tmp_path: Path, in_process: Batch,
                                                       name: str, framer: str) -> None:
    wire = await _over_the_wire(tmp_path, name, framer)
    assert wire.result.state is Phase.COMPLETED, wire.result.summary["end_reason"]
    assert verify_batch(wire.result.batch_dir).ok
    files = {p.name for p in wire.result.batch_dir.iterdir()}
    assert files == {p.name for p in in_process.result.batch_dir.iterdir()}
    assert list(wire.rows[0]) == list(in_process.rows[0])  # same trace columns
    assert [e["event"] for e in wire.events("step_completed")] == \
        [e["event"] for e in in_process.events("step_completed")]
    # the same physics on both sides of the wire: the dwell happened at the same place
    dwell = [r for r in wire.rows
             if r["stage"] == "heat" and r["setpoint_c"] == f"{PEAK_C:.3f}"]
    assert dwell
    assert abs(float(dwell[-1]["furnace_c"]) - PEAK_C) < 5.0
    assert float(wire.rows[-1]["mass_g"]) > 0.0  # the balance answered over its own line
    assert abs(wire.result.summary["actual_s"] - in_process.result.summary["actual_s"]) < 600


def test_refused_connection_is_one_line_exit_2(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nobody listens here
    text = (ROOT / "stations" / "sim-tcp.toml").read_text(encoding="utf-8")
    station_file = tmp_path / "station.toml"
    station_file.write_text(text.replace("port = 5020", f"port = {port}"), encoding="utf-8")
    code = main(["run", str(SMOKE), "--station", str(station_file), "--speed", "600",
                 "--batches", str(tmp_path / "b")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"furnace: {station_file}: bus: connection refused")
    assert not (tmp_path / "b").exists()  # nothing was started


def test_missing_serial_port_is_one_line_exit_2(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "stations" / "example-eurotherm-alicat.toml").read_text(encoding="utf-8")
    station_file = tmp_path / "lab.toml"
    station_file.write_text(text.replace('device = "COM3"', 'device = "/dev/ttyNOPE7"'),
                            encoding="utf-8")
    assert main(["run", str(SMOKE), "--station", str(station_file),
                 "--batches", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "ttyNOPE7" in err[-1]
    assert err[-1].startswith(f"furnace: {station_file}: bus:")


def test_real_station_refuses_speed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    station = ROOT / "stations" / "example-eurotherm-alicat.toml"
    assert main(["run", str(SMOKE), "--station", str(station), "--speed", "10",
                 "--batches", str(tmp_path)]) == 2
    assert "never runs faster than real time" in capsys.readouterr().err


def test_station_files_load() -> None:
    for path in sorted((ROOT / "stations").glob("*.toml")):
        station, _ = load_station(path)
        assert station.furnace.unit == 1
