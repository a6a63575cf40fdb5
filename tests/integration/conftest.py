"""Integration fixtures: the session's whole dry runs."""

from __future__ import annotations

import pytest

from tests.integration.helpers import DryRuns


@pytest.fixture(scope="session")
def dry_runs(tmp_path_factory: pytest.TempPathFactory) -> DryRuns:
    """``dry_runs(recipe, overrides, seed)``: the batch of a whole dry run, run once per
    session and shared read-only (see ``DryRuns``)."""
    return DryRuns(tmp_path_factory.mktemp("dry-runs"))
