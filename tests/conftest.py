"""Shared fixtures: the built-in station and paths."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from controller.recipe.station import Station, load_station

ROOT = Path(__file__).resolve().parent.parent

# Station locks of the test run (and of the furnace processes it starts) stay private.
os.environ["FURNACE_LOCK_DIR"] = tempfile.mkdtemp(prefix="furnace-locks-")
# Likewise the anchor logs that batches append their final hash to.
os.environ["FURNACE_ANCHOR_DIR"] = tempfile.mkdtemp(prefix="furnace-anchors-")
# Batches end without archiving unless a test says where (never into the user's archive).
os.environ.pop("FURNACE_ARCHIVE_DB", None)
PROFILES = ROOT / "profiles"


@pytest.fixture
def station() -> Station:
    """The built-in simulated station."""
    return load_station(None)[0]
