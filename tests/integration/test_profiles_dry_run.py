"""Every recipe in profiles/ completes a dry run on the built-in simulator (STYLE.md C14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.records.verify import verify_batch
from controller.run.runstate import Phase
from tests.conftest import PROFILES
from tests.integration.helpers import dry_run

FILES = sorted(PROFILES.glob("*.toml"))


def test_there_are_profiles() -> None:
    assert len(FILES) >= 6


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_profile_dry_run_completes(path: Path, tmp_path: Path) -> None:
    batch = await dry_run(path, tmp_path)
    assert batch.result.state is Phase.COMPLETED, batch.result.summary["end_reason"]
    assert verify_batch(batch.result.batch_dir).ok
    # a dwell after a fast ramp waits for the lagging furnace (rate x thermocouple lag)
    assert batch.result.summary["holdback_s"] < 600
    assert not batch.events("interlock_trip")
