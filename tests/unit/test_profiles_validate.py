"""Every recipe in profiles/ compiles against the built-in station (a broken profile fails here,
not at the furnace)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.recipe.parameters import resolve
from controller.recipe.plan import load_recipe, summarize
from controller.recipe.station import Station, load_station
from controller.recipe.steps import End

PROFILES = sorted((Path(__file__).parents[2] / "profiles").glob("*.toml"))


@pytest.fixture(scope="module")
def station() -> Station:
    return load_station(None)[0]


def test_there_are_profiles() -> None:
    assert len(PROFILES) >= 6


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_profile_compiles_against_builtin_station(path: Path, station: Station) -> None:
    resolved, plan, frozen = load_recipe(path, {}, station)
    assert isinstance(plan.steps[-1], End)
    # The file is named after its default sample: pop70-600-1600.toml -> POP70-600-1600.
    assert plan.sample_name.lower().startswith(path.stem)  # e.g. screen-air -> SCREEN-AIR-P50
    summary = summarize(plan, station)
    assert summary.peak_c <= station.envelope.max_temperature_c
    assert summary.duration_s > 0
    assert resolved.recipe.sample_material is not None
    # The frozen copy reloads to the same recipe.
    assert resolve(frozen, "frozen", {}).recipe == resolved.recipe


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_profile_marks_its_assumptions(path: Path) -> None:
    assert "# assumption" in path.read_text(encoding="utf-8")
