"""A batch on disk (DESIGN.md §3): its folder, frozen recipe and station, summary, verifier.

Not here: the audit chain format (``controller/audit.py``), the trace (``controller/trace.py``),
or deciding what the summary says (the runner does).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from controller.audit import (
    FIRST_EVENT,
    GENESIS_HASH,
    RecordError,
    fsync_dir,
    replace_non_finite,
    scan_chain,
)
from drivers.errors import ConfigurationError

__all__ = [
    "AUDIT_FILE",
    "RECIPE_FILE",
    "STATION_FILE",
    "SUMMARY_FILE",
    "TRACE_FILE",
    "VerifyResult",
    "batch_id",
    "check_batches_dir",
    "create_batch_dir",
    "verify_batch",
    "write_frozen",
    "write_summary",
]

logger = logging.getLogger(__name__)

AUDIT_FILE: Final = "audit.jsonl"
TRACE_FILE: Final = "trace.csv"
RECIPE_FILE: Final = "recipe.toml"
STATION_FILE: Final = "station.toml"
SUMMARY_FILE: Final = "summary.json"
# Windows forbids <>:"/\|?* and control characters in names; whitespace is awkward in shells.
_UNSAFE: Final = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f\s]')
_MAX_SAMPLE_CHARS: Final = 80  # keeps batch paths well inside Windows' 260-character limit
_MAX_SUFFIX: Final = 999


def batch_id(sample_name: str, wall_start: datetime) -> str:
    """``20261124T211840Z_POP70-600-1600``: UTC start time and the sanitised sample name.

    Unsafe characters become ``_``; trailing dots and spaces (which Windows drops) go; an
    empty name becomes ``unnamed``. Raises ``ValueError`` on a naive datetime.
    """
    if wall_start.utcoffset() is None:
        raise ValueError(f"wall_start must be timezone-aware (UTC), got {wall_start!r}")
    sample = _UNSAFE.sub("_", sample_name)[:_MAX_SAMPLE_CHARS].rstrip(". ") or "unnamed"
    return f"{wall_start.astimezone(UTC):%Y%m%dT%H%M%SZ}_{sample}"


def check_batches_dir(batches_dir: Path) -> None:
    """Refuse, before anything moves, a folder for batches that cannot hold them: a file,
    a path through a file, or a folder this user may not write. Creates nothing (a missing
    folder is made by ``create_batch_dir``). Raises ``ConfigurationError`` naming the path
    and ``--batches``.
    """
    def fail(rule: str) -> ConfigurationError:
        return ConfigurationError(rule, source=str(batches_dir), field="--batches")

    probe = Path(batches_dir)
    try:
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if not probe.is_dir():
            raise fail("is a file, not a folder" if probe == Path(batches_dir)
                       else f"{probe} is a file, not a folder")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise fail(f"cannot create batch folders in {probe} (permission denied)")
    except OSError as exc:
        raise fail(f"cannot use it for batches ({exc.strerror or exc})") from None


def create_batch_dir(batches_dir: Path, sample_name: str, wall_start: datetime) -> Path:
    """Create and return a new, empty batch folder under ``batches_dir`` (made if missing).

    Never reuses a folder: if the id is taken, ``-2``, ``-3``... is appended. Raises
    ``FileExistsError`` after 999 tries, ``OSError`` on I/O, ``ValueError`` on a naive time.
    """
    base = batch_id(sample_name, wall_start)
    batches_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, _MAX_SUFFIX + 1):
        path = batches_dir / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()  # exclusive: fails if another run took the name first
        except FileExistsError:
            continue
        fsync_dir(batches_dir)
        logger.info("batch folder created", extra={"batch_dir": str(path)})
        return path
    raise FileExistsError(f"{batches_dir}: {base} and {_MAX_SUFFIX - 1} suffixes all exist")


def write_frozen(batch_dir: Path, name: str, text: str) -> str:
    """Freeze ``text`` as ``batch_dir/name`` (recipe.toml, station.toml); return its sha256.

    The bytes are UTF-8 with the newlines exactly as in ``text`` (no translation, so the
    hash is the same on every OS). The file is created exclusively, fsync'd and made
    read-only. Raises ``FileExistsError`` if it exists, ``ValueError`` on a bad name.
    """
    if not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"name must be a plain file name, got {name!r}")
    data = text.encode("utf-8")
    path = batch_dir / name
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(batch_dir)
    # Read-only guards the frozen copy against an editor's "save"; the hash catches the rest.
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    return hashlib.sha256(data).hexdigest()


def write_summary(batch_dir: Path, data: Mapping[str, Any]) -> Path:
    """Atomically write ``summary.json``: tmp file in the same folder, fsync, ``os.replace``.

    ``data`` must hold ``audit_final_hash`` (the log's ``final_hash``) and ``audit_records``
    (its ``count``); the rest is the caller's (outcome, end reason, timings, gas used).
    NaN and infinities are written as strings, as in the audit log. Raises ``ValueError``
    if either audit key is missing or malformed, ``TypeError`` if a value is not JSON,
    ``OSError`` on I/O. Overwrites an earlier summary (a resumed batch ends again).
    """
    digest, records = data.get("audit_final_hash"), data.get("audit_records")
    if not (isinstance(digest, str) and len(digest) == 64 and digest != GENESIS_HASH):
        raise ValueError(f"summary needs audit_final_hash (a sha256 hex), got {digest!r}")
    if type(records) is not int or records < 1:
        raise ValueError(f"summary needs audit_records (a positive int), got {records!r}")
    try:
        text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(replace_non_finite(data), indent=2, ensure_ascii=False)
    path = batch_dir / SUMMARY_FILE
    tmp = batch_dir / (SUMMARY_FILE + ".tmp")
    with open(tmp, "wb") as f:
        f.write((text + "\n").encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(batch_dir)
    return path


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The verdict on one batch folder.

    ``records`` counts the audit records that are intact and chained from the start;
    ``first_bad`` is the index (= seq = line - 1) of the first bad or missing record, or
    None when the chain is fine and the fault lies elsewhere (summary, frozen files).
    ``reason`` is one line; ``warnings`` list oddities that are not tampering.
    """

    ok: bool
    records: int
    first_bad: int | None
    reason: str
    warnings: tuple[str, ...] = ()


def verify_batch(batch_dir: Path) -> VerifyResult:
    """Check a batch folder: the audit chain, the summary against it, the frozen files.

    Checks, in order: every audit line is a JSON object in the writer's exact form, seq
    runs 0, 1, 2..., each ``prev`` is the previous ``hash``, each ``hash`` recomputes, and
    no torn last line; recipe.toml and station.toml match the hashes in record 0;
    summary.json exists and its ``audit_records`` and ``audit_final_hash`` match the
    chain (so a dropped tail is caught). Reads files only; never raises for a bad batch.
    """
    audit_path = batch_dir / AUDIT_FILE
    try:
        scan = scan_chain(audit_path.read_bytes())
    except OSError as exc:
        return VerifyResult(False, 0, None, f"{AUDIT_FILE}: cannot read ({exc.strerror or exc})")
    count, warnings = scan.count, scan.warnings

    def bad(first_bad: int | None, reason: str) -> VerifyResult:
        return VerifyResult(False, count, first_bad, reason, warnings)

    if scan.bad_index is not None:
        return bad(scan.bad_index, f"{AUDIT_FILE}: {scan.reason}")
    if scan.torn_tail:
        return bad(count, f"{AUDIT_FILE}: record {count} (line {count + 1}): torn last line, "
                          f"{len(scan.torn_tail)} bytes without a newline (interrupted write)")
    if scan.first_record is None:
        return bad(0, f"{AUDIT_FILE}: empty, no {FIRST_EVENT!r} record")
    for name, key in ((RECIPE_FILE, "recipe_sha256"), (STATION_FILE, "station_sha256")):
        try:
            actual = hashlib.sha256((batch_dir / name).read_bytes()).hexdigest()
        except OSError as exc:
            return bad(None, f"{name}: cannot read ({exc.strerror or exc})")
        if actual != scan.first_record[key]:
            return bad(None, f"{name}: sha256 {actual[:12]}... differs from {key} "
                             f"{scan.first_record[key][:12]}... in record 0 (changed since start)")
    try:
        summary = _read_summary(batch_dir / SUMMARY_FILE)
    except RecordError as exc:
        return bad(None, str(exc))
    if summary["audit_records"] != count:
        first_missing = min(count, summary["audit_records"])
        return bad(first_missing, f"{SUMMARY_FILE}: audit_records is {summary['audit_records']} "
                                  f"but the chain has {count} (records dropped or added)")
    if summary["audit_final_hash"] != scan.final_hash:
        return bad(count - 1, f"{SUMMARY_FILE}: audit_final_hash does not match the hash of "
                              f"record {count - 1} (chain rebuilt or summary edited)")
    return VerifyResult(True, count, None,
                        f"intact: {count} records, final hash {scan.final_hash}", warnings)


def _read_summary(path: Path) -> dict[str, Any]:
    """Load the summary's audit fields. Raises ``RecordError`` with a one-line reason."""
    try:
        summary = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise RecordError(f"{path.name}: missing (batch still running, interrupted, "
                          f"or the file was deleted)") from None
    except OSError as exc:
        raise RecordError(f"{path.name}: cannot read ({exc.strerror or exc})") from exc
    except (ValueError, RecursionError):
        raise RecordError(f"{path.name}: not valid UTF-8 JSON") from None
    if not isinstance(summary, dict):
        raise RecordError(f"{path.name}: not a JSON object")
    if type(summary.get("audit_records")) is not int:
        raise RecordError(f"{path.name}: audit_records missing or not an integer")
    if not isinstance(summary.get("audit_final_hash"), str):
        raise RecordError(f"{path.name}: audit_final_hash missing or not a string")
    return summary
