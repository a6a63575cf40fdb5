"""Rung 3, the fault campaign (reference/faults.md §2-§4): every simulator fault kind,
injected in process at a stage where it matters, judged against the simulator's
ground-truth journal: detected within the catalogue's budget, outputs safe within a scan
cycle (read back; the instrument's own fallback when it cannot be reached), inert gas
above the air limit, the audit naming the fault, reading, limit and action, the right end
state and reason, and ``furnace verify`` passing. The cases live in ``campaign.py``; the
same campaign prints its figures with ``python benchmarks/faults.py``.

Each case is a batch of its own, run until it ends (3-10 h of process time, 2-15 s each):
the campaign is ``slow``. No case is known to fail today; one found that the controller
gets wrong would carry ``bug`` (its reason) and run as a strict xfail until fixed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.faults import FaultKind
from tests.integration.campaign import CASES, Case, judge, run_case


def _params() -> list[object]:
    return [pytest.param(c, id=c.name,
                         marks=[pytest.mark.slow]
                         + ([pytest.mark.xfail(strict=True, reason=c.bug)] if c.bug else []))
            for c in CASES]


def test_the_campaign_covers_every_fault_kind() -> None:
    assert {c.kind for c in CASES} == {k.value for k in FaultKind}
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", _params())
async def test_fault_is_detected_and_made_safe(case: Case, tmp_path: Path) -> None:
    outcome = await run_case(case, tmp_path)
    checks = judge(outcome)
    record = outcome.record()
    (tmp_path / "result.json").write_text(json.dumps(record, indent=2, default=str),
                                          encoding="utf-8")
    failed = [f"{c.name}: {c.detail}" for c in checks if not c.ok]
    summary = (f"{outcome.spec}: symptom {outcome.symptom_at}, detected {outcome.detected_at} "
               f"by {outcome.detected_by or '-'}, safe {outcome.safe_at}, "
               f"{outcome.state} ({outcome.end_reason})")
    assert not failed, summary + "\n" + "\n".join(failed)
    assert outcome.survived
