"""Shared fixtures: the built-in station and paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.station import Station, load_station

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "profiles"


@pytest.fixture
def station() -> Station:
    """The built-in simulated station."""
    return load_station(None)[0]
