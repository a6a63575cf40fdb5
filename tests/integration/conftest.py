"""Integration fixtures: the session's whole dry runs, shared by every worker when the suite
runs on several cores (pytest-xdist)."""

from __future__ import annotations

import os

import pytest

from tests.integration.helpers import DryRuns


@pytest.fixture(scope="session")
def dry_runs(tmp_path_factory: pytest.TempPathFactory) -> DryRuns:
    """``dry_runs(recipe, overrides, seed)``: the batch of a whole dry run, run once per
    session by whichever worker needs it first and shared read-only (see ``DryRuns``)."""
    base = tmp_path_factory.getbasetemp()
    # under xdist each worker's base is <session base>/popen-gwN: share the session's
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return DryRuns(shared / "dry-runs-shared")
