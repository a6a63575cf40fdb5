"""A full disk at the record level (faults.md P5): an audit append that fails part-way is
cut back to the last complete record, and the audit's disk reserve is real space."""

from __future__ import annotations

import errno
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pytest

from controller.records import audit as audit_module
from controller.records.audit import AuditLog, RecordError, scan_chain
from controller.records.folder import AUDIT_FILE, RESERVE_FILE
from controller.records.storage import DiskReserve
from drivers.errors import ConfigurationError

WALL0 = datetime(2026, 11, 24, 21, 18, 40, tzinfo=UTC)
RESERVE_BYTES = 3 * 1024 * 1024 + 17  # more than one write chunk, not a whole number of them


def _new_log(path: Path) -> AuditLog:
    return AuditLog.create(path, "0.1.0", "a" * 64, "b" * 64, t_s=0.0, wall=WALL0)


def _torn_write(monkeypatch: pytest.MonkeyPatch, error: OSError) -> None:
    """The next audit write puts half its line on disk, then fails with ``error``."""
    original = audit_module._write_line

    def torn(file: BinaryIO, line: bytes) -> None:
        monkeypatch.setattr(audit_module, "_write_line", original)  # only this once
        file.write(line[: len(line) // 2])
        raise error

    monkeypatch.setattr(audit_module, "_write_line", torn)


# --- (c) no torn audit line ---------------------------------------------------------------


def test_a_torn_append_on_a_full_disk_is_cut_back_and_the_log_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / AUDIT_FILE
    with _new_log(path) as log:
        log.append("one", t_s=1.0, wall=WALL0)
        before = path.read_bytes()
        _torn_write(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
        with pytest.raises(OSError, match="No space"):
            log.append("two", t_s=2.0, wall=WALL0, detail="x" * 200)
        assert path.read_bytes() == before  # the half line is gone
        assert log.count == 2
        log.append("two", t_s=2.0, wall=WALL0, detail="x" * 200)  # tried again: it lands
    scan = scan_chain(path.read_bytes())
    assert (scan.count, scan.bad_index, scan.torn_tail) == (3, None, b"")


def test_a_torn_append_on_a_failing_disk_is_cut_back_and_the_log_refuses_more(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / AUDIT_FILE
    with _new_log(path) as log:
        before = path.read_bytes()
        _torn_write(monkeypatch, OSError(errno.EIO, "Input/output error"))
        with pytest.raises(OSError, match="Input/output"):
            log.append("two", t_s=2.0, wall=WALL0)
        assert path.read_bytes() == before
        with pytest.raises(RecordError, match="unusable after"):  # possible loss (P6)
            log.append("three", t_s=3.0, wall=WALL0)
    assert scan_chain(path.read_bytes()).torn_tail == b""


def test_a_full_disk_on_fsync_cuts_the_unsynced_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / AUDIT_FILE
    with _new_log(path) as log:
        before = path.read_bytes()
        real_fsync = os.fsync
        calls = {"n": 0}

        def fsync(fd: int) -> None:
            calls["n"] += 1
            if calls["n"] == 1:  # the record's fsync; the cut's own fsync goes through
                raise OSError(errno.ENOSPC, "No space left on device")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        with pytest.raises(OSError, match="No space"):
            log.append("two", t_s=2.0, wall=WALL0)
        assert path.read_bytes() == before
        log.append("two", t_s=2.0, wall=WALL0)
    assert scan_chain(path.read_bytes()).count == 2


# --- the reserve --------------------------------------------------------------------------


def _allocated_bytes(path: Path) -> int | None:
    blocks = getattr(os.stat(path), "st_blocks", None)  # POSIX only
    return None if blocks is None else blocks * 512


@pytest.mark.parametrize("fallocate", [True, False], ids=["posix_fallocate", "written"])
def test_the_reserve_is_real_space_and_is_given_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fallocate: bool) -> None:
    if not fallocate:  # as on Windows and macOS
        monkeypatch.delattr(os, "posix_fallocate", raising=False)
    elif not hasattr(os, "posix_fallocate"):
        pytest.skip("no posix_fallocate on this OS")
    reserve = DiskReserve(tmp_path / RESERVE_FILE, RESERVE_BYTES)
    reserve.ensure()
    assert reserve.path.stat().st_size == RESERVE_BYTES
    allocated = _allocated_bytes(reserve.path)
    assert allocated is None or allocated >= RESERVE_BYTES  # not sparse
    assert reserve.release() == RESERVE_BYTES
    assert not reserve.path.exists()
    assert reserve.release() == 0  # already given back


def test_a_short_reserve_left_by_a_crash_is_topped_up(tmp_path: Path) -> None:
    path = tmp_path / RESERVE_FILE
    path.write_bytes(b"\x01" * 1000)
    DiskReserve(path, RESERVE_BYTES).ensure()
    assert path.stat().st_size == RESERVE_BYTES


def test_a_reserve_that_does_not_fit_is_refused_and_left_nowhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    written = {"bytes": 0}

    def filling(fd: int, data: bytes) -> int:
        if written["bytes"] >= 1024 * 1024:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real_write(fd, data)
        written["bytes"] += n
        return n

    monkeypatch.delattr(os, "posix_fallocate", raising=False)
    monkeypatch.setattr(os, "write", filling)
    reserve = DiskReserve(tmp_path / RESERVE_FILE, RESERVE_BYTES)
    with pytest.raises(ConfigurationError, match=r"cannot reserve 3\.1 MB for the audit "
                                                 r"\(disk full\)"):
        reserve.ensure()
    assert not reserve.path.exists()
