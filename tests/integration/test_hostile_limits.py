"""Bad input that reached a traceback, a hang or a broken record (issue 9, item 10): absurd
finite numbers, absurd ``--speed`` factors and ports, ``--batches`` at a file, line separators
in names, and station envelopes that contradict themselves.

The contract is that of ``test_hostile_inputs``: exit 2 and exactly one line on stderr,
``furnace: `` then the file (or argument), the field and the rule; nothing created, nothing
started. Each case here failed that contract before it was fixed.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path

import pytest

from controller.cli import main
from tests.conftest import PROFILES, ROOT

SMOKE = PROFILES / "smoke-600.toml"
SMOKE_TEXT = SMOKE.read_text(encoding="utf-8")
STATION_TEXT = (ROOT / "stations" / "sim-tcp.toml").read_text(encoding="utf-8")


def _cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``furnace ARGV`` in-process: exit code and stderr. argparse errors are SystemExit."""
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else -1
    return code, capsys.readouterr().err


def _one_line(code: int, err: str, *words: str | Path) -> str:
    """Exit 2, one line on stderr starting ``furnace: ``, naming every one of ``words``."""
    assert code == 2, (code, err)
    line = err.removesuffix("\n")
    assert line.startswith("furnace: "), line
    for breaker in ("\n", "\r", "\u2028", "\u2029", "\x85"):
        assert breaker not in line, repr(line)
    assert "Traceback" not in line
    for word in words:
        assert str(word) in line, (word, line)
    return line


def _recipe(tmp_path: Path, old: str, new: str) -> Path:
    assert old in SMOKE_TEXT, old
    path = tmp_path / "recipe.toml"
    path.write_text(SMOKE_TEXT.replace(old, new, 1), encoding="utf-8")
    return path


def _station(tmp_path: Path, old: str, new: str) -> Path:
    assert old in STATION_TEXT, old
    path = tmp_path / "station.toml"
    path.write_text(STATION_TEXT.replace(old, new, 1), encoding="utf-8")
    return path


# --- absurd finite numbers in a recipe ---------------------------------------------------

ABSURD_DURATIONS = [
    ("purge-volumes-1e308", "volumes = 8 ", "volumes = 1e308 ", "steps[1].volumes"),
    ("purge-volumes-1e5", "volumes = 8 ", "volumes = 1e5 ", "steps[1].volumes"),
    ("purge-flow-1e-300", "flow_sccm = 500 ", "flow_sccm = 1e-300 ", "steps[1].flow_sccm"),
    ("ramp-rate-1e-300", "rate_c_per_min = 10 ", "rate_c_per_min = 1e-300 ",
     "stages[heat].steps[1].rate_c_per_min"),
    ("dwell-1e308", "duration_min = 10 ", "duration_min = 1e308 ",
     "stages[heat].steps[2].duration_min"),
    ("dwell-a-year", "duration_min = 10 ", "duration_min = 525600 ",
     "stages[heat].steps[2].duration_min"),
    ("holdback-1e308", "band_c = 5", "band_c = 5\nmax_holdback_min = 1e308",
     "steps[2].max_holdback_min"),
    ("cool-rate-1e-300", "rate_c_per_min = 5", "rate_c_per_min = 1e-300",
     "stages[cool].steps[1].rate_c_per_min"),
    ("sample-mass-1e308", "mass_g = 0.5 ", "mass_g = 1e308 ", "sample_material.mass_g"),
]


@pytest.mark.parametrize(("old", "new", "field"), [c[1:] for c in ABSURD_DURATIONS],
                         ids=[c[0] for c in ABSURD_DURATIONS])
@pytest.mark.parametrize("command", ["validate", "plan"])
def test_absurd_numbers_in_a_recipe_are_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 command: str, old: str, new: str,
                                                 field: str) -> None:
    """``validate`` said valid and ``plan`` raised (NaN hours, inf durations)."""
    path = _recipe(tmp_path, old, new)
    _one_line(*_cli([command, str(path)], capsys), path, field)


def test_absurd_purge_never_starts_a_run(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``run`` raised from the disk-space estimate of an infinite plan."""
    path = _recipe(tmp_path, "volumes = 8 ", "volumes = 1e308 ")
    batches = tmp_path / "batches"
    line = _one_line(*_cli(["run", str(path), "--batches", str(batches)], capsys), path,
                     "volumes")
    assert "7 days" in line
    assert not batches.exists()


def test_a_week_long_step_is_still_allowed(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = _recipe(tmp_path, "duration_min = 10 ", "duration_min = 10000 ")  # ~6.9 days
    assert _cli(["validate", str(path)], capsys)[0] == 0


# --- --speed, ports, --batches, --operator ---------------------------------------------

BAD_SPEEDS = ["inf", "-inf", "1e-320", "nan", "0", "-1", "1e308", "0.5", "10001", "fast"]


@pytest.mark.parametrize("speed", BAD_SPEEDS)
@pytest.mark.parametrize("command", ["run", "resume", "sim serve"])
def test_absurd_speed_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  command: str, speed: str) -> None:
    """``--speed inf`` raised OverflowError; 1e-320 and 1e308 hung (a sleep of 1e300 s,
    or time that never moved); ``sim serve --speed inf`` served forever at infx."""
    argv = {"run": ["run", str(SMOKE), "--batches", str(tmp_path / "b")],
            "resume": ["resume", str(tmp_path)],
            "sim serve": ["sim", "serve", "--port", "0"]}[command]
    _one_line(*_cli([*argv, f"--speed={speed}"], capsys), "--speed", "10000")
    assert not (tmp_path / "b").exists()


def test_sim_serve_speed_max_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """``max`` is a virtual clock for an in-process run; the served simulator raised
    TypeError formatting None."""
    _one_line(*_cli(["sim", "serve", "--port", "0", "--speed", "max"], capsys), "--speed")


@pytest.mark.parametrize("argv", [
    ["--port", "70000"], ["--port", "-5"], ["--port", "x"], ["--rtu-port", "0"],
    ["--rtu-port", "99999"], ["--balance", "tcp:abc"], ["--balance", "tcp:70000"],
    ["--balance", "tcp:"]], ids=lambda a: " ".join(a))
def test_sim_serve_bad_ports_are_one_line(capsys: pytest.CaptureFixture[str],
                                          argv: list[str]) -> None:
    """bind() raised OverflowError, int('abc') ValueError."""
    option = argv[0]
    _one_line(*_cli(["sim", "serve", *(["--port", "0"] if option != "--port" else []),
                     *argv], capsys), option)


@pytest.mark.parametrize("where", ["file", "below-a-file"])
def test_batches_at_a_file_is_one_line_before_anything_moves(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str) -> None:
    """``--batches`` at a file raised FileExistsError after connecting and locking."""
    blocker = tmp_path / "batches"
    blocker.write_text("not a folder\n", encoding="utf-8")
    target = blocker if where == "file" else blocker / "more"
    _one_line(*_cli(["run", str(SMOKE), "--batches", str(target)], capsys), target,
              "--batches", "not a folder")
    assert blocker.read_text(encoding="utf-8") == "not a folder\n"


@pytest.mark.parametrize("command", ["run", "ctl"])
@pytest.mark.parametrize("text", ["ann\u2028bob", "ann\nbob", "ann\rbob", "\u202eann", ""],
                         ids=["LS", "LF", "CR", "RLO", "empty"])
def test_operator_names_are_one_printable_line(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               command: str, text: str) -> None:
    argv = (["run", str(SMOKE), "--batches", str(tmp_path / "b"), "--operator", text]
            if command == "run" else ["ctl", str(tmp_path), "hold", "--operator", text])
    _one_line(*_cli(argv, capsys), "--operator")
    assert not (tmp_path / "b").exists()


def test_ctl_reason_is_one_printable_line(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _one_line(*_cli(["ctl", str(tmp_path), "stop", "--operator", "ann", "--reason",
                     "done\u2028really"], capsys), "--reason")


# --- text that would break the trace, the audit or the report ---------------------------

SEPARATORS = {"LS": "\\u2028", "PS": "\\u2029", "NEL": "\\u0085", "CR": "\\r", "VT": "\\u000b",
              "RLO": "\\u202e", "BOM": "\\ufeff", "ZWSP": "\\u200b"}
TEXT_FIELDS = [
    ("stage-name", 'name = "heat"', 'name = "he{}at"', "stages[2].name"),
    ("recipe-name", 'name = "smoke"', 'name = "smo{}ke"', "name"),
    ("atmosphere", 'name = "heat"\natmosphere = "Ar"', 'name = "heat"\natmosphere = "A{}r"',
     "stages[heat].atmosphere"),
    ("description", 'description = "Station', 'description = "Sta{}tion', "description"),
    ("parameter-unit", "default = 600", 'default = 600\nunit = "°{}C"', "parameters.peak_c.unit"),
    ("operator-message", '[[stages.steps]]\nkind = "end"',
     '[[stages.steps]]\nkind = "operator"\nmessage = "Unload{}the boat"\n'
     '[[stages.steps]]\nkind = "end"', "message"),
]


@pytest.mark.parametrize("char", list(SEPARATORS.values()), ids=list(SEPARATORS))
@pytest.mark.parametrize(("old", "new", "field"), [c[1:] for c in TEXT_FIELDS],
                         ids=[c[0] for c in TEXT_FIELDS])
def test_line_separators_and_invisible_characters_in_text_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, field: str,
        char: str) -> None:
    """A stage named with U+2028 validated, ran, and then broke ``furnace report`` (the
    trace's stage column split into two lines). Names and messages go into the trace, the
    audit, file names and the console: one line of printable text (messages and
    descriptions may use newlines)."""
    path = _recipe(tmp_path, old, new.format(char))
    line = _one_line(*_cli(["validate", str(path)], capsys), path, field)
    assert "printable" in line


@pytest.mark.parametrize("field", ["description", "operator-message"])
def test_messages_and_descriptions_may_span_lines(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  field: str) -> None:
    _, old, new, _ = next(c for c in TEXT_FIELDS if c[0] == field)
    path = _recipe(tmp_path, old, new.format("\\n\\t"))
    assert _cli(["validate", str(path)], capsys)[0] == 0


def test_printable_unicode_names_are_fine(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = _recipe(tmp_path, 'name = "heat"', 'name = "Aufheizen auf 600 °C — 加热"')
    assert _cli(["validate", str(path)], capsys)[0] == 0


def test_a_stage_name_with_a_line_separator_never_reaches_a_batch(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _recipe(tmp_path, 'name = "heat"', 'name = "he\\u2028at"')
    _one_line(*_cli(["run", str(path), "--batches", str(tmp_path / "b")], capsys), path)
    assert not (tmp_path / "b").exists()


# --- station envelopes that contradict themselves ----------------------------------------

CONTRADICTIONS = [
    ("air-above-max", "air_max_c = 250.0", "air_max_c = 1700.0", "envelope.air_max_c",
     "max_temperature_c"),
    ("open-tube-above-air", "open_tube_max_c = 100.0", "open_tube_max_c = 300.0",
     "envelope.open_tube_max_c", "air_max_c"),
    ("open-tube-below-ambient", "open_tube_max_c = 100.0", "open_tube_max_c = 20.0",
     "envelope.open_tube_max_c", "ambient_c"),
    ("ambient-60", "ambient_c = 25.0", "ambient_c = 60.0", "envelope.ambient_c", "50"),
    ("ambient-minus-5", "ambient_c = 25.0", "ambient_c = -5.0", "envelope.ambient_c", "0"),
    ("cooling-60", "max_cooling_rate_c_per_min = 5.0", "max_cooling_rate_c_per_min = 60.0",
     "envelope.max_cooling_rate_c_per_min", "50"),
    ("ramp-band-51", "max_rate_c_per_min = 10.0", "max_rate_c_per_min = 51.0",
     "envelope.ramp_limits.0.max_rate_c_per_min", "50"),
    ("max-temperature-1e300", "max_temperature_c = 1650.0", "max_temperature_c = 1e300",
     "envelope.max_temperature_c", "1820"),
    ("tube-1e-9-litres", "tube_volume_l = 1.96", "tube_volume_l = 1e-9",
     "envelope.tube_volume_l", "0.02"),
    ("tube-1e9-litres", "tube_volume_l = 1.96", "tube_volume_l = 1e9",
     "envelope.tube_volume_l", "200"),
    ("mfc-full-scale-0", "full_scale_sccm = 1000.0     # 1", "full_scale_sccm = 0.0     # 1",
     "mfc.0.full_scale_sccm", "1"),
    ("mfc-full-scale-1e300", "full_scale_sccm = 1000.0     # 1",
     "full_scale_sccm = 1e300     # 1", "mfc.0.full_scale_sccm", "100000"),
    ("air-not-oxidising", "oxidising = true\n", "\n", "mfc.1.oxidising", "oxidising = true"),
    ("holdback-1e300", "ambient_c = 25.0", "ambient_c = 25.0\nmax_holdback_default_min = 1e300",
     "envelope.max_holdback_default_min", ""),
    ("bus-timeout-1e300", "timeout_s = 0.5", "timeout_s = 1e300", "bus.timeout_s", "10"),
    ("name-with-LS", 'name = "sim-tcp"', 'name = "sim\\u2028tcp"', "name", "printable"),
    ("host-with-CR", 'host = "127.0.0.1"', 'host = "127.0.0.1\\r"', "bus.host", "printable"),
]


@pytest.mark.parametrize(("old", "new", "field", "rule"), [c[1:] for c in CONTRADICTIONS],
                         ids=[c[0] for c in CONTRADICTIONS])
def test_contradictory_station_envelope_is_one_line(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    old: str, new: str, field: str,
                                                    rule: str) -> None:
    path = _station(tmp_path, old, new)
    _one_line(*_cli(["validate", str(SMOKE), "--station", str(path)], capsys), path,
              f": {field}: ", rule)


@pytest.mark.parametrize(("gas", "extra"), [
    ("O2", ""), ("oxygen", ""), ("SynAir", ""), ("Air", ""), ("N2O", ""),
    ("Mix", "o2_fraction = 0.05\n"), ("Ar", "o2_fraction = 0.001\n")])
def test_a_gas_with_oxygen_must_be_marked_oxidising(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    gas: str, extra: str) -> None:
    path = _station(tmp_path, 'gas = "N2"\nunit = 4\nfull_scale_sccm = 1000.0\n',
                    f'gas = "N2"\nunit = 4\nfull_scale_sccm = 1000.0\n\n[[mfc]]\n'
                    f'gas = "{gas}"\nunit = 7\nfull_scale_sccm = 500.0\n{extra}')
    _one_line(*_cli(["validate", str(SMOKE), "--station", str(path)], capsys), path,
              "mfc.3.oxidising", gas)


def test_inert_gas_purity_is_not_oxygen(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A few ppm O2 in argon (commercial grade, hardware.md §4.5) is still inert."""
    path = _station(tmp_path, 'gas = "Ar"\nunit = 2\n', 'gas = "Ar"\nunit = 2\n'
                    "o2_fraction = 0.00002\n")
    assert _cli(["validate", str(SMOKE), "--station", str(path)], capsys)[0] == 0


def test_tube_exchanged_within_one_scan_is_one_line(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Each bound alone is physical; together the purge takes no time to the controller:
    0.02 L at 100 slpm is 0.012 s, against a 2 s scan."""
    text = STATION_TEXT.replace("tube_volume_l = 1.96", "tube_volume_l = 0.02").replace(
        "full_scale_sccm = 1000.0     # 1", "full_scale_sccm = 100000.0     # 1")
    path = tmp_path / "station.toml"
    path.write_text(text, encoding="utf-8")
    _one_line(*_cli(["validate", str(SMOKE), "--station", str(path)], capsys), path,
              "envelope.tube_volume_l", "scan")


def test_the_shipped_stations_satisfy_the_new_rules() -> None:
    for path in sorted((ROOT / "stations").glob("*.toml")):
        assert main(["validate", str(SMOKE), "--station", str(path)]) == 0, path
    assert tomllib.loads(STATION_TEXT)["envelope"]["ambient_c"] == 25.0
