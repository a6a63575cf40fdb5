"""``furnace twin fit``'s files (issue 16): where the station with the twin goes and what is
left when it cannot go there. A station file that cannot be written, or would not load where
it is written, is one line and exit 2, before the fit where that can be known, and nothing is
written; a batch that gave the fit nothing is named, never a traceback.

The fit itself is replaced by a canned one (``controller.cli_twin.fit_station``): these
tests are about the files around it, and a real fit takes seconds.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from controller.cli import main
from controller.recipe.station import Station, load_station
from controller.twin.fitting import TwinFit
from controller.twin.stretches import BatchStretches
from simulator.twin import TwinParams
from simulator.twin.fit import FitResult
from tests.conftest import ROOT
from tests.integration.helpers import one_error_line

BUILTIN = (ROOT / "controller" / "builtin" / "sim.toml").read_text(encoding="utf-8")
LEFT_OUT = "B3: 0:00:00-5:00:00 excluded: furnace not read (stale: no answer, an outage?)"


def _canned(*, unused: Sequence[str] = ()) -> TwinFit:
    """A fit to B1 and B2 (and batches in ``unused`` that gave it no usable stretch)."""
    station, _ = load_station(None)
    result = FitResult(TwinParams(tc_tau_s=77.0), {"tc_tau_s": 0.8}, {"B1": 0.2, "B2": 0.3},
                       {"B1": 1.5, "B2": 1.6}, (), (), 80)
    batches = [BatchStretches(b, station, (), ()) for b in ("B1", "B2")]
    batches += [BatchStretches(b, station, (), (LEFT_OUT,)) for b in unused]
    return TwinFit(result, TwinParams(), tuple(batches), "2026-12-01T21:30:00Z")


class FakeFit:
    """Stands in for ``fit_station``: gives ``fit``, and counts the calls."""

    def __init__(self, fit: TwinFit) -> None:
        self.fit = fit
        self.calls = 0

    def __call__(self, batch_dirs: Sequence[Path], station: Station, source: str) -> TwinFit:
        self.calls += 1
        return self.fit


@pytest.fixture
def fake_fit(monkeypatch: pytest.MonkeyPatch) -> FakeFit:
    fake = FakeFit(_canned())
    monkeypatch.setattr("controller.cli_twin.fit_station", fake)
    return fake


def _station(folder: Path, text: str = BUILTIN) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "station.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _fit(capsys: pytest.CaptureFixture[str], station: Path, *more: str) -> tuple[int, str, str]:
    code = main(["twin", "fit", "B1", "B2", "--station", str(station), *more])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_canned_fit_is_written(fake_fit: FakeFit, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    station = _station(tmp_path)
    code, _, err = _fit(capsys, station)
    assert code == 0, err
    written, _ = load_station(tmp_path / "station-twin.toml")
    assert written.twin is not None
    assert written.twin.tc_tau_s == 77.0
    assert (tmp_path / "station-twin.fit.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "station-twin.fit.png", "station-twin.toml", "station.toml"]


def test_output_into_a_missing_folder_is_refused_before_the_fit(
        fake_fit: FakeFit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    station = _station(tmp_path / "lab")
    target = tmp_path / "missing" / "fitted.toml"
    code, _, err = _fit(capsys, station, "-o", str(target))
    assert code == 2
    assert str(target.parent) in one_error_line(err)
    assert fake_fit.calls == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab"]


def test_output_onto_a_folder_is_refused_and_nothing_written(
        fake_fit: FakeFit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    station = _station(tmp_path / "lab")
    target = tmp_path / "fitted"
    target.mkdir()
    code, _, err = _fit(capsys, station, "-o", str(target))
    assert code == 2
    assert "folder" in one_error_line(err)
    assert fake_fit.calls == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fitted", "lab"]
    assert not any(target.iterdir())


def test_a_figure_that_cannot_be_written_leaves_nothing(
        fake_fit: FakeFit, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(fit: TwinFit, path: Path) -> Path:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("controller.cli_twin.write_fit_png", refuse)
    station = _station(tmp_path)
    code, _, err = _fit(capsys, station)
    assert code == 2
    assert "Permission denied" in one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["station.toml"]


def test_maps_named_relative_to_the_station_and_output_elsewhere(
        fake_fit: FakeFit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    shutil.copy(ROOT / "drivers" / "maps" / "eurotherm3216.toml", lab / "my-tc.toml")
    station = _station(lab, BUILTIN.replace("[furnace]\n", '[furnace]\nmap = "my-tc.toml"\n'))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code, _, err = _fit(capsys, station, "-o", str(elsewhere / "fitted.toml"))
    assert code == 2
    line = one_error_line(err)
    assert "furnace.map" in line
    assert "my-tc.toml" in line
    assert fake_fit.calls == 0
    assert not any(elsewhere.iterdir())
    # Beside the station, its maps are where it names them.
    code, _, err = _fit(capsys, station, "-o", str(lab / "fitted.toml"))
    assert code == 0, err
    assert load_station(lab / "fitted.toml")[0].twin is not None


def test_a_batch_that_gave_the_fit_nothing_is_named(
        fake_fit: FakeFit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_fit.fit = _canned(unused=("B3",))
    station = _station(tmp_path)
    code, printed, err = _fit(capsys, station)
    assert code == 0, err
    assert LEFT_OUT in printed
    assert "B3" in [line.split("│")[1].strip() for line in printed.splitlines()
                    if line.count("│") > 2]
    written, _ = load_station(tmp_path / "station-twin.toml")
    assert written.twin is not None
    assert written.twin.fit is not None
    assert written.twin.fit.batches == ("B1", "B2")
    assert written.twin.fit.excluded == (LEFT_OUT,)


def test_a_twin_that_cannot_be_replaced_is_refused_before_the_fit(
        fake_fit: FakeFit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    station = _station(tmp_path, BUILTIN.replace(
        "scan_period_s = 2.0", 'scan_period_s = 2.0\ntwin.fit.batches = [\n  "X",\n]\n'
        'twin.fit.rms_k = [1.0]\ntwin.fit.one_sigma = {}\n'
        'twin.fit.fitted_utc = "2020-01-01T00:00:00Z"'))
    code, _, err = _fit(capsys, station)
    assert code == 2
    assert one_error_line(err).startswith(f"furnace: {station}: twin: ")
    assert fake_fit.calls == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["station.toml"]


@pytest.mark.parametrize("more", [(), ("-o", "builtin:sim")], ids=["default", "-o"])
def test_the_built_in_station_needs_a_file_to_write(
        more: tuple[str, ...], fake_fit: FakeFit, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # The built-in station is no file to write beside ("builtin:sim-twin.toml" is a name
    # Windows cannot hold), nor one to write ("--station builtin:sim" is the built-in).
    monkeypatch.chdir(tmp_path)
    code, _, err = _fit(capsys, Path("builtin:sim"), *more)
    assert code == 2
    assert "-o" in one_error_line(err)
    assert fake_fit.calls == 0
    assert not any(tmp_path.iterdir())


def test_a_folder_in_the_way_of_the_temporary_file_is_one_line(
        fake_fit: FakeFit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    station = _station(tmp_path)
    (tmp_path / "station-twin.toml.tmp").mkdir()
    code, _, err = _fit(capsys, station)
    assert code == 2
    assert "station-twin.toml" in one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["station-twin.toml.tmp", "station.toml"]


@pytest.mark.parametrize("output", [None, "station.toml", "trace.csv", "maps/furnace.toml"])
def test_a_batch_folders_records_are_never_written(
        output: str | None, fake_fit: FakeFit, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The station the batch ran on, frozen in its folder, is what a lab may well give; the
    # fitted station must not go over a record (verify would call it tampered) or beside it.
    batch = tmp_path / "20261201T212937Z_SMOKE-700"
    station = _station(batch)
    (batch / "maps").mkdir()
    for name in ("audit.jsonl", "trace.csv", "maps/furnace.toml"):
        (batch / name).write_text("record\n", encoding="utf-8")
    before = {p: p.read_bytes() for p in batch.rglob("*") if p.is_file()}
    more = () if output is None else ("-o", str(batch / output))
    code, _, err = _fit(capsys, station, *more)
    assert code == 2
    assert "batch folder" in one_error_line(err)
    assert fake_fit.calls == 0
    assert {p: p.read_bytes() for p in batch.rglob("*") if p.is_file()} == before
