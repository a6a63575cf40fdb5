"""Batch report: loading a batch folder, event extraction on synthetic traces, the PNG."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controller.analysis.data import load_batch
from controller.analysis.events import analyse
from controller.analysis.report import decimate, write_report_png
from controller.analysis.series import heating_rate_c_per_min, moving_mean
from controller.analysis.table import format_events
from controller.recipe.station import load_station
from controller.records.columns import REQUIRED_COLUMNS
from controller.records.folder import BatchFolder
from drivers.errors import ConfigurationError

PEAK_C = 221.0
BUILTIN_STATION = load_station(None)[1]  # Ar and N2 inert, air declared oxidising
MASS_MIN_C = 170.0
SCAN_S = 2.0
RATE_C_PER_MIN = 2.0

SCREEN_RECIPE = """\
schema_version = 1
name = "screen-air"
sample = "SCREEN-POP70"

[[stages]]
name = "screening ramp"
atmosphere = "air"
steps = [
    { kind = "gas", flows_sccm = { air = 200 } },
    { kind = "ramp", to_c = 320, rate_c_per_min = 2 },
]

[[stages]]
name = "cool-down"
atmosphere = "air"
steps = [
    { kind = "cool", to_c = 100, rate_c_per_min = 5 },
    { kind = "end" },
]
"""


def _audit(records: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for seq, r in enumerate(records):
        lines.append(json.dumps({"seq": seq, "wall_utc": "2026-01-01T00:00:00.000Z", **r,
                                 "prev": "0" * 64, "hash": "0" * 64}))
    return "\n".join(lines) + "\n"


def _trace_text(columns: Mapping[str, Sequence[Any]]) -> str:
    names = list(columns)
    out = [",".join(names)]
    for row in zip(*columns.values(), strict=True):
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append("" if not math.isfinite(v) else f"{v:.4f}")
            else:
                cells.append(str(v))
        out.append(",".join(cells))
    return "\n".join(out) + "\n"


def screening_trace(*, seed: int = 0, sample_channels: bool = True,
                    exotherm_c: float = 3.0) -> dict[str, Any]:
    """A 2 °C/min ramp 25 -> 320 °C in air, then cooling at 5 °C/min to 100 °C.

    ΔT = −1 °C (lag) + a Gaussian exotherm (σ 12 °C) at 221 °C; mass % has its minimum at
    170 °C (quadratic, 95 %); both with seeded noise.
    """
    rng = np.random.default_rng(seed)
    t_ramp = np.arange(0.0, (320.0 - 25.0) / RATE_C_PER_MIN * 60.0, SCAN_S)
    t_cool = t_ramp[-1] + SCAN_S + np.arange(0.0, 220.0 / 5.0 * 60.0, SCAN_S)
    t = np.concatenate((t_ramp, t_cool))
    sample = np.concatenate((25.0 + RATE_C_PER_MIN * t_ramp / 60.0,
                             320.0 - 5.0 * (t_cool - t_cool[0]) / 60.0))
    heating = np.arange(len(t)) < len(t_ramp)
    delta = np.where(heating, -1.0, 2.5) + exotherm_c * np.exp(
        -((sample - PEAK_C) ** 2) / (2 * 12.0**2)) * heating
    delta += rng.normal(0.0, 0.02, len(t))
    furnace = sample - delta
    mass = 95.0 + 5.0 * ((sample - MASS_MIN_C) / 150.0) ** 2
    mass = np.where(heating, mass, mass[len(t_ramp) - 1] - 0.001 * (t - t_ramp[-1]) / 60.0)
    dtg = np.gradient(mass, t) * 60.0
    mass += rng.normal(0.0, 0.003, len(t))
    n = len(t)
    stage = np.where(heating, "screening ramp", "cool-down")
    step = np.where(heating, 1, 2)
    cols: dict[str, Any] = {
        "elapsed_s": t, "wall_utc": ["2026-01-01T00:00:00Z"] * n, "stage": stage,
        "step": step, "state": ["running"] * n, "setpoint_c": furnace.round(1),
        "working_setpoint_c": furnace.round(1), "furnace_c": furnace,
        "output_pct": np.full(n, 30.0)}
    if sample_channels:
        cols |= {"sample_c": sample, "delta_t_c": delta, "mass_g": mass / 50.0,
                 "mass_pct": mass, "dtg_pct_per_min": dtg}
    cols |= {"o2_ppm": np.full(n, 209500.0), "flow_air_sccm": np.full(n, 200.0),
             "flow_air_setpoint_sccm": np.full(n, 200.0), "flow_N2_sccm": np.zeros(n),
             "flow_N2_setpoint_sccm": np.zeros(n)}
    return cols


def make_batch(root: Path, trace: Mapping[str, Any], *, recipe: str = SCREEN_RECIPE,
               name: str = "screen-air", sample: str = "SCREEN-POP70",
               summary: bool = True, extra_audit: Sequence[Mapping[str, Any]] = (),
               station: str = BUILTIN_STATION) -> Path:
    d = root / f"20260101T000000Z_{sample}"
    d.mkdir()
    folder = BatchFolder(d)
    folder.recipe_toml.write_text(recipe, encoding="utf-8")
    folder.station_toml.write_text(station, encoding="utf-8")
    folder.trace_csv.write_text(_trace_text(trace), encoding="utf-8", newline="\n")
    t = np.asarray(trace["elapsed_s"])
    cool_at = float(t[np.asarray(trace["stage"]) == "cool-down"][0])
    records = [
        {"t_s": 0.0, "event": "batch_created", "batch_id": d.name, "sample": sample,
         "recipe": name},
        {"t_s": 0.0, "event": "step_started", "index": 1, "kind": "ramp",
         "stage": "screening ramp", "label": "ramp"},
        {"t_s": cool_at, "event": "step_started", "index": 2, "kind": "cool",
         "stage": "cool-down", "label": "cool"},
        *extra_audit,
        {"t_s": float(t[-1]), "event": "batch_ended", "outcome": "completed",
         "end_reason": "recipe completed"},
    ]
    folder.audit_jsonl.write_text(_audit(records), encoding="utf-8", newline="\n")
    if summary:
        folder.summary_json.write_text(json.dumps({
            "batch_id": d.name, "sample": sample, "recipe": name, "outcome": "completed",
            "end_reason": "recipe completed", "planned_s": 11500.0, "actual_s": float(t[-1]),
            "stages": {"screening ramp": {"planned_s": 8850.0, "actual_s": cool_at},
                       "cool-down": {"planned_s": 2640.0, "actual_s": float(t[-1]) - cool_at}},
            "holdback_s": 12.0, "gas_planned_l": {"air": 38.3, "N2": 0.0},
            "gas_used_l": {"air": 38.5, "N2": 0.0}, "audit_final_hash": "1" * 64,
            "audit_records": len(records)}), encoding="utf-8")
    return d


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# ------------------------------------------------------------------------------- loading
def test_load_batch_reads_columns_with_nan_for_empty_cells(tmp_path: Path) -> None:
    trace = screening_trace()
    trace["mass_pct"] = np.where(np.arange(len(trace["elapsed_s"])) % 7 == 0, np.nan,
                                 trace["mass_pct"])
    data = load_batch(make_batch(tmp_path, trace))
    assert data.rows == len(trace["elapsed_s"])
    assert np.isnan(data.trace["mass_pct"][0])
    assert data.trace["furnace_c"].dtype == np.float64
    assert data.text["stage"][0] == "screening ramp"
    assert [s.name for s in data.stages] == ["screening ramp", "cool-down"]
    assert data.stages[0].step_kinds == ("gas", "ramp")
    assert data.gases() == ("air", "N2")
    assert data.sample == "SCREEN-POP70"


def test_not_a_batch_folder_is_a_one_line_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no trace.csv") as err:
        load_batch(tmp_path)
    assert "\n" not in str(err.value)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(ConfigurationError, match="not a folder"):
        load_batch(tmp_path / "missing")


def _insert_short_row(text: str) -> str:
    lines = text.split("\n")
    return "\n".join([*lines[:4], "1,2", *lines[4:]])


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda text: text.replace("furnace_c,", "oven_c,", 1), "missing column.*furnace_c"),
    (_insert_short_row, "line 5: 2 cells, the header has"),
    (lambda text: text.split("\n", 1)[0] + "\n", "no data rows"),
    (lambda text: "", "empty"),
])
def test_malformed_trace_names_the_file(tmp_path: Path, mutate: Any, message: str) -> None:
    d = make_batch(tmp_path, screening_trace())
    path = d / "trace.csv"
    path.write_text(mutate(path.read_text("utf-8")), encoding="utf-8", newline="\n")
    with pytest.raises(ConfigurationError, match=message) as err:
        load_batch(d)
    assert "trace.csv" in str(err.value)
    assert "\n" not in str(err.value)


def test_non_numeric_cell_and_backwards_time_are_rejected(tmp_path: Path) -> None:
    d = make_batch(tmp_path, screening_trace())
    path = d / "trace.csv"
    lines = path.read_text("utf-8").split("\n")
    cells = lines[5].split(",")
    cells[REQUIRED_COLUMNS.index("furnace_c")] = "hot"
    path.write_text("\n".join([*lines[:5], ",".join(cells), *lines[6:]]), encoding="utf-8")
    with pytest.raises(ConfigurationError, match="line 6: furnace_c is 'hot'"):
        load_batch(d)
    lines[5], lines[6] = lines[6], lines[5]
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ConfigurationError, match="line 7: elapsed_s .* backwards"):
        load_batch(d)


def test_torn_last_row_is_ignored(tmp_path: Path) -> None:
    trace = screening_trace()
    d = make_batch(tmp_path, trace)
    with open(d / "trace.csv", "a", encoding="utf-8", newline="\n") as f:
        f.write("99999.0,2026-01-01T0")
    assert load_batch(d).rows == len(trace["elapsed_s"])


# ------------------------------------------------------------------------------ analysis
def test_screening_events_mass_minimum_exotherm_and_suggestion(tmp_path: Path) -> None:
    report = analyse(load_batch(make_batch(tmp_path, screening_trace())))
    assert report.temperature_channel == "sample_c"
    mm = report.mass_minimum
    assert mm is not None
    assert mm.sample_c == pytest.approx(MASS_MIN_C, abs=2.0)
    assert mm.mass_pct == pytest.approx(95.0, abs=0.01)
    assert mm.stage == "screening ramp"
    exo = report.exotherm
    assert exo is not None
    assert exo.peak_c == pytest.approx(PEAK_C, abs=2.0)
    assert exo.peak_excess_c == pytest.approx(3.0, abs=0.1)
    # 0.05 °C threshold on a 3 °C Gaussian of σ 12 °C: 221 − 12·sqrt(2 ln 60) ≈ 186.6 °C.
    assert exo.onset_c < exo.peak_c
    assert exo.onset_c == pytest.approx(186.6, abs=3.0)
    # Tangent at the inflection (221 − 12) meets the baseline one σ further down: 197 °C.
    assert exo.extrapolated_onset_c == pytest.approx(197.0, abs=2.0)
    assert exo.onset_c < exo.extrapolated_onset_c < exo.peak_c
    assert exo.baseline_slope == pytest.approx(0.0, abs=0.002)
    assert exo.baseline_intercept_c == pytest.approx(-1.0, abs=0.1)
    assert report.screening
    assert report.suggested_preoxidation_c == 220.0
    assert "220 °C" in report.suggestion
    assert "\n" not in report.suggestion


def test_per_stage_mass_change_and_planned_against_actual(tmp_path: Path) -> None:
    trace = screening_trace()
    report = analyse(load_batch(make_batch(tmp_path, trace)))
    ramp, cool = report.stages
    heating = np.asarray(trace["stage"]) == "screening ramp"
    mass = trace["mass_pct"]
    assert ramp.name == "screening ramp"
    # boundary to boundary: a stage closes where the next one opens, at the next stage's
    # second row (its first row's readings were taken before the runner moved on)
    cool_opens = int(np.flatnonzero(~heating)[0]) + 1
    assert ramp.mass_start_pct == pytest.approx(mass[0], abs=1e-4)
    assert ramp.mass_end_pct == pytest.approx(mass[cool_opens], abs=1e-4)
    assert cool.mass_start_pct == ramp.mass_end_pct
    assert cool.mass_change_pct == pytest.approx(mass[-1] - mass[cool_opens], abs=2e-4)
    assert ramp.planned_s == 8850.0
    assert ramp.actual_s == pytest.approx(trace["elapsed_s"][heating][-1] + SCAN_S)
    assert report.holdback_s == 12.0
    assert {(g.gas, g.used_l, g.planned_l) for g in report.gases} == {
        ("air", 38.5, 38.3), ("N2", 0.0, 0.0)}
    assert report.outcome == "completed"


def test_without_sample_channels_events_are_none_and_say_why(tmp_path: Path) -> None:
    d = make_batch(tmp_path, screening_trace(sample_channels=False))
    data = load_batch(d)
    report = analyse(data)
    assert report.mass_minimum is None
    assert "no balance" in report.mass_note
    assert report.exotherm is None
    assert "no sample thermocouple" in report.exotherm_note
    assert report.temperature_channel == "furnace_c"
    assert report.suggested_preoxidation_c is None
    assert all(s.mass_change_pct is None for s in report.stages)
    rows = dict(format_events(report))
    assert "no balance" in rows["mass minimum"]
    assert "no sample thermocouple" in rows["exotherm"]
    png = write_report_png(data, report, d / "report.png")
    assert png_size(png) == (1402, 992)


def test_empty_sample_columns_count_as_missing(tmp_path: Path) -> None:
    trace = screening_trace()
    n = len(trace["elapsed_s"])
    for name in ("sample_c", "delta_t_c", "mass_g", "mass_pct", "dtg_pct_per_min"):
        trace[name] = np.full(n, np.nan)
    report = analyse(load_batch(make_batch(tmp_path, trace)))
    assert report.mass_minimum is None
    assert report.exotherm is None


def test_noise_alone_is_not_an_exotherm(tmp_path: Path) -> None:
    report = analyse(load_batch(make_batch(tmp_path, screening_trace(exotherm_c=0.0))))
    assert report.exotherm is None
    assert "no exotherm" in report.exotherm_note
    assert report.screening
    assert report.suggested_preoxidation_c is None


def test_screening_in_nitrogen_suggests_nothing(tmp_path: Path) -> None:
    recipe = SCREEN_RECIPE.replace('"air"', '"N2"')
    report = analyse(load_batch(make_batch(tmp_path, screening_trace(), recipe=recipe)))
    assert report.screening
    assert report.suggested_preoxidation_c is None
    assert "N2" in report.suggestion


def test_oxidising_is_what_the_batch_station_declares(tmp_path: Path) -> None:
    """Not a guess from the gas's name: a station's own name for its air supply counts."""
    recipe = SCREEN_RECIPE.replace('"air"', '"mix20"').replace("air =", "mix20 =")
    station = BUILTIN_STATION.replace('gas = "air"', 'gas = "mix20"')
    assert 'gas = "mix20"' in station
    report = analyse(load_batch(make_batch(tmp_path, screening_trace(), recipe=recipe,
                                           station=station)))
    assert report.suggested_preoxidation_c == 220.0
    assert "mix20" in report.suggestion


def test_without_a_readable_station_nothing_is_suggested(tmp_path: Path) -> None:
    d = make_batch(tmp_path, screening_trace(), station='name = "not a station"\n')
    report = analyse(load_batch(d))
    assert report.screening
    assert report.exotherm is not None
    assert report.suggested_preoxidation_c is None
    assert "station.toml" in report.suggestion


def test_a_recipe_with_a_dwell_is_not_screening(tmp_path: Path) -> None:
    recipe = SCREEN_RECIPE.replace('rate_c_per_min = 2 },',
                                   'rate_c_per_min = 2 },\n    { kind = "dwell", '
                                   'duration_min = 60, band_c = 5 },')
    report = analyse(load_batch(make_batch(tmp_path, screening_trace(), recipe=recipe,
                                           name="POP", sample="POP70-600-1600")))
    assert not report.screening
    assert report.suggested_preoxidation_c is None
    assert report.exotherm is not None  # the events are still there


def test_events_stop_where_the_sample_leaves_the_furnace(tmp_path: Path) -> None:
    trace = screening_trace()
    t_op = 120.0 / RATE_C_PER_MIN * 60.0  # at about 145 °C: before the minimum and the peak
    d = make_batch(tmp_path, trace, extra_audit=[
        {"t_s": t_op, "event": "step_started", "kind": "operator", "stage": "screening ramp"},
        {"t_s": t_op + 2.0, "event": "operator_confirmed", "operator": "ana",
         "how": "confirmed by operator"},
        {"t_s": t_op + 4.0, "event": "interlock_trip", "interlock": "exotherm_guard",
         "action": "ramp stopped", "measured": 6.2, "limit": 5.0}])
    report = analyse(load_batch(d))
    assert report.analysed_until_s == pytest.approx(t_op - SCAN_S)
    assert report.exotherm is None
    assert report.mass_minimum is not None
    assert report.mass_minimum.elapsed_s < t_op
    assert [i.event for i in report.incidents] == ["operator_confirmed", "interlock_trip"]
    assert "exotherm_guard" in report.incidents[1].text


def test_no_summary_means_unknown_outcome_from_the_trace(tmp_path: Path) -> None:
    trace = screening_trace()
    d = make_batch(tmp_path, trace, summary=False)
    report = analyse(load_batch(d))
    assert report.outcome == "completed"  # from the audit's batch_ended
    assert report.stages[0].planned_s is None
    assert report.stages[0].actual_s == pytest.approx(
        trace["elapsed_s"][np.asarray(trace["stage"]) == "screening ramp"][-1])


# ------------------------------------------------------------------------ outputs
def test_to_dict_round_trips_through_json_and_matches_the_rows(tmp_path: Path) -> None:
    report = analyse(load_batch(make_batch(tmp_path, screening_trace())))
    d = report.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert d["exotherm"]["peak_c"] == report.exotherm.peak_c  # type: ignore[union-attr]
    rows = dict(format_events(report))
    assert f"{report.exotherm.peak_c:.1f} °C" in rows["exotherm peak"]  # type: ignore[union-attr]
    assert rows["pre-oxidation"] == report.suggestion
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in format_events(report))


def test_report_png_is_written_at_a4_landscape(tmp_path: Path) -> None:
    d = make_batch(tmp_path, screening_trace())
    data = load_batch(d)
    png = write_report_png(data, analyse(data), d / "report.png")
    assert png == d / "report.png"
    assert png_size(png) == (1402, 992)  # 11.69 × 8.27 in at 120 dpi
    assert not (d / "report.png.tmp").exists()


def test_moving_mean_ignores_nan() -> None:
    y = np.array([1.0, np.nan, 3.0, np.nan, np.nan, np.nan, 5.0])
    out = moving_mean(y, 3)
    assert out[1] == pytest.approx(2.0)
    assert np.isnan(out[4])
    assert out[6] == pytest.approx(5.0)


def test_an_aborted_batch_shades_the_abort_and_lists_the_trip(tmp_path: Path) -> None:
    trace = screening_trace()
    n = len(trace["elapsed_s"])
    aborting = np.arange(n) >= n - 600
    trace["stage"] = np.where(aborting, "aborting", trace["stage"])
    trace["state"] = np.where(aborting, "aborting", "running")
    t_abort = float(trace["elapsed_s"][n - 600])
    d = make_batch(tmp_path, trace, summary=False, extra_audit=[
        {"t_s": t_abort, "event": "interlock_trip", "interlock": "over_temperature",
         "action": "abort", "measured": 330.0, "limit": 325.0},
        {"t_s": t_abort, "event": "state_change", "old": "running", "new": "aborting",
         "reason": "over_temperature: furnace above limit"}])
    data = load_batch(d)
    report = analyse(data)
    assert [s.name for s in report.stages] == ["screening ramp", "cool-down"]
    assert [i.event for i in report.incidents] == ["interlock_trip", "state_change"]
    assert "330 against 325" in report.incidents[0].text
    assert "running -> aborting" in report.incidents[1].text
    assert png_size(write_report_png(data, report, d / "report.png")) == (1402, 992)


def test_a_two_row_trace_still_draws(tmp_path: Path) -> None:
    full = screening_trace(sample_channels=False)
    tiny = {k: v[:2] for k, v in full.items()}
    tiny["stage"] = np.array(["screening ramp", "cool-down"])
    d = make_batch(tmp_path, tiny, summary=False)
    data = load_batch(d)
    report = analyse(data)
    assert report.exotherm is None
    assert png_size(write_report_png(data, report, d / "report.png")) == (1402, 992)


def test_decimate_caps_points_and_keeps_spikes() -> None:
    x = np.arange(45_000, dtype=np.float64)
    y = np.zeros_like(x)
    y[12_345] = 50.0
    y[30_000:30_010] = np.nan
    xs, ys = decimate(x, y, buckets=1000)
    assert len(xs) <= 2 * 1000 + 45
    assert 12_345.0 in xs
    assert np.nanmax(ys) == 50.0
    assert np.all(np.diff(xs) > 0)


def test_moving_mean_of_fewer_rows_than_its_window_keeps_their_number() -> None:
    # a batch halted in its first cycles: np.convolve(mode="same") would return the window's
    # length, and the heating rate's np.gradient then refused the mismatch (a traceback)
    y = np.array([1.0, 2.0, np.nan, 4.0])
    assert moving_mean(y, 9).tolist() == pytest.approx([7 / 3] * 4)
    rate = heating_rate_c_per_min(np.array([0.0, 2.0, 4.0, 6.0]), y)
    assert rate.shape == (4,)
