"""A batch's frozen recipe and station, and its summary.json (written, read back as the
writer wrote it, and its digest for the ``batch_ended`` record).

Not here: the folder and its file names (``folder.py``), the audit chain format
(``audit.py``), the trace (``trace.py``), checking a folder (``verify.py``), or deciding
what the summary says (the runner does).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from controller.records.audit import (
    GENESIS_HASH,
    RecordError,
    canonical_json,
    fsync_dir,
    replace_non_finite,
)
from controller.records.folder import MAPS_DIR, SUMMARY_FILE

__all__ = [
    "SUMMARY_AUDIT_KEYS",
    "read_summary",
    "summary_digest",
    "write_frozen",
    "write_frozen_maps",
    "write_summary",
]

#: The summary's keys that point at the audit chain; ``summary_digest`` leaves them out,
#: since they are only known once the ``batch_ended`` record carrying the digest is written.
SUMMARY_AUDIT_KEYS: Final = ("audit_final_hash", "audit_records")


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


def write_frozen_maps(batch_dir: Path, maps: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Freeze each ``(device, text)`` as ``batch_dir/maps/<device>.toml``, as
    ``write_frozen`` does; return each one's sha256 by device. Raises ``FileExistsError``
    if ``maps/`` exists, ``ValueError`` on a device name that is not a plain file name."""
    folder = batch_dir / MAPS_DIR
    folder.mkdir()
    fsync_dir(batch_dir)
    return {device: write_frozen(folder, f"{device}.toml", text) for device, text in maps}


def _summary_text(data: Mapping[str, Any]) -> str:
    """The summary as ``write_summary`` writes it (before the final newline)."""
    try:
        return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError:
        return json.dumps(replace_non_finite(data), indent=2, ensure_ascii=False)


def summary_digest(summary: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the summary's content, ``audit_final_hash``/``audit_records`` left out.

    The content is taken as ``write_summary`` stores it (NaN as "NaN", tuples as lists,
    keys as strings) in the audit's canonical JSON, so the digest of the dict the session
    holds equals the digest of the file read back. The session records it as
    ``summary_sha256`` in ``batch_ended``; ``furnace verify`` recomputes it. Raises
    ``TypeError`` if a value is not JSON.
    """
    body = {k: v for k, v in summary.items() if k not in SUMMARY_AUDIT_KEYS}
    stored = json.loads(_summary_text(body))
    return hashlib.sha256(canonical_json(stored).encode("utf-8")).hexdigest()


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
    text = _summary_text(data)
    path = batch_dir / SUMMARY_FILE
    tmp = batch_dir / (SUMMARY_FILE + ".tmp")
    with open(tmp, "wb") as f:
        f.write((text + "\n").encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(batch_dir)
    return path


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name}")


def read_summary(path: Path) -> dict[str, Any]:
    """Read ``summary.json`` as ``write_summary`` wrote it; raise ``RecordError`` otherwise.

    Checks that the file is a UTF-8 JSON object with an integer ``audit_records`` and a
    string ``audit_final_hash``, and that its bytes are exactly what ``write_summary``
    writes for that content (so a duplicated key or a hand edit that parses the same is
    caught). The error's message is one line naming the file.
    """
    name = path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RecordError(f"{name}: missing") from None
    except OSError as exc:
        raise RecordError(f"{name}: cannot read ({exc.strerror or exc})") from exc
    try:
        summary = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise RecordError(f"{name}: not valid UTF-8 JSON") from None
    if not isinstance(summary, dict):
        raise RecordError(f"{name}: not a JSON object")
    if type(summary.get("audit_records")) is not int:
        raise RecordError(f"{name}: audit_records missing or not an integer")
    if not isinstance(summary.get("audit_final_hash"), str):
        raise RecordError(f"{name}: audit_final_hash missing or not a string")
    if (_summary_text(summary) + "\n").encode("utf-8") != data:
        raise RecordError(f"{name}: not in the form the writer produces (edited by hand?)")
    return summary
