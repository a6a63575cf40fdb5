"""Disk space for a batch: the size estimate, the free-space check before a run starts,
the space held back for the audit (``DiskReserve``), and telling a full disk from other
I/O errors during it (reference/faults.md §2.6 P5).

Not here: what the run does about a full disk (give back the reserve, stop the trace,
keep the audit, alarm); that is the session's decision (docs/decisions/0010).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
from pathlib import Path

from drivers.errors import ConfigurationError

__all__ = [
    "AUDIT_RESERVE_BYTES",
    "BYTES_PER_CELL",
    "BYTES_PER_ROW",
    "DiskReserve",
    "check_free_space",
    "expected_batch_bytes",
    "expected_trace_bytes",
    "free_bytes",
    "is_disk_full",
    "required_free_bytes",
]

# A trace cell is a number printed as text plus its comma: "1234.5," is 7 bytes, a
# mass or a DTG with more digits and a sign 10-12; 12 is the upper end.
BYTES_PER_CELL = 12
# Per row on top of the cells: the ISO wall time (~24 bytes), the stage, step and state
# names, and the line end.
BYTES_PER_ROW = 64
# The audit log, the frozen recipe and station, summary.json and report.png together.
# Audit records are ~0.3-0.5 kB each; 16 MiB holds tens of thousands of events, far more
# than a run with faults produces, and leaves room for the report.
AUDIT_RESERVE_BYTES = 16 * 1024 * 1024
_MB = 1_000_000
_CHUNK_BYTES = 1024 * 1024  # the reserve is written a MiB at a time where it must be written

logger = logging.getLogger(__name__)

# Windows error codes (winerror) for "the disk is full".
_ERROR_HANDLE_DISK_FULL = 39
_ERROR_DISK_FULL = 112
_DISK_FULL_ERRNOS = frozenset(
    e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)


def expected_trace_bytes(duration_s: float, scan_period_s: float, columns: int) -> int:
    """Bytes of ``trace.csv`` for a run: one row per scan, ``columns`` cells per row.

    ``rows = ceil(duration_s / scan_period_s) + 1`` (the header counts as a row), each row
    ``columns × BYTES_PER_CELL + BYTES_PER_ROW``. Raises ``ValueError`` for a negative or
    non-finite duration, a non-positive scan period or fewer than one column.
    """
    if not (math.isfinite(duration_s) and duration_s >= 0):
        raise ValueError(f"duration_s must be finite and >= 0, got {duration_s!r}")
    if not (math.isfinite(scan_period_s) and scan_period_s > 0):
        raise ValueError(f"scan_period_s must be finite and > 0, got {scan_period_s!r}")
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns!r}")
    rows = math.ceil(duration_s / scan_period_s) + 1
    return rows * (columns * BYTES_PER_CELL + BYTES_PER_ROW)


def expected_batch_bytes(duration_s: float, scan_period_s: float, columns: int) -> int:
    """Expected size of a batch folder: the trace plus ``AUDIT_RESERVE_BYTES``.

    A 30 h run at 1 s with 20 columns: 108 001 rows × 304 B ≈ 33 MB, + 16.8 MB reserve.
    Raises ``ValueError`` like ``expected_trace_bytes``.
    """
    return expected_trace_bytes(duration_s, scan_period_s, columns) + AUDIT_RESERVE_BYTES


def required_free_bytes(duration_s: float, scan_period_s: float, columns: int) -> int:
    """Free space to demand before a run: 2 × the expected trace + the audit reserve.

    The factor 2 covers longer-than-planned holdbacks and dwells, cooling below ~400 °C
    slower than programmed, and other files growing on the same disk during the run.
    """
    return 2 * expected_trace_bytes(duration_s, scan_period_s, columns) + AUDIT_RESERVE_BYTES


def free_bytes(path: Path) -> int:
    """Bytes free to this user on the file system holding ``path`` (or, if ``path`` does
    not exist yet, its nearest existing parent). Raises ``OSError`` if none can be read."""
    probe = Path(path).absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_free_space(path: Path, need_bytes: int) -> None:
    """Refuse to start a batch in ``path`` with less than ``need_bytes`` free.

    Use ``required_free_bytes`` for ``need_bytes``. Works on Windows and POSIX
    (``shutil.disk_usage``). Raises ``ConfigurationError`` naming ``path``, the MB free and
    the MB needed, or saying the free space cannot be read.
    """
    try:
        free = free_bytes(path)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the free disk space ({exc.strerror or exc})",
                                 source=str(path)) from None
    if free < need_bytes:
        raise ConfigurationError(
            f"only {free / _MB:.0f} MB free, the batch needs about {need_bytes / _MB:.0f} MB "
            "(2 × expected trace + audit reserve)", source=str(path))


def is_disk_full(exc: OSError) -> bool:
    """True if ``exc`` means "no space left" rather than another I/O failure.

    POSIX: ``errno`` ENOSPC (or EDQUOT, the user's quota is used up: same remedy).
    Windows: ``winerror`` ERROR_DISK_FULL (112) or ERROR_HANDLE_DISK_FULL (39); Python
    maps both to ENOSPC as well, but ``winerror`` is checked in case it did not. Anything
    else (EIO, a removed USB disk, a lost share) is a different fault: treat a failed
    write or fsync as possible data loss (faults.md P6).
    """
    if exc.errno in _DISK_FULL_ERRNOS:
        return True
    return getattr(exc, "winerror", None) in (_ERROR_DISK_FULL, _ERROR_HANDLE_DISK_FULL)


class DiskReserve:
    """Space held on the batch's disk for the audit: a file of ``size_bytes`` real bytes,
    deleted when the disk fills so that the audit's last records, the safe-state record
    and summary.json still fit (docs/decisions/0010).

    Blocking: ``ensure`` allocates on the calling thread, at once with
    ``os.posix_fallocate`` (Linux), else by writing ``size_bytes`` and an fsync (Windows,
    macOS; well under a second for 16 MiB on a local disk). Not thread-safe.
    """

    def __init__(self, path: Path, size_bytes: int = AUDIT_RESERVE_BYTES) -> None:
        if size_bytes < 1:
            raise ValueError(f"size_bytes must be >= 1, got {size_bytes!r}")
        self.path = path
        self.size_bytes = size_bytes

    def ensure(self) -> None:
        """Create the reserve, or top up one a crash left short (a resume).

        The bytes are allocated, never sparse: ``posix_fallocate`` where the OS has it and
        the file system supports it, else a written pattern that no file system can
        compress away, then fsync. Raises ``ConfigurationError`` naming the file if the
        space cannot be had (a partial reserve is removed first).
        """
        try:
            with open(self.path, "ab") as f:
                have = f.seek(0, os.SEEK_END)
                if have < self.size_bytes:
                    _allocate(f.fileno(), have, self.size_bytes - have)
                    os.fsync(f.fileno())
        except OSError as exc:
            self.path.unlink(missing_ok=True)
            why = "disk full" if is_disk_full(exc) else (exc.strerror or str(exc))
            raise ConfigurationError(f"cannot reserve {self.size_bytes / _MB:.1f} MB for the "
                                     f"audit ({why})", source=str(self.path)) from None

    def release(self) -> int:
        """Delete the reserve and return the bytes given back (0 if none was held).

        Never raises: a reserve that cannot be deleted is logged and gives back 0.
        """
        try:
            size_bytes = self.path.stat().st_size
            self.path.unlink()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            logger.error("cannot delete the disk reserve",
                         extra={"path": str(self.path), "error": repr(exc)})
            return 0
        logger.info("disk reserve given back",
                    extra={"path": str(self.path), "freed_bytes": size_bytes})
        return size_bytes


def _allocate(fd: int, offset_bytes: int, length_bytes: int) -> None:
    """Allocate ``length_bytes`` at ``offset_bytes`` (the end of the file) for real."""
    fallocate = getattr(os, "posix_fallocate", None)  # absent on Windows and macOS
    if fallocate is not None:
        try:
            fallocate(fd, offset_bytes, length_bytes)
            return
        except OSError as exc:
            if is_disk_full(exc):
                raise
            # Not supported by this file system (EINVAL, EOPNOTSUPP): write instead.
    # Random bytes, not zeros: a compressing file system (NTFS compression, ZFS, btrfs)
    # stores a run of zeros in next to no space, and the reserve would hold nothing.
    chunk = os.urandom(min(_CHUNK_BYTES, length_bytes))
    left = length_bytes
    while left > 0:  # the file is open for appending: each write lands at its end
        written = os.write(fd, chunk[:left])
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        left -= written
