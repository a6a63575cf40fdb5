"""The batch trace: one plain CSV row per scan cycle, buffered, fsync'd when the caller says.

Not here: which columns a station has or what goes in them (the scan cycle decides), or
checking a trace against the audit (``controller/records/verify.py``). The writer keeps a running
SHA-256 of the exact bytes it has written, so the session can record it in the audit
(``TraceDigest.as_fields``) and ``furnace verify`` can tell an edited row from an intact one.

Format, for Excel and Origin: UTF-8 without BOM, ``,`` separators, ``\\n`` line ends, one
line per row (CR/LF inside text become spaces), a header of the column names exactly as
given. Floats have a fixed number of decimals per column and never an exponent; None,
NaN and infinities are empty cells; text is quoted only when it holds ``,`` or ``"``.
"""

from __future__ import annotations

import contextlib
import csv
import enum
import hashlib
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final, Self

from controller.records.audit import RecordError, format_utc, fsync_dir

__all__ = ["COLUMN_DECIMALS", "DEFAULT_DECIMALS", "TRACE_FIELDS", "TraceDigest", "TraceWriter"]

logger = logging.getLogger(__name__)

DEFAULT_DECIMALS: Final = 3
# Columns that need more than DEFAULT_DECIMALS to keep an instrument's resolution:
# an analytical balance reads to 0.01 mg, DTG is small in %/min.
COLUMN_DECIMALS: Final[Mapping[str, int]] = {"mass_g": 5, "mass_pct": 4, "dtg_pct_per_min": 4}
_NEEDS_CARE: Final = re.compile(r'[",\r\n]')
#: The audit fields that carry a ``TraceDigest`` (in ``checkpoint`` and ``batch_ended``).
TRACE_FIELDS: Final = ("trace_sha256", "trace_bytes", "trace_rows")


@dataclass(frozen=True, slots=True)
class TraceDigest:
    """What the trace file holds so far: the SHA-256 (hex) of its first ``byte_count`` bytes,
    header included, and the number of complete data rows in them."""

    sha256_hex: str
    byte_count: int
    row_count: int

    def as_fields(self) -> dict[str, str | int]:
        """The audit fields: ``{"trace_sha256": ..., "trace_bytes": ..., "trace_rows": ...}``."""
        return dict(zip(TRACE_FIELDS, (self.sha256_hex, self.byte_count, self.row_count),
                        strict=True))


def _text_cell(text: str) -> str:
    """A text cell on one line, quoted if it holds a separator or a quote."""
    text = text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    if '"' in text or "," in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def _cell(value: object, spec: str) -> str:
    """The slow path of ``write_row``: anything but a plain float, str or None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, enum.Enum) and not isinstance(value, int | str):
        return _cell(value.value, spec)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        value = float(value)
        return format(value, spec) if value - value == 0.0 else ""
    if isinstance(value, str):
        text = str.__str__(value)  # a StrEnum's value, never "Class.MEMBER"
    elif isinstance(value, datetime):
        return format_utc(value)
    else:
        text = str(value)
    return text if _NEEDS_CARE.search(text) is None else _text_cell(text)


# The value types a row's precompiled format handles; any other (bool, enum, datetime, a
# str subclass, numpy's floats) takes the cell-by-cell path.
_FAST_CODES: Final[Mapping[type, str]] = {float: "", int: "%d", str: "%s", type(None): ""}
_MAX_FORMATS: Final = 64  # a row layout changes rarely (a stale reading is a None)


class _RowFormat:
    """The ``%`` template of one row layout (the type of each value), compiled once: one
    C-level format per row instead of a Python call per cell. It declines (``None``) a row
    the template would get wrong: a NaN or infinity (an empty cell), or text that must be
    quoted; the caller then formats cell by cell, so both paths write the same bytes."""

    __slots__ = ("_floats", "_pick", "_template", "_texts")

    def __init__(self, kinds: Sequence[type], specs: Sequence[str]) -> None:
        cells: list[str] = []
        kept: list[int] = []
        texts: list[int] = []
        for i, (kind, spec) in enumerate(zip(kinds, specs, strict=True)):
            if kind is type(None):
                cells.append("")
                continue
            kept.append(i)
            if kind is str:
                texts.append(i)
            cells.append(f"%{spec}" if kind is float else _FAST_CODES[kind])
        self._template = ",".join(cells)
        everything = len(kept) == len(specs)
        self._pick: Callable[[Sequence[object]], tuple[object, ...]] = (
            tuple if everything else (lambda values: tuple(values[i] for i in kept)))
        self._texts: tuple[int, ...] = tuple(texts)
        self._floats = float in kinds

    def line(self, values: Sequence[object]) -> str | None:
        line = self._template % self._pick(values)
        if self._floats and ("nan" in line or "inf" in line):
            return None  # (or a text holding those letters: the slow path is right too)
        texts = self._texts
        if texts and _NEEDS_CARE.search("".join(
                [values[i] for i in texts])) is not None:  # type: ignore[misc]
            return None
        return line


def _write_all(file: BinaryIO, data: bytes) -> tuple[int, OSError | None]:
    """Write ``data`` to an unbuffered file: (bytes written, the error that stopped it).

    A raw write may take only part of the bytes (a full disk takes what fits), so this
    loops, and says how far it got when it fails instead of raising.
    """
    view = memoryview(data)
    written = 0
    try:
        while written < len(data):
            n = file.write(view[written:])
            if not n:
                raise OSError(f"short write to {getattr(file, 'name', 'the trace')}")
            written += n
    except OSError as exc:
        return written, exc
    return written, None


class TraceWriter:
    """Writes ``trace.csv``. Creating one creates the file (never overwriting) and its header.

    ``write_row`` only formats and buffers (a few µs); rows reach the OS when
    ``max_pending_rows`` pile up and reach the disk on ``flush()``, which the caller
    invokes every N seconds of process time, and on ``close()``. Blocking: ``flush`` and
    ``close`` write and fsync on the calling thread. A failed write raises ``OSError``
    and closes the writer; later calls raise ``RecordError``.

    Integrity: ``sha256_hex`` and ``byte_count`` cover exactly the bytes handed to the OS
    (header included, buffered rows not), and ``digest()`` flushes first so that what it
    returns is on disk. A write that fails part-way is cut back to the last complete row,
    so the file and the digest agree even after a full disk.
    """

    _file: BinaryIO | None

    def __init__(
        self,
        path: Path,
        columns: Sequence[str],
        *,
        decimals: Mapping[str, int] | None = None,
        max_pending_rows: int = 1000,
    ) -> None:
        """Create ``path`` with a header of ``columns`` (unit-bearing names, unique).

        ``decimals`` overrides the decimals per column (defaults: ``COLUMN_DECIMALS``, else
        ``DEFAULT_DECIMALS``). Raises ``FileExistsError`` if the file exists, ``ValueError``
        on bad columns.
        """
        self._setup(path, columns, decimals, max_pending_rows)
        header = ",".join(_text_cell(c) for c in self._columns) + "\n"
        data = header.encode("utf-8")
        file = open(path, "xb", buffering=0)  # noqa: SIM115 - held open until close()
        try:
            _, error = _write_all(file, data)
            if error is not None:
                raise error
            os.fsync(file.fileno())
            fsync_dir(path.parent)
        except BaseException:
            file.close()
            raise
        self._account(data)
        self._file = file

    @classmethod
    def open_existing(
        cls,
        path: Path,
        columns: Sequence[str],
        *,
        decimals: Mapping[str, int] | None = None,
        max_pending_rows: int = 1000,
    ) -> TraceWriter:
        """Reopen a trace to append to it (resume). The header must equal ``columns``.

        A torn last row (no newline, from a crash) is cut away and kept in ``torn_tail``;
        the running hash then covers the header and every complete row, so the next
        ``digest()`` extends the one recorded before the crash. Raises ``RecordError`` if the
        header differs or is missing, ``OSError`` on I/O.
        """
        self = cls.__new__(cls)
        self._setup(path, columns, decimals, max_pending_rows)
        data = path.read_bytes()
        end_of_header = data.find(b"\n")
        if end_of_header < 0:
            raise RecordError(f"{path}: no complete header line")
        found = next(csv.reader([data[:end_of_header].decode("utf-8", "replace")]), [])
        if found != list(self._columns):
            raise RecordError(f"{path}: header {found} differs from the columns {self._columns}")
        end = data.rfind(b"\n") + 1
        self.torn_tail = data[end:]
        self._rows = data.count(b"\n", end_of_header + 1, end)
        if self.torn_tail:
            logger.warning("cutting a torn last row off the trace",
                           extra={"path": str(path), "torn_bytes": len(self.torn_tail)})
            with open(path, "r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
        self._account(data[:end])
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - held open until close()
        return self

    def _setup(self, path: Path, columns: Sequence[str], decimals: Mapping[str, int] | None,
               max_pending_rows: int) -> None:
        names = tuple(columns)
        if not names or not all(isinstance(c, str) and c.strip() for c in names):
            raise ValueError(f"columns must be non-empty strings, got {names!r}")
        if len(set(names)) != len(names) or any("\n" in c or "\r" in c for c in names):
            raise ValueError(f"columns must be unique and on one line, got {names!r}")
        wanted = {**COLUMN_DECIMALS, **(decimals or {})}
        unknown = set(decimals or {}) - set(names)
        if unknown:
            raise ValueError(f"decimals given for unknown columns {sorted(unknown)}")
        if max_pending_rows < 1:
            raise ValueError(f"max_pending_rows must be at least 1, got {max_pending_rows}")
        self._path = path
        self._columns = names
        self._specs = tuple(f".{int(wanted.get(c, DEFAULT_DECIMALS))}f" for c in names)
        self._pending: list[str] = []
        self._formats: dict[tuple[type, ...], _RowFormat | None] = {}
        self._max_pending = max_pending_rows
        self._rows = 0
        self._sha256 = hashlib.sha256()
        self._bytes = 0
        self._lines = 0  # newlines written, the header's included
        self._file = None
        self._failure: OSError | None = None
        #: Bytes of a torn last row that ``open_existing`` cut away (b"" if none).
        self.torn_tail: bytes = b""

    @property
    def path(self) -> Path:
        """The trace file."""
        return self._path

    @property
    def columns(self) -> tuple[str, ...]:
        """The header, in order."""
        return self._columns

    @property
    def row_count(self) -> int:
        """Rows written since the file was created, including rows not yet flushed."""
        return self._rows

    @property
    def byte_count(self) -> int:
        """Bytes written to the file so far, header included (buffered rows are not)."""
        return self._bytes

    @property
    def sha256_hex(self) -> str:
        """SHA-256 (hex) of the ``byte_count`` bytes written so far. No I/O."""
        return self._sha256.hexdigest()

    def digest(self) -> TraceDigest:
        """Flush and fsync buffered rows, then describe the file: hash, bytes, rows.

        Record ``digest().as_fields()`` in the audit (every ``checkpoint`` and the final
        ``batch_ended``): since the rows are on disk before the audit record is written,
        the record never claims bytes a crash could lose. On a closed writer (also one
        closed by a failed write) it does no I/O and describes what the file holds.
        Raises ``OSError`` if the flush fails (the writer is then closed).
        """
        if self._file is not None:
            self._write_pending(sync=True)
        return TraceDigest(self.sha256_hex, self._bytes, self._lines - 1)

    def write_row(self, values: Sequence[object]) -> None:
        """Format and buffer one row, one value per column, in header order.

        Floats (units as in the column name), ints, bools (1/0), str and StrEnum, aware
        datetimes (ISO 8601 UTC) and None are accepted. Raises ``ValueError`` on a wrong
        count, ``RecordError`` once closed. Does no I/O unless the buffer is full.
        """
        if self._file is None:
            raise self._closed_error()
        if len(values) != len(self._specs):
            raise ValueError(f"{len(values)} values for {len(self._specs)} columns")
        # Hot path (once per scan cycle): the row layout's precompiled format.
        kinds = tuple(map(type, values))
        compiled = self._formats.get(kinds)
        if compiled is None and kinds not in self._formats and len(self._formats) < _MAX_FORMATS:
            fast = all(kind in _FAST_CODES for kind in kinds)
            compiled = self._formats[kinds] = _RowFormat(kinds, self._specs) if fast else None
        line = compiled.line(values) if compiled is not None else None
        if line is None:
            line = ",".join([_cell(value, spec)
                             for value, spec in zip(values, self._specs, strict=True)])
        self._pending.append(line)
        self._rows += 1
        if len(self._pending) >= self._max_pending:
            self._write_pending(sync=False)

    def flush(self, *, sync: bool = True) -> None:
        """Hand buffered rows to the OS and fsync them (unless ``sync`` is False: the
        caller fsyncs on its own cadence, or ``digest()`` will). Raises ``OSError`` on
        failure."""
        if self._file is None:
            raise self._closed_error()
        self._write_pending(sync=sync)

    def close(self) -> None:
        """Flush, fsync and close. Idempotent; raises ``OSError`` if the final write fails."""
        if self._file is None:
            return
        try:
            self._write_pending(sync=True)
        finally:
            if self._file is not None:
                self._file.close()
                self._file = None

    def abandon(self) -> None:
        """Close without writing the buffered rows (they are lost): the disk is full and
        what space is left belongs to the audit. The file keeps the rows written so far,
        all complete, and ``digest()`` still describes them. Idempotent; never raises."""
        file, self._file = self._file, None
        self._pending.clear()
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()

    def _write_pending(self, *, sync: bool) -> None:
        file = self._file
        if file is None:
            return
        data = ("\n".join(self._pending) + "\n").encode("utf-8") if self._pending else b""
        self._pending.clear()
        written, error = _write_all(file, data)
        if error is not None:
            self._fail(file, error, data[:written])
            raise error
        self._account(data)
        if sync:
            try:
                os.fsync(file.fileno())
            except OSError as exc:
                self._fail(file, exc, b"")
                raise

    def _account(self, data: bytes) -> None:
        """Extend the running hash by bytes now in the file."""
        self._sha256.update(data)
        self._bytes += len(data)
        self._lines += data.count(b"\n")

    def _fail(self, file: BinaryIO, exc: OSError, written: bytes) -> None:
        """Close after a failed write. Part of a row may have reached the file (a full disk
        takes what fits): cut it, so the file ends on a row and matches the hash."""
        self._failure = exc
        self._file = None
        logger.error("trace write failed; the trace is closed",
                     extra={"path": str(self._path), "error": repr(exc)})
        complete = written[: written.rfind(b"\n") + 1]
        self._account(complete)
        if len(written) > len(complete):
            try:
                os.ftruncate(file.fileno(), self._bytes)
            except OSError as cut_exc:  # the file keeps a torn row that the digest lacks
                logger.error("cannot cut the partial row off the trace",
                             extra={"path": str(self._path), "error": repr(cut_exc)})
        with contextlib.suppress(OSError):  # its unwritten rows are lost; the caller raises
            file.close()

    def _closed_error(self) -> RecordError:
        why = "closed" if self._failure is None else f"closed after {self._failure!r}"
        return RecordError(f"{self._path}: trace is {why}")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
