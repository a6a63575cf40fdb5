"""Issue 15: instruments described in map files, end to end.

Per shipped map, the simulator serves it over Modbus TCP and the smoke recipe runs through
the map-driven driver to completion, and the connect checks catch a wrong unit id and wrong
decimals (the 3500 map can tell no decimals: it says so); hostile map files named by a
station are refused in one line with nothing left behind; a station waiving a missing
safety feature runs and its audit says what was switched off; ``furnace probe`` against
``furnace sim serve --station`` prints the table and exits 0, and 1 for a wrong unit id.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from controller.recipe.plan import load_recipe
from controller.recipe.station import Station, load_station_text
from controller.records.folder import BatchFolder
from controller.records.verify import verify_batch
from controller.run.clock import VirtualClock
from controller.run.runstate import Phase
from controller.session import BatchResult, run_batch
from controller.station_factory import build_devices, serve_simulator
from drivers.errors import ConfigurationError
from drivers.maps import WHAT_IS_LOST, SafetyFeature
from tests.conftest import PROFILES, ROOT
from tests.integration.helpers import DryRuns, free_port, start_sim_server

SMOKE = PROFILES / "smoke-600.toml"
SETS = {"peak_c": "450"}
MAPS = ROOT / "drivers" / "maps"
WAIVED_3500 = ("volatile_setpoint", "sensor_break", "output_off")


def station_text(port: int, *, furnace_map: str | None = None,
                 accept_missing: tuple[str, ...] = (), mfc_map: str | None = None,
                 furnace_unit: int = 1, decimals: int = 1) -> str:
    """``stations/sim-tcp.toml`` at ``port`` without its balance, with the maps named."""
    text = (ROOT / "stations" / "sim-tcp.toml").read_text(encoding="utf-8")
    text = text.replace("port = 5020", f"port = {port}")
    text = text.replace("timeout_s = 0.5\nretries = 2", "timeout_s = 0.2\nretries = 0")
    text = text[:text.index("[balance]")] + text[text.index("[envelope]"):]
    furnace_lines = f"unit = {furnace_unit}\ndecimals = {decimals}\n"
    if furnace_map is not None:
        furnace_lines += f'map = "{furnace_map}"\n'
    if accept_missing:
        furnace_lines += f"accept_missing = {json.dumps(list(accept_missing))}\n"
    text = text.replace("[furnace]\ndriver = \"eurotherm3216\"\nunit = 1\ndecimals = 1\n",
                        f"[furnace]\ndriver = \"eurotherm3216\"\n{furnace_lines}")
    if mfc_map is not None:
        for n, gas in enumerate(("Ar", "air", "N2")):
            extra = f'map = "{mfc_map}"\n'
            if mfc_map == "builtin:bronkhorst":
                extra += f"gas_number = {n + 1}\n"  # the instrument's own fluid numbers
            text = text.replace(f'gas = "{gas}"\n', f'gas = "{gas}"\n{extra}')
    return text


def _station(folder: Path, text: str, name: str = "station.toml") -> tuple[Station, Path]:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return load_station_text(text, str(path)), path


# (map name, the station's options for it)
SHIPPED: dict[str, dict[str, Any]] = {
    "eurotherm3216": {"furnace_map": "builtin:eurotherm3216"},
    "eurotherm2400": {"furnace_map": "builtin:eurotherm2400"},
    "eurotherm3500": {"furnace_map": "builtin:eurotherm3500", "accept_missing": WAIVED_3500},
    "alicat": {"mfc_map": "builtin:alicat"},
    "bronkhorst": {"mfc_map": "builtin:bronkhorst"},
}


async def _smoke_over_tcp(folder: Path, **options: Any) -> tuple[BatchResult, Station]:
    port = free_port()
    station, _ = _station(folder, station_text(port, **options))
    text = (folder / "station.toml").read_text(encoding="utf-8")
    clock = VirtualClock()
    served = await serve_simulator(station, clock, host="127.0.0.1", port=port)
    try:
        _, plan, frozen = load_recipe(SMOKE, SETS, station)
        result = await run_batch(plan=plan, station=station, recipe_text=frozen,
                                 station_text=text, clock=clock, batches_dir=folder / "b",
                                 operator="pytest", station_source=str(folder / "station.toml"))
    finally:
        await served.stop()
    return result, station


def _first_record(result: BatchResult) -> dict[str, object]:
    with open(result.batch_dir / "audit.jsonl", encoding="utf-8") as f:
        record: dict[str, object] = json.loads(f.readline())
    return record


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SHIPPED))
async def test_each_shipped_map_runs_the_smoke_recipe_over_modbus_tcp(
        tmp_path: Path, name: str) -> None:
    result, station = await _smoke_over_tcp(tmp_path, **SHIPPED[name])
    assert result.state is Phase.COMPLETED, result.summary["end_reason"]
    assert verify_batch(result.batch_dir).ok
    first = _first_record(result)
    maps = first["maps"]
    assert isinstance(maps, dict)
    device = "furnace" if "furnace_map" in SHIPPED[name] else "mfc_Ar"
    assert maps[device]["model"] == name
    frozen = (result.batch_dir / "maps" / f"{device}.toml").read_text(encoding="utf-8")
    assert frozen == (MAPS / f"{name}.toml").read_text(encoding="utf-8")
    peak_c = float(result.summary["peak_measured_c"]["furnace_c"])
    assert 440.0 < peak_c < 470.0


@pytest.mark.parametrize("name", ["eurotherm3216", "eurotherm2400", "eurotherm3500",
                                  "alicat", "bronkhorst"])
async def test_connect_checks_catch_a_wrong_unit_id_and_wrong_decimals(
        tmp_path: Path, name: str) -> None:
    options = SHIPPED[name]
    port = free_port()
    served_station, _ = _station(tmp_path, station_text(port, **options),
                                 "served.toml")
    clock = VirtualClock()
    served = await serve_simulator(served_station, clock, host="127.0.0.1", port=port)
    try:
        async def connect(**changed: Any) -> None:
            station, path = _station(tmp_path, station_text(port, **{**options, **changed}))
            built = build_devices(station, clock)
            try:
                await built.connect(str(path))
            finally:
                await built.close()

        await connect()  # the station as served passes
        with pytest.raises(ConfigurationError, match=r"furnace\.unit: furnace \(unit 9\) "
                                                     "does not answer"):
            await connect(furnace_unit=9)
        if name == "eurotherm3500":  # neither a float PV nor a display-decimals register
            await connect(decimals=2)
        elif "furnace_map" in options:
            with pytest.raises(ConfigurationError, match=r"station says 2 "
                                                         r"\(furnace\.decimals\)"):
                await connect(decimals=2)
    finally:
        await served.stop()


async def test_mfc_maps_catch_a_wrong_unit_id_and_the_wrong_gas(tmp_path: Path) -> None:
    port = free_port()
    served_station, _ = _station(tmp_path, station_text(port, mfc_map="builtin:bronkhorst"),
                                 "served.toml")
    clock = VirtualClock()
    served = await serve_simulator(served_station, clock, host="127.0.0.1", port=port)
    try:
        text = station_text(port, mfc_map="builtin:bronkhorst")
        for old, new, rule in (
                ("unit = 2\n", "unit = 12\n", r"mfc\[Ar\]\.unit: mfc_Ar \(unit 12\) does not"),
                ("gas_number = 1\n", "gas_number = 9\n",
                 r"mfc\[Ar\]: .*gas number 1 .*gas number 9.* mfc\.gas_number")):
            station, path = _station(tmp_path, text.replace(old, new, 1))
            built = build_devices(station, clock)
            try:
                with pytest.raises(ConfigurationError, match=rule):
                    await built.connect(str(path))
            finally:
                await built.close()
    finally:
        await served.stop()


# --- the safety waiver --------------------------------------------------------------------

@pytest.mark.slow
async def test_a_waived_station_runs_and_its_audit_says_what_was_switched_off(
        tmp_path: Path) -> None:
    result, station = await _smoke_over_tcp(tmp_path, **SHIPPED["eurotherm3500"])
    assert result.state is Phase.COMPLETED, result.summary["end_reason"]
    waived = _first_record(result)["safety_waived"]
    assert waived == [{"device": "furnace", "feature": f, "lost": WHAT_IS_LOST[SafetyFeature(f)]}
                      for f in WAIVED_3500]


def test_a_missing_feature_not_waived_is_one_line_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "station.toml"
    path.write_text(station_text(5020, furnace_map="builtin:eurotherm3500"), encoding="utf-8")
    assert main(["validate", str(SMOKE), "--station", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0] == (
        f"furnace: {path}: furnace.map: builtin:eurotherm3500: roles.remote_setpoint: a "
        "temperature controller needs a volatile remote setpoint and a way to select it "
        "(roles.remote_setpoint, roles.remote_select), so that the instrument returns to "
        "its local setpoint when the PC goes silent; bind it, or accept running without it "
        'in the station (furnace.accept_missing = ["volatile_setpoint"])')
    path.write_text(station_text(5020, furnace_map="builtin:eurotherm3500",
                                 accept_missing=WAIVED_3500), encoding="utf-8")
    assert main(["validate", str(SMOKE), "--station", str(path)]) == 0
    out = capsys.readouterr().out
    assert (f"{path}: note: furnace runs without sensor_break: "
            f"{WHAT_IS_LOST[SafetyFeature.SENSOR_BREAK]}") in out.replace("\n", "")


@pytest.mark.parametrize(("options", "rule"), [
    ({"accept_missing": ("rate_limit",)},
     r"furnace\.accept_missing: accepts running without rate_limit, but builtin:eurotherm3216 "
     r"has a setpoint rate limit"),
    ({"accept_missing": ("brakes",)}, r"furnace\.accept_missing: unknown safety feature"),
    ({"furnace_map": "builtin:alicat"},
     r"furnace\.map: builtin:alicat describes a mass_flow_controller, not a "
     r"temperature_controller"),
    ({"furnace_map": "builtin:nope"}, r"furnace\.map: builtin:nope: no built-in map 'nope'"),
    ({"furnace_map": "missing.toml"}, r"furnace\.map: .*missing\.toml: file not found"),
])
def test_bad_station_map_fields_are_one_line_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], options: dict[str, Any],
        rule: str) -> None:
    path = tmp_path / "station.toml"
    path.write_text(station_text(5020, **options), encoding="utf-8")
    assert main(["validate", str(SMOKE), "--station", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"furnace: {path}: ")
    assert re.search(rule, err[0]), err[0]


def test_a_map_without_a_gas_table_needs_the_stations_gas_number(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "station.toml"
    text = station_text(5020, mfc_map="builtin:bronkhorst").replace("gas_number = 1\n", "")
    path.write_text(text, encoding="utf-8")
    assert main(["validate", str(SMOKE), "--station", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"furnace: {path}: mfc[Ar].gas_number: builtin:bronkhorst numbers its "
                   "gases itself (no gas table): give the number the instrument shows for Ar")


# --- hostile map files ----------------------------------------------------------------------

HOSTILE = {
    "overlapping registers": (('name = "Ti"\naddress = 8', 'name = "Ti"\naddress = 6'),
                              "registers[6].address: Ti (words 6-6) overlaps PB "
                              "(registers[5]) at 6 in the holding table"),
    "an unknown type": (('type = "int16"', 'type = "int24"'),
                        "registers[0].type: unknown type 'int24'"),
    "an address out of range": (("address = 276", "address = 70000"),
                                "registers[20].address: 70000 is outside 0..65535"),
    "a float alias past 65535": (("address = 26\n", "address = 20000\n"),
                                 "registers[11].float_alias: the float alias of Rm.SP at "
                                 "72768 needs words 72768-72769: past 65535"),
    "a written role on a read-only register": (
        ('remote_setpoint = "Rm.SP.F"', 'remote_setpoint = "WKG.SP.F"'),
        'roles.remote_setpoint: WKG.SP.F is read-only (access = "ro"), but the driver '
        "writes this role"),
    "a read role on a write-only register": (
        ('process_value = "PV.IN.F"', 'process_value = "Ac.ALL"'),
        'roles.process_value: Ac.ALL is write-only (access = "wo"), but the driver reads '
        "this role"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_hostile_map_named_by_a_station_is_one_line_exit_2_and_nothing_left(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, command: str) -> None:
    (old, new), rule = HOSTILE[case]
    text = (MAPS / "eurotherm3216.toml").read_text(encoding="utf-8")
    assert old in text
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "hostile.toml").write_text(text.replace(old, new, 1), encoding="utf-8")
    path = tmp_path / "station.toml"
    builtin = (ROOT / "controller" / "builtin" / "sim.toml").read_text(encoding="utf-8")
    path.write_text(builtin.replace("[furnace]\n", '[furnace]\nmap = "maps/hostile.toml"\n'),
                    encoding="utf-8")
    batches = tmp_path / "b"
    argv = [command, str(SMOKE), "--station", str(path)]
    if command == "run":
        argv += ["--batches", str(batches)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"furnace: {path}: furnace.map: {tmp_path / 'maps' / 'hostile.toml'}:")
    assert rule in err[0]
    assert not batches.exists()


# --- furnace probe ------------------------------------------------------------------------

@contextmanager
def sim_serve(station: Path) -> Iterator[int]:
    """``furnace sim serve --station STATION`` as a child process; yields its port."""
    server, port = start_sim_server(100, station=station)
    try:
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_probe_reads_a_served_station_and_its_connect_checks(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    served = tmp_path / "served.toml"
    served.write_text(station_text(5020, furnace_map="builtin:eurotherm2400",
                                   mfc_map="builtin:bronkhorst"), encoding="utf-8")
    with sim_serve(served) as port:
        path = tmp_path / "station.toml"
        text = station_text(port, furnace_map="builtin:eurotherm2400",
                            mfc_map="builtin:bronkhorst")
        path.write_text(text, encoding="utf-8")
        assert main(["probe", "--station", str(path)]) == 0
        out = capsys.readouterr().out
        for expected in ("furnace: eurotherm2400 at unit 1", "mfc_Ar: bronkhorst at unit 2",
                         "RATE.UNITS", "connect check furnace (unit 1): pass",
                         "connect check mfc_N2 (unit 4): pass", "6 of 6 connect checks passed",
                         "furnace: decimals: scaled PV PV compared with float PV PV.F"):
            assert expected in out, expected
        path.write_text(text.replace("unit = 1\n", "unit = 9\n", 1), encoding="utf-8")
        assert main(["probe", "--station", str(path)]) == 1
        out = capsys.readouterr().out
        assert "connect check furnace (unit 9): FAIL: furnace.unit: furnace (unit 9) does " \
               "not answer" in out
        assert "5 of 6 connect checks passed" in out


def test_probe_of_a_bad_station_is_exit_2(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "station.toml"
    path.write_text(station_text(5020, furnace_map="builtin:eurotherm3500"), encoding="utf-8")
    assert main(["probe", "--station", str(path)]) == 2
    assert "furnace.map: builtin:eurotherm3500" in capsys.readouterr().err


# --- the frozen maps ------------------------------------------------------------------------

def test_a_batch_freezes_its_maps_and_resume_reads_the_frozen_copies(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    own = tmp_path / "lab" / "my-2400.toml"
    own.parent.mkdir()
    own.write_text((MAPS / "eurotherm2400.toml").read_text(encoding="utf-8"), encoding="utf-8")
    station = tmp_path / "lab" / "station.toml"
    builtin = (ROOT / "controller" / "builtin" / "sim.toml").read_text(encoding="utf-8")
    station.write_text(builtin.replace("[furnace]\n", '[furnace]\nmap = "my-2400.toml"\n'),
                       encoding="utf-8")
    batches = tmp_path / "b"
    assert main(["run", str(SMOKE), "--set", "peak_c=450", "--station", str(station),
                 "--batches", str(batches)]) == 0
    (batch_dir,) = batches.iterdir()
    first = json.loads((batch_dir / "audit.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["maps"]["furnace"]["map"] == "my-2400.toml"
    assert first["maps"]["furnace"]["model"] == "eurotherm2400"
    assert first["safety_waived"] == []
    own.unlink()  # the lab's file is gone: the batch's own copy is what resume reads
    frozen, _ = BatchFolder(batch_dir).read_station()
    assert frozen.maps.furnace.imap.model == "eurotherm2400"
    assert frozen.maps.furnace.sha256 == first["maps"]["furnace"]["sha256"]
    capsys.readouterr()
    assert main(["verify", str(batch_dir)]) == 0


def test_verify_catches_a_changed_missing_or_added_map(tmp_path: Path,
                                                       dry_runs: DryRuns) -> None:
    copy = tmp_path / "batch"
    shutil.copytree(dry_runs(SMOKE, SETS).result.batch_dir, copy)
    assert verify_batch(copy).ok
    furnace_map = copy / "maps" / "furnace.toml"
    text = furnace_map.read_text(encoding="utf-8")
    furnace_map.chmod(0o644)
    furnace_map.write_text(text.replace("address = 26\n", "address = 27\n"), encoding="utf-8")
    result = verify_batch(copy)
    assert not result.ok
    assert result.reason.startswith("maps/furnace.toml: sha256 ")
    furnace_map.write_text(text, encoding="utf-8")
    (copy / "maps" / "extra.toml").write_text(text, encoding="utf-8")
    assert verify_batch(copy).reason == "maps/extra.toml: not named in record 0 (added since " \
                                        "start)"
    (copy / "maps" / "extra.toml").unlink()
    (copy / "maps" / "o2.toml").chmod(0o644)
    (copy / "maps" / "o2.toml").unlink()
    assert verify_batch(copy).reason == "maps/o2.toml: missing (deleted since start)"
