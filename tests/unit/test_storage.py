"""Disk space: the batch size estimate, the pre-run check, and telling a full disk apart."""

from __future__ import annotations

import errno
import math
import shutil
from pathlib import Path
from typing import NamedTuple

import pytest

from controller.records import storage
from controller.records.storage import (
    AUDIT_RESERVE_BYTES,
    check_free_space,
    expected_batch_bytes,
    expected_trace_bytes,
    is_disk_full,
    required_free_bytes,
)
from drivers.errors import ConfigurationError


class _Usage(NamedTuple):
    total: int
    used: int
    free: int


def _fake_disk(monkeypatch: pytest.MonkeyPatch, free: int, seen: list[Path] | None = None
               ) -> None:
    def disk_usage(path: Path) -> _Usage:
        if seen is not None:
            seen.append(Path(path))
        return _Usage(10 * free + 1, 9 * free, free)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)


def test_trace_estimate_counts_rows_and_cells() -> None:
    # 30 h at 1 s, 20 columns: 108 001 rows x (20 x 12 + 64) bytes
    assert expected_trace_bytes(30 * 3600, 1.0, 20) == 108_001 * 304
    assert expected_trace_bytes(0, 2.0, 8) == 8 * 12 + 64  # the header alone
    assert expected_trace_bytes(3, 2.0, 1) == 3 * 76  # ceil(1.5) + 1 rows
    assert expected_batch_bytes(30 * 3600, 1.0, 20) == 108_001 * 304 + AUDIT_RESERVE_BYTES
    assert required_free_bytes(30 * 3600, 1.0, 20) == 2 * 108_001 * 304 + AUDIT_RESERVE_BYTES


@pytest.mark.parametrize(("duration_s", "period_s", "columns"), [
    (-1, 1, 5), (math.nan, 1, 5), (math.inf, 1, 5), (10, 0, 5), (10, -1, 5),
    (10, math.nan, 5), (10, 1, 0)])
def test_estimate_rejects_nonsense(duration_s: float, period_s: float, columns: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        expected_batch_bytes(duration_s, period_s, columns)


def test_enough_space_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_disk(monkeypatch, free=100_000_000)
    check_free_space(tmp_path, 100_000_000)


def test_too_little_space_is_a_one_line_configuration_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_disk(monkeypatch, free=12_400_000)
    with pytest.raises(ConfigurationError) as info:
        check_free_space(tmp_path / "batches", 83_000_000)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "batches"))
    assert "only 12 MB free, the batch needs about 83 MB" in message
    assert "2 × expected trace + audit reserve" in message


def test_missing_batches_folder_is_measured_at_its_nearest_parent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Path] = []
    _fake_disk(monkeypatch, free=10**9, seen=seen)
    check_free_space(tmp_path / "not" / "yet" / "there", 1)
    assert seen == [tmp_path]


def test_unreadable_free_space_is_a_configuration_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: Path) -> _Usage:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(shutil, "disk_usage", broken)
    with pytest.raises(ConfigurationError, match="cannot read the free disk space"):
        check_free_space(tmp_path, 1)


def test_real_disk_usage_runs(tmp_path: Path) -> None:
    assert storage.free_bytes(tmp_path) > 0
    check_free_space(tmp_path, 1)


def _winerror(code: int) -> OSError:
    """An OSError as Windows raises it (on POSIX the ``winerror`` argument is ignored, so
    set the attribute by hand)."""
    exc = OSError(None, "There is not enough space on the disk")
    exc.winerror = code  # type: ignore[attr-defined]
    return exc


def test_disk_full_is_recognised() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    if hasattr(errno, "EDQUOT"):
        assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_disk_full(_winerror(112))  # ERROR_DISK_FULL
    assert is_disk_full(_winerror(39))  # ERROR_HANDLE_DISK_FULL


@pytest.mark.parametrize("exc", [
    OSError(errno.EIO, "Input/output error"), OSError(errno.EROFS, "Read-only file system"),
    OSError(errno.ENOENT, "No such file"), PermissionError(errno.EACCES, "denied"),
    OSError("no errno"), _winerror(21)],  # ERROR_NOT_READY: a removed USB disk
    ids=["EIO", "EROFS", "ENOENT", "EACCES", "none", "win-not-ready"])
def test_other_io_errors_are_not_disk_full(exc: OSError) -> None:
    assert not is_disk_full(exc)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux /dev/full")
def test_a_real_enospc_from_the_kernel_is_classified() -> None:
    """``/dev/full`` fails every write with ENOSPC, as a full disk does."""
    with (pytest.raises(OSError, match="No space") as info,
          open("/dev/full", "wb", buffering=0) as f):
        f.write(b"elapsed_s,furnace_c\n")
    assert is_disk_full(info.value)
