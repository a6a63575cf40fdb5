"""The ``furnace`` command line: exit codes, one-line errors, and the batch it prints."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from controller.cli import main
from controller.records.batch import write_summary
from tests.conftest import PROFILES, ROOT
from tests.integration.helpers import furnace
from tests.integration.recipes import (
    TINY,
    cool,
    dwell,
    end,
    purge_step,
    ramp,
    recipe,
    stage,
    step,
    table,
    write,
)
from tests.records import audit_records, make_hashed_batch, rewrite_chain

# Air pre-oxidation at 220 °C, then argon to TOP_C; the cases below edit its text.
PURGE = purge_step()
BASE = recipe(
    "cli", "CLI{acid_wt}-{top_c}",
    stage("oxidise", step("gas", flows_sccm={"air": 200}), ramp(220, 5), dwell(10),
          atmosphere="air"),
    stage("inert", PURGE, ramp("{top_c}", 5), dwell(10), cool(100), end()),
    head=(table("parameters.acid_wt", default=50, min=0, max=80)
          + table("parameters.top_c", default=600, min=100, max=1700)))

# (name, replace this, with that, extra --set, words the one-line error must contain)
BAD = [
    ("above station maximum", 'default = 600\n', 'default = 1700\n', [], ["to_c", "1650"]),
    ("ramp above station limit", 'to_c = "{top_c}"\nrate_c_per_min = 5',
     'to_c = "{top_c}"\nrate_c_per_min = 20', [], ["rate_c_per_min", "10"]),
    ("air above air limit", "to_c = 220\n", "to_c = 300\n", [], ["air", "250"]),
    ("heating under argon without purge", PURGE,
     '[[stages.steps]]\nkind = "gas"\nflows_sccm = { Ar = 200 }\n', [], ["purge", "Ar"]),
    ("zero duration", "duration_min = 10\nband_c = 5\n[[stages]]",
     "duration_min = 0\nband_c = 5\n[[stages]]", [], ["duration_min", "greater than 0"]),
    ("negative duration", "duration_min = 10\nband_c = 5\n[[stages]]",
     "duration_min = -5\nband_c = 5\n[[stages]]", [], ["duration_min"]),
    ("unknown field", 'name = "cli"\n', 'name = "cli"\ncolour = "red"\n', [], ["colour",
                                                                              "unknown"]),
    ("wrong type", "to_c = 220\n", 'to_c = "hot"\n', [], ["to_c"]),
    ("missing unit-bearing field", "to_c = 220\n", "to = 220\n", [], ["to_c"]),
    ("parameter outside bounds", "", "", ["acid_wt=95"], ["acid_wt", "95", "80"]),
    ("gas the station lacks", "flows_sccm = { air = 200 }", "flows_sccm = { He = 200 }", [],
     ["He", "Ar"]),
    ("unknown --set key", "", "", ["colour=red"], ["colour"]),
    ("bad TOML", 'name = "cli"\n', 'name = "cli\n', [], ["TOML"]),
]


def _write(tmp_path: Path, old: str, new: str) -> Path:
    assert old in BASE or not old
    path = tmp_path / "recipe.toml"
    path.write_text(BASE.replace(old, new, 1) if old else BASE, encoding="utf-8")
    return path


def test_base_recipe_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(_write(tmp_path, "", ""))]) == 0
    assert "valid" in capsys.readouterr().out


@pytest.mark.parametrize(("name", "old", "new", "sets", "words"), BAD, ids=[b[0] for b in BAD])
def test_validate_rejects_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        name: str, old: str, new: str, sets: list[str],
                                        words: list[str]) -> None:
    path = _write(tmp_path, old, new)
    argv = ["validate", str(path)] + [x for s in sets for x in ("--set", s)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert "Traceback" not in err
    assert str(path) in err
    for word in words:
        assert word in err, (word, err)


def test_missing_recipe_file_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "no/such/recipe.toml"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no/such/recipe.toml" in err
    assert "not found" in err


def test_bad_station_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    station = tmp_path / "station.toml"
    station.write_text('schema_version = 1\nname = "x"\n', encoding="utf-8")
    assert main(["validate", str(PROFILES / "pop70-600-1600.toml"), "--station",
                 str(station)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(station) in err
    assert "\n" not in err


def _twin_station(tmp_path: Path, twin: str) -> Path:
    """The built-in station with ``twin`` as its ``[twin]`` section, as a file."""
    text = (ROOT / "controller" / "builtin" / "sim.toml").read_text(encoding="utf-8")
    station = tmp_path / "station.toml"
    station.write_text(f"{text}\n[twin]\n{twin}", encoding="utf-8")
    return station


@pytest.mark.parametrize(("twin", "words"), [
    ("tc_tau_s = 5000\n", "twin.tc_tau_s: Input should be less than or equal to 1800"),
    ("output_low_pct = 60\noutput_high_pct = 40\n", "twin.output_low_pct: 60 % is not below"),
    ("heat_capacity = 1e4\n", "twin.heat_capacity: unknown field"),
])
def test_a_bad_twin_stops_a_run_with_one_line(tmp_path: Path, twin: str, words: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    station = _twin_station(tmp_path, twin)
    assert main(["run", str(PROFILES / "smoke-600.toml"), "--station", str(station),
                 "--batches", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"furnace: {station}: twin.")
    assert words in err
    assert "\n" not in err
    assert not (tmp_path / "b").exists()


def test_bad_arguments_are_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "x.toml", "--speed", "fast"])
    assert info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_plan_prints_duration_peak_and_gas(capsys: pytest.CaptureFixture[str]) -> None:
    """The shortest shipped profile (a prediction is a whole run on the simulator; every
    profile's prediction is checked against its dry run in test_plan_prediction)."""
    assert main(["plan", str(PROFILES / "smoke-600.toml")]) == 0
    out = capsys.readouterr().out
    assert "peak temperature: 60" in out
    assert "(setpoint 600 °C)" in out
    assert "Ar: 62." in out
    assert "heat" in out
    assert "twin: the built-in furnace model (not fitted to this station)\n" in out


def test_plan_json_gives_stages_steps_total_gas_peak(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(PROFILES / "smoke-600.toml"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in doc["stages"]] == ["purge", "heat", "cool"]
    assert doc["stages"][0]["start_s"] == 0.0
    assert sum(s["predicted_s"] for s in doc["stages"]) == pytest.approx(doc["total_s"],
                                                                         abs=10)
    assert doc["operator_steps"] == []
    assert set(doc["gas_l"]) == {"Ar", "air", "N2"}
    assert 595 < doc["peak_c"] < 615
    assert doc["outcome"] == "completed"
    assert doc["twin"] == "the built-in furnace model (not fitted to this station)"


@pytest.mark.parametrize(("twin", "said"), [
    ("heat_capacity_j_per_k = 5700.0\n", "set by hand in the station file (not fitted)"),
    ('heat_capacity_j_per_k = 5700.0\n\n[twin.fit]\nfitted_utc = "2026-12-01T21:30:00Z"\n'
     'batches = ["A", "B"]\nrms_k = [1.5, 1.23]\none_sigma = { heat_capacity_j_per_k = 40.0 }\n',
     "fitted 2026-12-01T21:30:00Z from 2 batches (A, B), replay error 1.2-1.5 K RMS"),
])
def test_plan_says_which_twin_it_used(tmp_path: Path, twin: str, said: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """On the shortest recipe (recipes.TINY): the line, and the same words in --json."""
    station, recipe = _twin_station(tmp_path, twin), write(tmp_path, TINY)
    assert main(["plan", str(recipe), "--station", str(station)]) == 0
    assert f"\ntwin: {said}\n" in capsys.readouterr().out
    assert main(["plan", str(recipe), "--station", str(station), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["twin"] == said


def test_run_prints_batch_folder_and_verify_detects_tampering(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The run path of the CLI, on the shortest recipe (recipes.TINY, 35 min of process
    time; BASE is about 5 h)."""
    recipe = write(tmp_path, TINY)
    assert main(["run", str(recipe), "--batches", str(tmp_path / "b"), "--operator",
                 "tester"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("twin: the built-in furnace model (not fitted to this station)\n")
    batch = Path(out.strip().splitlines()[-1].removeprefix("batch: "))
    assert (batch / "summary.json").exists()
    assert json.loads((batch / "summary.json").read_text())["outcome"] == "completed"
    assert main(["verify", str(batch)]) == 0
    audit = batch / "audit.jsonl"
    data = bytearray(audit.read_bytes())
    data[len(data) // 2] ^= 0x01  # one changed bit
    audit.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["verify", str(batch)]) == 1
    assert "record" in capsys.readouterr().out


def test_entry_point_runs_as_a_process() -> None:
    proc = subprocess.run(furnace("validate", str(PROFILES / "hsp30-600-1400.toml")),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


# --- furnace verify: verdicts and exit codes (issue 9, item 8) ------------------------------


def _verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # what building the batch logged
    code = main(["verify", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_verify_intact_batch_against_its_anchor_is_exit_0(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "anchors" / "sim.anchors.jsonl"
    batch = make_hashed_batch(tmp_path / "b", anchor_log=log)
    code, out, _ = _verify(capsys, str(batch), "--anchor", str(log))
    assert code == 0
    assert out.startswith(f"{batch}: intact: 4 records, final hash ")
    assert "warning" not in out


def test_verify_interrupted_batch_is_exit_0_and_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    batch = make_hashed_batch(tmp_path, ended=False)
    code, out, _ = _verify(capsys, str(batch))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{batch}: intact so far, interrupted: 3 records")
    assert lines[1] == (f"{batch}: warning: trace.csv: 2 rows after the last checkpoint "
                        "(record 2) not yet covered by the audit")


@pytest.mark.parametrize("tamper", ["summary", "trace_row", "trace_file", "tail"])
def test_verify_tampered_batch_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         tamper: str) -> None:
    batch = make_hashed_batch(tmp_path)
    summary_path, trace = batch / "summary.json", batch / "trace.csv"
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    if tamper == "summary":
        write_summary(batch, {**summary, "outcome": "completed", "peak_c": 1500.0})
    elif tamper == "trace_row":
        trace.write_bytes(trace.read_bytes().replace(b"605.000", b"615.000", 1))
    elif tamper == "trace_file":
        trace.unlink()
    else:  # drop batch_ended and make the summary point at the record before it
        lines = (batch / "audit.jsonl").read_bytes().splitlines(keepends=True)[:-1]
        (batch / "audit.jsonl").write_bytes(b"".join(lines))
        write_summary(batch, {**summary, "audit_records": len(lines),
                              "audit_final_hash": json.loads(lines[-1])["hash"]})
    code, out, _ = _verify(capsys, str(batch))
    assert code == 1
    assert out.startswith(f"{batch}: TAMPERED or damaged: ")


def test_verify_rewritten_chain_is_exit_1_against_the_anchor_log(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "anchors" / "sim.anchors.jsonl"
    batch = make_hashed_batch(tmp_path / "b", anchor_log=log)
    records = audit_records(batch)
    records[2]["run_state"]["elapsed_s"] = 99.0
    rewrite_chain(batch, records)
    assert _verify(capsys, str(batch))[0] == 0  # consistent in itself
    code, out, _ = _verify(capsys, str(batch), "--anchor", str(log))
    assert code == 1
    assert "rewritten chain does not match the anchor log" in out


@pytest.mark.parametrize("make", ["absent", "empty", "foreign"])
def test_verify_a_folder_that_is_not_a_batch_is_exit_2_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str) -> None:
    folder = tmp_path / "x"
    if make != "absent":
        folder.mkdir()
    if make == "foreign":
        (folder / "audit.jsonl").write_text('{"event": "login", "user": "ana"}\n')
    code, out, err = _verify(capsys, str(folder))
    assert code == 2
    assert out == ""
    assert err.startswith(f"furnace: {folder}: not a batch folder: ")
    assert "TAMPERED" not in err
    assert len(err.strip().splitlines()) == 1


def test_verify_with_a_missing_anchor_log_is_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    batch = make_hashed_batch(tmp_path)
    code, _, err = _verify(capsys, str(batch), "--anchor", str(tmp_path / "nope.jsonl"))
    assert code == 2
    assert err.strip() == f"furnace: {tmp_path / 'nope.jsonl'}: --anchor: no such anchor log"
