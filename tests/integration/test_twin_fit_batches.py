"""Which batches ``furnace twin fit`` takes (issue 16): a twin is one furnace's as one
thermocouple measures it, so a batch recorded on the station under its name but with
another furnace thermocouple is refused, one line naming the batch and the field; a batch
given twice is named by its folder (also when a copy of it has another name), and a batch
folder given as ``.`` is named as the folder it is. Short batches suffice: each is refused
before any fit."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from controller.cli import main
from controller.twin.stretches import batch_stretches
from tests.conftest import ROOT
from tests.integration.helpers import dry_run, one_error_line
from tests.integration.recipes import TINY, write

pytestmark = pytest.mark.timeout(120)

BUILTIN = (ROOT / "controller" / "builtin" / "sim.toml").read_text(encoding="utf-8")
TYPE_S = 'thermocouple = "S"           # Type S covers both'
assert TYPE_S in BUILTIN


@pytest.fixture(scope="module")
def tiny_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TINY, recorded on the built-in station."""
    folder = tmp_path_factory.mktemp("tiny")
    batch = asyncio.run(dry_run(write(folder, TINY), folder / "batches", station_text=BUILTIN))
    return batch.result.batch_dir


@pytest.fixture(scope="module")
def type_r_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TINY, recorded on the built-in station with a Type R furnace thermocouple."""
    folder = tmp_path_factory.mktemp("type-r")
    text = BUILTIN.replace(TYPE_S, 'thermocouple = "R"  #', 1)
    batch = asyncio.run(dry_run(write(folder, TINY), folder / "batches", station_text=text))
    return batch.result.batch_dir


def _fit(capsys: pytest.CaptureFixture[str], station: Path, *batches: str
         ) -> tuple[int, str]:
    code = main(["twin", "fit", *batches, "--station", str(station)])
    return code, capsys.readouterr().err


def _station(folder: Path) -> Path:
    path = folder / "station.toml"
    path.write_text(BUILTIN, encoding="utf-8")
    return path


def test_a_batch_measured_by_another_thermocouple_is_refused(
        type_r_batch: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _fit(capsys, _station(tmp_path), str(type_r_batch))
    assert code == 2
    line = one_error_line(err)
    assert type_r_batch.name in line
    assert "furnace.thermocouple" in line
    assert "Type R" in line
    assert "Type S" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["station.toml"]


def test_a_batch_given_twice_is_named_by_its_folder(
        tiny_batch: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy" / tiny_batch.name
    shutil.copytree(tiny_batch, copy)
    code, err = _fit(capsys, _station(tmp_path), str(tiny_batch), f"{copy}/")
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"furnace: {copy}")
    assert str(tiny_batch) in line
    assert "twice" in line


def test_a_copy_of_a_batch_under_another_name_is_the_same_batch(
        tiny_batch: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Renamed, the copy still carries the batch's audit chain: it is refused as the same
    batch, one line naming both folders, and nothing is written."""
    copy = tmp_path / "copy" / "renamed-batch"
    shutil.copytree(tiny_batch, copy)
    station = _station(tmp_path)
    code, err = _fit(capsys, station, str(tiny_batch), str(copy))
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"furnace: {copy}")
    assert str(tiny_batch) in line
    assert "twice" in line
    assert tiny_batch.name in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "station.toml"]


def test_a_batch_folder_given_as_dot_is_named_as_the_folder(
        tiny_batch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_batch)
    assert batch_stretches(Path(".")).batch == tiny_batch.name
    monkeypatch.chdir(tiny_batch / "maps")
    assert batch_stretches(Path("..")).batch == tiny_batch.name
