"""The anchor log: each ended batch's final audit hash, kept outside the batch folder.

A batch folder can be rewritten whole, hash chain included, by anyone who can write to it;
a line per batch in a machine-wide, per-station log (and later the lab's database) is
what such a rewrite no longer matches. Not here: when to anchor (the session does it as
the batch ends) or checking the folder itself (``controller/records/verify.py``).

One line per anchored batch, UTF-8 JSON, sorted keys, ``\\n``-terminated::

    {"batch_id":"20261124T211840Z_POP70-600-1600","final_hash":"<sha256 hex>",
     "records":1234,"schema_version":1,"station":"lab-1","wall_utc":"2026-11-25T08:02:11.000Z"}

Several controllers (one per station, or ``furnace`` commands of several users) may append
at once. Each append is one write of one line under 4 KiB to a file opened for appending
only: on POSIX ``O_APPEND``, whose positioning and write are one atomic step for a
regular file (and local file systems copy a write this small under the inode lock, so
lines never interleave); on Windows a handle with ``FILE_APPEND_DATA`` but not
``FILE_WRITE_DATA``, which makes NTFS do the same (the C runtime's own ``O_APPEND`` seeks
then writes, two steps, and may overwrite another process's line: CPython gh-86772), and
written through to the disk. No lock file is needed. Not safe on a network share (NFS
emulates append): the folder must be local.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from controller.records.audit import format_utc, fsync_dir

__all__ = [
    "ANCHOR_DIR_ENV",
    "MAX_LINE_BYTES",
    "Anchor",
    "append_anchor",
    "check_anchor",
    "default_anchor_path",
    "find_anchor",
]

logger = logging.getLogger(__name__)

ANCHOR_DIR_ENV: Final = "FURNACE_ANCHOR_DIR"
#: One line must stay within one page: a single small write is never split or interleaved.
MAX_LINE_BYTES: Final = 4096
_SCHEMA_VERSION: Final = 1
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
# as batch ids: no characters Windows forbids in names, no whitespace
_UNSAFE: Final = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f\s]')


@dataclass(frozen=True, slots=True)
class Anchor:
    """One anchored batch: its chain had ``records`` records ending in ``final_hash``."""

    batch_id: str
    final_hash: str
    records: int
    station: str
    wall_utc: str


def default_anchor_path(station_name: str, *,
                        environ: Mapping[str, str] | None = None) -> Path:
    """The station's anchor log: ``<folder>/<station>.anchors.jsonl``.

    The folder is ``$FURNACE_ANCHOR_DIR`` if set, else the machine-wide state folder
    (platformdirs' site state dir + ``anchors``: ``%PROGRAMDATA%\\furnace\\anchors`` on
    Windows, ``/var/lib/furnace/anchors`` on Linux), one for every account on the lab PC,
    so that it does not live where a batch's owner alone decides. Unsafe characters in
    the station name become ``_``. ``environ`` defaults to ``os.environ``. No I/O.
    """
    env = os.environ if environ is None else environ
    folder = env.get(ANCHOR_DIR_ENV)
    if folder:
        base = Path(folder)
    else:
        import platformdirs  # only when the default is asked for

        base = Path(platformdirs.site_state_dir("furnace", appauthor=False)) / "anchors"
    name = _UNSAFE.sub("_", station_name).strip(". ") or "unnamed"
    return base / f"{name}.anchors.jsonl"


def append_anchor(log_path: Path, *, batch_id: str, final_hash: str, records: int,
                  wall_utc: datetime, station: str) -> None:
    """Append one line for an ended batch to ``log_path`` and fsync it.

    ``final_hash``/``records`` are the audit log's ``final_hash``/``count`` after the
    ``batch_ended`` record; ``wall_utc`` is an aware datetime (when it was anchored).
    Creates missing folders. Safe against concurrent appenders in other processes (see
    the module docstring). Blocking: one write and one fsync. Raises ``ValueError`` for
    a bad argument or a line over ``MAX_LINE_BYTES`` (nothing is written; also for text
    that is not valid Unicode), ``OSError`` if the folder or file cannot be written.
    """
    if not isinstance(batch_id, str) or not batch_id:
        raise ValueError(f"batch_id must be a non-empty string, got {batch_id!r}")
    if not isinstance(final_hash, str) or not _HEX64.fullmatch(final_hash):
        raise ValueError(f"final_hash must be a sha256 hex digest, got {final_hash!r}")
    if type(records) is not int or records < 1:
        raise ValueError(f"records must be a positive int, got {records!r}")
    if not isinstance(station, str):
        raise ValueError(f"station must be a string, got {station!r}")
    entry = {"batch_id": batch_id, "final_hash": final_hash, "records": records,
             "schema_version": _SCHEMA_VERSION, "station": station,
             "wall_utc": format_utc(wall_utc)}
    line = (json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            + "\n").encode("utf-8")
    if len(line) > MAX_LINE_BYTES:
        raise ValueError(f"anchor line of {len(line)} bytes exceeds {MAX_LINE_BYTES} "
                         "(batch_id or station name too long)")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    is_new = not log_path.exists()
    _append_line(log_path, line)
    if is_new:  # make the new file's name durable too
        fsync_dir(log_path.parent)
    logger.info("batch anchored", extra={"anchor_log": str(log_path), "batch_id": batch_id})


def _short_write(path: Path, written: int, wanted: int) -> OSError:
    return OSError(f"{path}: short write to the anchor log ({written} of {wanted} bytes)")


if sys.platform == "win32":
    import ctypes
    from ctypes import wintypes

    _FILE_APPEND_DATA: Final = 0x0004
    _SYNCHRONIZE: Final = 0x00100000
    _SHARE_ALL: Final = 0x1 | 0x2 | 0x4  # read, write, delete: never block a reader
    _OPEN_ALWAYS: Final = 4
    _FILE_ATTRIBUTE_NORMAL: Final = 0x80
    _FILE_FLAG_WRITE_THROUGH: Final = 0x80000000

    def _append_line(path: Path, line: bytes) -> None:
        """One append-only write (``FILE_APPEND_DATA`` without ``FILE_WRITE_DATA``), written
        through to the disk: ``FlushFileBuffers`` would need write access, which an
        append-only ACL on the log does not give."""
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        create = kernel32.CreateFileW
        create.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, wintypes.LPVOID,
                           wintypes.DWORD, wintypes.DWORD, wintypes.HANDLE]
        create.restype = wintypes.HANDLE
        write = kernel32.WriteFile
        write.argtypes = [wintypes.HANDLE, wintypes.LPCVOID, wintypes.DWORD,
                          ctypes.POINTER(wintypes.DWORD), wintypes.LPVOID]
        write.restype = wintypes.BOOL
        kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
        handle = create(str(path), _FILE_APPEND_DATA | _SYNCHRONIZE, _SHARE_ALL, None,
                        _OPEN_ALWAYS, _FILE_ATTRIBUTE_NORMAL | _FILE_FLAG_WRITE_THROUGH, None)
        if handle is None or handle == wintypes.HANDLE(-1).value:
            raise ctypes.WinError(ctypes.get_last_error())
        try:
            written = wintypes.DWORD(0)
            if not write(handle, line, len(line), ctypes.byref(written), None):
                raise ctypes.WinError(ctypes.get_last_error())
            if written.value != len(line):
                raise _short_write(path, written.value, len(line))
        finally:
            kernel32.CloseHandle(handle)

else:

    def _append_line(path: Path, line: bytes) -> None:
        """One ``O_APPEND`` write, then fsync."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o664)
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise _short_write(path, written, len(line))
            os.fsync(fd)
        finally:
            os.close(fd)


def _parse(line: bytes) -> Anchor | None:
    """One line of the log as an ``Anchor``; None if it is not one (torn or foreign)."""
    try:
        entry: Any = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(entry, dict):
        return None
    batch_id, final_hash, records = (entry.get(k) for k in ("batch_id", "final_hash",
                                                             "records"))
    if not (isinstance(batch_id, str) and isinstance(final_hash, str)
            and type(records) is int):
        return None
    return Anchor(batch_id, final_hash, records, str(entry.get("station", "")),
                  str(entry.get("wall_utc", "")))


def find_anchor(log_path: Path, batch_id: str) -> Anchor | None:
    """The last line for ``batch_id`` in the log (a batch anchored twice was resumed after
    it ended: the latest end counts), or None. Lines that are not anchors are skipped.
    Raises ``OSError`` if the log cannot be read."""
    found: Anchor | None = None
    for line in log_path.read_bytes().split(b"\n"):
        anchor = _parse(line) if line.strip() else None
        if anchor is not None and anchor.batch_id == batch_id:
            found = anchor
    return found


def check_anchor(log_path: Path, batch_id: str, final_hash: str,
                 records: int) -> tuple[bool, str]:
    """Does the log's last line for ``batch_id`` name this chain? (ok, one-line reason).

    Not ok when the batch is missing from the log or its record count or final hash
    differ (the chain was rewritten, cut or extended since it was anchored). Raises
    ``OSError`` if the log cannot be read.
    """
    anchor = find_anchor(log_path, batch_id)
    if anchor is None:
        return False, f"batch {batch_id} is not in the anchor log {log_path}"
    if anchor.records != records or anchor.final_hash != final_hash:
        return False, (f"the anchor log {log_path} has {anchor.records} records ending in "
                       f"{anchor.final_hash[:16]}... (anchored {anchor.wall_utc}); the folder "
                       f"has {records} ending in {final_hash[:16]}...")
    return True, f"matches the anchor log {log_path} (anchored {anchor.wall_utc})"
