"""Yields and the mass balance (controller/analysis/yields.py) on synthetic batches: with a
balance, from the operator's weighings alone, from the recipe alone, and simulated; the
wash's loss on the wash's row; where the sample leaves the furnace."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controller.analysis.data import BatchData, StagePlan, sample_window
from controller.analysis.events import analyse
from controller.analysis.figure_text import headline, material_line
from controller.analysis.report import write_report_png
from controller.analysis.series import stage_readings
from controller.analysis.table import format_events
from controller.analysis.yields import BALANCE, NOMINAL, WEIGHING, mass_balance

SCAN_S = 2.0
# loading (operator), pre-oxidation, wash (operator), carbonisation, cool-down
STAGES = ("loading", "pre-oxidation", "wash", "carbonisation", "cool-down")
ROWS = {"loading": 1, "pre-oxidation": 100, "wash": 1, "carbonisation": 100, "cool-down": 50}
RECIPE_DOC = {"sample_material": {"precursor": "pitch", "acid_wt": "{acid_wt}",
                                  "mass_g": "{mass_g}"},
              "parameters": {"acid_wt": {"default": 70}, "mass_g": {"default": 2}}}
PARAMETERS = {"acid_wt": 70.0, "mass_g": 2.0}


def _mass_g(stage: np.ndarray) -> np.ndarray:
    """2 g loaded, 1.4 g before the wash, 0.5 g after it (the jump shows in the second
    row of carbonisation, as a scan's readings precede the runner's step), 0.44 g at the
    end."""
    n = len(stage)
    mass = np.empty(n)
    first = {s: int(np.flatnonzero(stage == s)[0]) for s in STAGES}
    pre = np.arange(first["wash"] + 2)
    mass[pre] = 2.0 - 0.6 * np.clip((pre - 2) / (first["wash"] - 2), 0.0, 1.0)
    post = np.arange(first["carbonisation"] + 1, n)
    mass[post] = 0.5 - 0.06 * (post - post[0]) / (n - 1 - post[0])
    return mass


def _audit(*, weighed: bool, data_source: str = "operator",
           legacy: bool = False) -> list[dict[str, Any]]:
    """batch_created, step_started per stage (operator steps with sample_action unless
    ``legacy``), operator_confirmed with the weighings when ``weighed``."""
    t0 = {s: SCAN_S * sum(ROWS[x] for x in STAGES[:i]) for i, s in enumerate(STAGES)}
    out: list[dict[str, Any]] = [{"event": "batch_created", "t_s": 0.0,
                                  "parameters": PARAMETERS}]
    fields = {"load": ({"precursor_g": 0.61, "acid_g": 1.42}, {"precursor_g": "precursor_g",
                                                                "acid_g": "acid_g"}),
              "wash": ({"mass_after_wash_g": 0.51, "washes": 4},
                       {"mass_after_wash_g": "sample_g", "washes": "washes"}),
              "unload": ({"product_g": 0.45}, {"product_g": "sample_g"})}
    steps = [("loading", "load"), ("pre-oxidation", None), ("wash", "wash"),
             ("carbonisation", None), ("cool-down", "unload")]
    for index, (stage, action) in enumerate(steps):
        t_s = t0[stage] if action != "unload" else t0[stage] + SCAN_S * (ROWS[stage] - 1)
        if action is None or (legacy and action == "unload"):
            out.append({"event": "step_started", "t_s": t_s, "index": index, "stage": stage,
                        "kind": "ramp"})
            continue
        if legacy and action == "load":
            continue
        started: dict[str, Any] = {"event": "step_started", "t_s": t_s, "index": index,
                                   "stage": stage, "kind": "operator"}
        confirmed: dict[str, Any] = {"event": "operator_confirmed", "t_s": t_s + SCAN_S,
                                     "operator": "ana", "how": "confirmed by operator"}
        if not legacy:
            started |= {"sample_action": action, "fields": list(fields[action][0])}
            confirmed |= {"index": index, "stage": stage, "sample_action": action,
                          "simulated": data_source != "operator", "data_source": data_source}
            if weighed:
                confirmed |= {"data": fields[action][0], "roles": fields[action][1]}
        out += [started, confirmed, {"event": "step_completed", "t_s": t_s + SCAN_S,
                                     "index": index, "stage": stage, "kind": "operator"}]
    out.append({"event": "batch_ended", "t_s": t0["cool-down"] + SCAN_S * 50,
                "outcome": "completed"})
    return out


def batch(*, balance: bool = True, weighed: bool = False, recipe: bool = True,
          simulated: bool = False, data_source: str = "operator",
          legacy: bool = False) -> BatchData:
    stage = np.array([s for s in STAGES for _ in range(ROWS[s])], dtype=np.str_)
    if legacy:  # an old recipe: no loading step, so no loading stage
        stage = stage[1:]
    t = np.arange(len(stage)) * SCAN_S
    mass = _mass_g(np.concatenate((["loading"], stage)) if legacy else stage)
    mass = mass[1:] if legacy else mass
    trace = {"elapsed_s": t, "furnace_c": np.full(len(t), 500.0),
             "setpoint_c": np.full(len(t), 500.0),
             "mass_g": mass if balance else np.full(len(t), np.nan),
             "mass_pct": 100 * mass / mass[0] if balance else np.full(len(t), np.nan)}
    audit = _audit(weighed=weighed, data_source=data_source, legacy=legacy)
    if legacy:
        for r in audit:
            r["t_s"] = max(0.0, r["t_s"] - SCAN_S)
    return BatchData(
        batch_dir=Path("/nonexistent"), batch_id="b", sample="POP70-600-1600", recipe="POP",
        columns=tuple(trace) + ("stage",), trace=trace,
        text={"stage": stage, "state": np.full(len(t), "running")},
        audit=tuple(audit), summary=None,
        stages=tuple(StagePlan(s, "Ar", ("operator",)) for s in STAGES
                     if not (legacy and s == "loading")),
        recipe_doc=RECIPE_DOC if recipe else None, station="bench", simulated=simulated)


def _row(rows: Sequence[Any], *stages: str) -> Any:
    return next(r for r in rows if r.stages == stages)


# ------------------------------------------------------------------------------- tests
def test_with_a_balance_the_wash_row_carries_the_wash_loss() -> None:
    mb = mass_balance(batch())
    assert [r.stages for r in mb.rows] == [(s,) for s in STAGES]
    wash = _row(mb.rows, "wash")
    assert mb.wash == wash
    assert wash.start.mass_g == pytest.approx(1.4)
    assert wash.end.mass_g == pytest.approx(0.5)
    assert wash.change_loaded_pct == pytest.approx(-45.0)  # 0.9 g of 2 g
    precursor_g = 2.0 / 1.7  # 70 g reagent per 100 g pitch (decision 0011)
    assert wash.change_precursor_pct == pytest.approx(-0.9 / precursor_g * 100)
    # 0.06 g lost evenly over carbonisation (100 rows) and cool-down (48 rows after it)
    assert _row(mb.rows, "carbonisation").change_g == pytest.approx(-0.06 * 100 / 148)
    assert mb.loaded.mass_g == pytest.approx(2.0)
    assert mb.loaded.source == BALANCE
    assert mb.precursor == type(mb.precursor)(pytest.approx(2.0 / 1.7), NOMINAL, False)
    assert mb.final.source == BALANCE
    assert mb.yield_loaded_pct == pytest.approx(22.0)
    assert mb.yield_precursor_pct == pytest.approx(37.40, abs=0.01)
    # the rows chain: each opens where the one before closed
    assert all(a.end == b.start for a, b in zip(mb.rows, mb.rows[1:], strict=False))


def test_the_events_stage_rows_agree_boundary_to_boundary() -> None:
    report = analyse(batch())
    wash = next(s for s in report.stages if s.name == "wash")
    assert wash.mass_change_pct == pytest.approx(-45.0)
    assert next(s for s in report.stages if s.name == "carbonisation").mass_start_pct \
        == pytest.approx(25.0)
    rows = dict(format_events(report))
    assert "-45.00" in rows["stage: wash"]
    assert rows["final yield"].startswith("22.00 % of loaded mixture, 37.40 % of precursor")


def test_weighings_without_a_balance() -> None:
    mb = mass_balance(batch(balance=False, weighed=True))
    assert mb.loaded.mass_g == pytest.approx(2.03)  # precursor_g + acid_g
    assert mb.loaded.source == WEIGHING
    assert mb.precursor.mass_g == pytest.approx(0.61)
    assert mb.final.mass_g == pytest.approx(0.45)
    assert mb.final.source == WEIGHING
    assert mb.yield_loaded_pct == pytest.approx(100 * 0.45 / 2.03)
    assert mb.yield_precursor_pct == pytest.approx(100 * 0.45 / 0.61)
    assert [r.stages for r in mb.rows] == [("loading", "pre-oxidation", "wash"),
                                           ("carbonisation", "cool-down")]
    assert mb.rows[0].end.mass_g == pytest.approx(0.51)
    assert mb.rows[1].change_g == pytest.approx(0.45 - 0.51)
    assert mb.wash is None  # nothing weighed just before the wash
    assert any("wash's own loss is unknown" in n for n in mb.notes)
    assert {w.role for w in mb.weighings} == {"precursor_g", "acid_g", "sample_g"}


def test_the_unload_weighing_wins_over_the_balance_for_the_final_yield() -> None:
    mb = mass_balance(batch(weighed=True))
    assert mb.final.mass_g == pytest.approx(0.45)
    assert mb.final.source == WEIGHING
    assert mb.loaded.mass_g == pytest.approx(2.03)
    assert mb.wash is not None
    assert mb.wash.end.source == BALANCE


def test_nominal_recipe_only() -> None:
    mb = mass_balance(batch(balance=False))
    assert mb.loaded == type(mb.loaded)(2.0, NOMINAL, False)
    assert mb.precursor.mass_g == pytest.approx(2.0 / 1.7)
    assert mb.acid_wt_pct == 70.0
    assert mb.rows == ()
    assert mb.final.mass_g is None
    assert mb.yield_loaded_pct is None
    d = mb.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert d["final"] == {"mass_g": None, "source": None, "simulated": False}


def test_simulated_numbers_say_so() -> None:
    mb = mass_balance(batch(simulated=True, weighed=True, data_source="simulated sample"))
    assert mb.loaded.simulated
    assert mb.loaded.source == WEIGHING
    assert mb.loaded.label == "simulated weighing"
    assert mb.wash is not None
    assert mb.wash.end.label == "simulated balance"
    nominal = mass_balance(batch(balance=False, weighed=True, data_source="nominal (recipe)"))
    assert nominal.final.source == NOMINAL


def test_to_dict_is_json_with_the_documented_keys() -> None:
    d = mass_balance(batch(weighed=True)).to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert set(d) == {"loaded", "precursor", "acid_wt_pct", "rows", "wash", "final",
                      "yield_loaded_pct", "yield_precursor_pct", "weighings", "notes"}
    assert set(d["rows"][0]) == {"stages", "start", "end", "change_g", "change_loaded_pct",
                                 "change_precursor_pct", "remaining_loaded_pct",
                                 "remaining_precursor_pct"}


def test_without_a_recipe_or_weighings_the_balance_still_gives_the_mixture_basis() -> None:
    mb = mass_balance(batch(recipe=False))
    assert mb.yield_loaded_pct == pytest.approx(22.0)
    assert mb.precursor.mass_g is None
    assert mb.yield_precursor_pct is None


def test_the_sample_leaves_at_the_wash_not_at_the_loading_step() -> None:
    data = batch()
    t_wash = next(r["t_s"] for r in data.audit if r.get("sample_action") == "wash"
                  and r["event"] == "step_started")
    end = sample_window(data)
    assert end == int(np.searchsorted(data.trace["elapsed_s"], t_wash))
    assert data.text["stage"][end] == "wash"


def test_an_old_batch_leaves_at_its_first_operator_step_after_the_start() -> None:
    data = batch(legacy=True)
    assert data.text["stage"][sample_window(data)] == "wash"
    mb = mass_balance(data)
    assert mb.wash is not None
    assert mb.wash.change_loaded_pct == pytest.approx(-45.0)


def test_stage_readings_open_at_a_stage_second_row() -> None:
    stage = np.array(["a", "a", "b", "b", "b", "c"], dtype=np.str_)
    values = np.array([1.0, 2.0, 3.0, 4.0, np.nan, 6.0])
    assert stage_readings(stage, values) == [("a", 0, 3), ("b", 3, 5), ("c", 5, 5)]
    assert stage_readings(stage, np.full(6, np.nan)) == [("a", None, None), ("b", None, None),
                                                         ("c", None, None)]



@pytest.mark.parametrize("kind", ["balance", "weighings", "nominal"])
def test_the_page_names_the_yield_and_draws_with_or_without_a_balance(
        tmp_path: Path, kind: str) -> None:
    data = batch(balance=kind == "balance", weighed=kind == "weighings")
    report = analyse(data)
    line = headline(report)
    if kind == "nominal":
        assert "final yield unknown" in line
    else:
        assert "final yield 22.0 % of loaded mixture, 37.4 % of precursor" in line \
            or "final yield 22.2 % of loaded mixture, 73.8 % of precursor" in line
    assert "H₃PO₄ 70 wt%" in material_line(data, report.yields)
    assert "operator ana" in material_line(data, report.yields)
    png = write_report_png(data, report, tmp_path / "report.png")
    assert png.stat().st_size > 10_000


def test_an_aborted_batch_says_its_final_mass_is_not_the_product() -> None:
    data = batch()
    audit = tuple(r if r["event"] != "batch_ended" else {**r, "outcome": "aborted"}
                  for r in data.audit)
    mb = mass_balance(BatchData(**{**{f: getattr(data, f) for f in data.__dataclass_fields__},
                                   "audit": audit}))
    assert any("did not complete (aborted)" in n for n in mb.notes)
    assert not any("did not complete" in n for n in mass_balance(data).notes)
