"""The batch audit log: hash-chained JSON lines, each record fsync'd before ``append`` returns.

Also the chain scanner that both resume (``AuditLog.open_existing``) and ``verify_batch`` use.
Not here: what is worth recording (the runner decides), the batch folder and the verifier.

Record layout (one line each, UTF-8, ``\\n``-terminated)::

    {"seq":0,"t_s":0.0,"wall_utc":"2026-11-24T21:18:40.000Z","event":"batch_created",
     <fields, sorted>,"prev":"000...0","hash":"<sha256 hex>"}

``hash`` is the SHA-256 of the canonical JSON of the record without ``hash``
(``sort_keys=True, separators=(",", ":"), ensure_ascii=False``). The line itself must be
byte-for-byte what this module writes, so an edit that parses to the same record
(``1e+16`` -> ``1E+16``, a trailing space) is caught as well.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Final, Self

from controller.records.storage import is_disk_full
from drivers.errors import FurnaceError

__all__ = [
    "FIRST_EVENT",
    "GENESIS_HASH",
    "AuditLog",
    "ChainScan",
    "RecordError",
    "canonical_json",
    "format_utc",
    "fsync_dir",
    "replace_non_finite",
    "scan_chain",
]

logger = logging.getLogger(__name__)

GENESIS_HASH: Final = "0" * 64
FIRST_EVENT: Final = "batch_created"
_HEAD_KEYS: Final = ("seq", "t_s", "wall_utc", "event")
_RESERVED: Final = frozenset((*_HEAD_KEYS, "prev", "hash"))
_HEX64: Final = re.compile(r"[0-9a-f]{64}")


class RecordError(FurnaceError):
    """A batch record on disk cannot be used as it stands (broken chain, wrong header...)."""


def format_utc(wall: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``. Raises ``ValueError`` on a naive datetime."""
    if wall.utcoffset() is None:
        raise ValueError(f"wall time must be timezone-aware (UTC), got naive {wall!r}")
    return wall.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def fsync_dir(directory: Path) -> None:
    """Make a new or renamed entry in ``directory`` durable. A no-op where unsupported.

    Windows cannot open a directory for fsync (and NTFS journals metadata), so only POSIX
    systems do it. Raises ``OSError`` if the fsync itself fails.
    """
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_non_finite(value: Any) -> Any:
    """``value`` with every NaN/infinity (in dicts, lists, tuples) replaced by its JSON name
    as a string: "NaN", "Infinity", "-Infinity". JSON itself has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {k: replace_non_finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [replace_non_finite(v) for v in value]
    return value


def _canonical_json(obj: Any) -> str:
    """The canonical JSON that is hashed; NaN and infinities become strings (see module)."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except ValueError:  # a non-finite float somewhere; rare, so only then walk the value
        return json.dumps(replace_non_finite(obj), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False)


def canonical_json(obj: Any) -> str:
    """The canonical JSON form this module hashes: sorted keys, no spaces, UTF-8 text,
    NaN and infinities as the strings "NaN", "Infinity", "-Infinity". Raises
    ``TypeError`` for a value JSON cannot hold."""
    return _canonical_json(obj)


def _layout(body: dict[str, Any], digest: str) -> tuple[dict[str, Any], bytes]:
    """The record in file order (head, sorted fields, prev, hash) and its line bytes.

    ``body`` must come from ``json.loads(_canonical_json(...))`` so nested objects are sorted.
    """
    record = {k: body[k] for k in _HEAD_KEYS}
    record.update((k, body[k]) for k in sorted(body) if k not in _RESERVED)
    record["prev"] = body["prev"]
    record["hash"] = digest
    text = json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return record, (text + "\n").encode("utf-8")


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name}")


def _write_line(file: BinaryIO, line: bytes) -> None:
    """Write all of ``line`` to an unbuffered file: a raw write may take only part of it
    (a full disk takes what fits), so loop. Raises ``OSError`` part-way through."""
    view = memoryview(line)
    while view:
        written = file.write(view)
        if not written:
            raise OSError(f"short write to {getattr(file, 'name', 'the audit log')}")
        view = view[written:]


@dataclass(frozen=True, slots=True)
class ChainScan:
    """What ``scan_chain`` found. Records are indexed from 0 (index = seq = line - 1)."""

    count: int  # records that are intact and correctly chained, from the start
    final_hash: str  # hash of the last of those (GENESIS_HASH if none)
    end_offset: int  # byte offset just past the last of those
    first_record: dict[str, Any] | None
    bad_index: int | None  # index of the first bad complete line, None if all are good
    reason: str  # one line naming the record; "" if no complete line is bad
    torn_tail: bytes  # bytes after the last newline: an interrupted append
    warnings: tuple[str, ...]  # oddities that are not tampering (wall clock going back)


def _check_line(line: bytes, index: int, prev_hash: str) -> tuple[dict[str, Any] | None, str]:
    """Parse and check one ``\\n``-terminated line. Returns (record, "") or (None, why)."""
    try:
        record = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None, "not valid UTF-8 JSON"
    if not isinstance(record, dict):
        return None, "not a JSON object"
    missing = [k for k in (*_HEAD_KEYS, "prev", "hash") if k not in record]
    if missing:
        return None, f"missing {', '.join(missing)}"
    seq, t_s, digest = record["seq"], record["t_s"], record["hash"]
    if type(seq) is not int or type(t_s) not in (int, float):
        return None, "seq or t_s is not a number"
    if not isinstance(digest, str) or not isinstance(record["prev"], str):
        return None, "prev or hash is not a string"
    if not isinstance(record["event"], str) or not isinstance(record["wall_utc"], str):
        return None, "event or wall_utc is not a string"
    body = {k: v for k, v in record.items() if k != "hash"}
    text = _canonical_json(body)
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != digest:
        return None, "hash does not match its content"
    if _layout(json.loads(text), digest)[1] != line:
        return None, "not in the form the writer produces (edited by hand?)"
    if seq != index:
        return None, f"seq is {seq}, expected {index} (a record is missing, added or moved)"
    if record["prev"] != prev_hash:
        what = "the genesis value" if index == 0 else f"the hash of record {index - 1}"
        return None, f"prev does not match {what}"
    if index == 0:
        if record["event"] != FIRST_EVENT:
            return None, f"the first record must be {FIRST_EVENT!r}"
        for key in ("recipe_sha256", "station_sha256"):
            if not (isinstance(record.get(key), str) and _HEX64.fullmatch(record[key])):
                return None, f"{key} is missing or not a sha256 hex digest"
        if not isinstance(record.get("software_version"), str):
            return None, "software_version is missing"
    return record, ""


def scan_chain(data: bytes) -> ChainScan:
    """Check an audit file's bytes record by record; stop at the first bad line.

    Pure (no I/O). Bytes after the last newline are an interrupted append (``torn_tail``),
    never a record: ``append`` returns only after the whole line, newline included, is
    fsync'd. Wall-clock steps backwards are reported in ``warnings``, not as failures.
    """
    count, pos, prev_hash = 0, 0, GENESIS_HASH
    first: dict[str, Any] | None = None
    warnings: list[str] = []
    last_wall: datetime | None = None
    while (newline := data.find(b"\n", pos)) >= 0:
        record, why = _check_line(data[pos : newline + 1], count, prev_hash)
        if record is None:
            reason = f"record {count} (line {count + 1}): {why}"
            return ChainScan(count, prev_hash, pos, first, count, reason, data[newline + 1 :],
                             tuple(warnings))
        first = first or record
        try:
            wall = datetime.fromisoformat(record["wall_utc"])
        except ValueError:
            warnings.append(f"record {count}: wall_utc {record['wall_utc']!r} is not ISO 8601")
        else:
            if last_wall is not None and wall < last_wall:
                back_s = (last_wall - wall).total_seconds()
                warnings.append(f"record {count}: wall clock went back {back_s:.3f} s")
            last_wall = wall
        prev_hash, pos, count = record["hash"], newline + 1, count + 1
    return ChainScan(count, prev_hash, pos, first, None, "", data[pos:], tuple(warnings))


class AuditLog:
    """An open, append-only audit log. Make one with ``create`` or ``open_existing``.

    Blocking: every ``append`` does one write and one ``os.fsync`` on the calling thread
    (about a millisecond on a local SSD, more on a slow disk), so the record is durable
    before the action it records goes further. Not thread-safe; one writer per batch.
    A failed append is cut back, so the file always ends with the last complete record
    (no torn line for the next record to be glued to). After a full disk (ENOSPC, on the
    write or the fsync) the log stays usable: the caller may free space and append
    again. After any other failure, or a cut that fails, it refuses further appends
    (``RecordError``): a record that may be lost must not be built upon silently (P6).
    """

    def __init__(self, path: Path, file: BinaryIO, scan: ChainScan) -> None:
        """Private: use ``create`` or ``open_existing``."""
        self._path = path
        self._file: BinaryIO | None = file
        self._count = scan.count
        self._final_hash = scan.final_hash
        self._first_record = scan.first_record
        self._size_bytes = scan.end_offset  # the file ends with the last complete record
        self._failure: OSError | None = None
        #: Bytes of an interrupted last append that ``open_existing`` cut away (b"" if none).
        #: The caller should audit it, e.g. ``append("torn_tail_recovered", bytes=n, ...)``.
        self.torn_tail: bytes = scan.torn_tail

    @classmethod
    def create(
        cls,
        path: Path,
        software_version: str,
        recipe_sha256: str,
        station_sha256: str,
        *,
        t_s: float,
        wall: datetime,
        **fields: Any,
    ) -> AuditLog:
        """Create ``path`` (never overwriting) and durably write the ``batch_created`` record.

        ``fields`` (operator, batch id, host...) go into that first record too. Raises
        ``FileExistsError`` if the file exists, ``ValueError`` on a malformed hash.
        """
        for name, digest in (("recipe_sha256", recipe_sha256), ("station_sha256", station_sha256)):
            if not _HEX64.fullmatch(digest):
                raise ValueError(f"{name} must be 64 lowercase hex digits, got {digest!r}")
        empty = ChainScan(0, GENESIS_HASH, 0, None, None, "", b"", ())
        log = cls(path, open(path, "xb", buffering=0), empty)  # noqa: SIM115 - held open
        try:
            fsync_dir(path.parent)
            log.append(FIRST_EVENT, t_s=t_s, wall=wall, software_version=software_version,
                       recipe_sha256=recipe_sha256, station_sha256=station_sha256, **fields)
        except BaseException:
            log.close()
            raise
        return log

    @classmethod
    def open_existing(cls, path: Path) -> AuditLog:
        """Reopen a log to continue it (resume): check the chain, cut away a torn last line.

        The cut bytes are kept in ``torn_tail``. Raises ``RecordError`` if any complete
        record is bad or there is none (so nothing is ever appended to a broken chain),
        ``OSError`` if the file cannot be read or truncated.
        """
        scan = scan_chain(path.read_bytes())
        if scan.bad_index is not None:
            raise RecordError(f"{path}: {scan.reason}")
        if scan.count == 0:
            raise RecordError(f"{path}: no complete record, not even {FIRST_EVENT!r}")
        if scan.torn_tail:
            logger.warning("cutting a torn last line off the audit log",
                           extra={"path": str(path), "torn_bytes": len(scan.torn_tail)})
            with open(path, "r+b") as f:
                f.truncate(scan.end_offset)
                os.fsync(f.fileno())
        return cls(path, open(path, "ab", buffering=0), scan)  # noqa: SIM115 - held open

    @property
    def path(self) -> Path:
        """The audit file."""
        return self._path

    @property
    def count(self) -> int:
        """Number of records in the chain (the next record's ``seq``)."""
        return self._count

    @property
    def final_hash(self) -> str:
        """Hash of the last record (``GENESIS_HASH`` before the first)."""
        return self._final_hash

    @property
    def first_record(self) -> dict[str, Any] | None:
        """The ``batch_created`` record: software version, recipe and station hashes."""
        return self._first_record

    def append(self, event: str, *, t_s: float, wall: datetime, **fields: Any) -> dict[str, Any]:
        """Write one record and fsync it; return the record exactly as stored.

        ``t_s`` is process time in seconds, ``wall`` an aware UTC datetime. ``fields`` are
        any JSON-serialisable values (who, what, why, old, new...); finite floats
        round-trip exactly, NaN and infinities are stored as the strings "NaN",
        "Infinity", "-Infinity". Raises ``ValueError``/``TypeError`` for bad arguments
        (nothing is written), ``OSError`` if the write or fsync fails (the partial record
        is cut off; after anything but a full disk the log is then unusable) and
        ``RecordError`` if it already failed or is closed.
        """
        if self._file is None or self._failure is not None:
            why = "closed" if self._failure is None else f"unusable after {self._failure!r}"
            raise RecordError(f"{self._path}: audit log is {why}")
        if not isinstance(event, str) or not event:
            raise ValueError(f"event must be a non-empty string, got {event!r}")
        clash = _RESERVED.intersection(fields)
        if clash:
            raise ValueError(f"field names reserved by the audit log: {sorted(clash)}")
        t_s = float(t_s)
        if not math.isfinite(t_s):
            raise ValueError(f"t_s must be finite, got {t_s!r}")
        body = {"seq": self._count, "t_s": t_s, "wall_utc": format_utc(wall), "event": event,
                **fields, "prev": self._final_hash}
        text = _canonical_json(body)
        data = text.encode("utf-8")
        digest = hashlib.sha256(data).hexdigest()
        record, line = _layout(json.loads(text), digest)
        self._write_durably(self._file, line)
        if self._count == 0:
            self._first_record = json.loads(line)  # a copy the caller cannot change
        self._count += 1
        self._final_hash = digest
        return record

    def _write_durably(self, file: BinaryIO, line: bytes) -> None:
        try:
            _write_line(file, line)
            os.fsync(file.fileno())
        except OSError as exc:
            self._cut_back(file, exc)
            raise
        self._size_bytes += len(line)

    def _cut_back(self, file: BinaryIO, exc: OSError) -> None:
        """After a failed append, cut the file back to the last complete record and decide
        whether the log may go on (only after a full disk, and only if the cut held)."""
        extra = {"path": str(self._path), "error": repr(exc), "size_bytes": self._size_bytes}
        try:
            file.truncate(self._size_bytes)
            file.seek(self._size_bytes)  # "xb" (a new log) writes at the position, not the end
            os.fsync(file.fileno())
        except OSError as cut_exc:
            self._failure = exc
            logger.error("audit write failed and the partial record could not be cut off; "
                         "the log refuses further records", extra={**extra,
                                                                    "cut_error": repr(cut_exc)})
            return
        if is_disk_full(exc):  # nothing else is lost: every earlier record was fsync'd
            logger.error("audit write failed: disk full; the log ends at its last record",
                         extra=extra)
            return
        self._failure = exc
        logger.error("audit write failed; the log refuses further records", extra=extra)

    def close(self) -> None:
        """Close the file. Every record is already durable; idempotent."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
