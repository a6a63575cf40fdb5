"""A full disk at the record level (faults.md P5): an audit append that fails part-way is
cut back to the last complete record, and the audit's disk reserve is real space."""

from __future__ import annotations

import errno
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pytest

from controller import audit as audit_module
from controller.audit import AuditLog, RecordError, scan_chain
from controller.batch import AUDIT_FILE

WALL0 = datetime(2026, 11, 24, 21, 18, 40, tzinfo=UTC)


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
