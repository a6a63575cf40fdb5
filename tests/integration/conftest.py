"""Integration fixtures: the session's whole dry runs, and keeping their users together
when the suite runs on several cores (pytest-xdist, ``--dist loadgroup``)."""

from __future__ import annotations

import pytest

from tests.integration.helpers import DryRuns


@pytest.fixture(scope="session")
def dry_runs(tmp_path_factory: pytest.TempPathFactory) -> DryRuns:
    """``dry_runs(recipe, overrides, seed)``: the batch of a whole dry run, run once per
    session and shared read-only (see ``DryRuns``)."""
    return DryRuns(tmp_path_factory.mktemp("dry-runs"))


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses ``dry_runs`` goes to one worker: the cache lives in a worker's
    session, so tests sharing a whole dry run must share the worker to share the run."""
    for item in items:
        if "dry_runs" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("dry_runs"))
