"""Where a batch's scan loop puts its records: the audit (fsync'd per record) and the
trace (buffered; to the OS about once a minute of process time, fsync'd at most once a
minute of real time, durable at each checkpoint). On a full disk the space held for the
audit is given back and the trace stops, so the audit, the safe-state record and the
summary can still be written (docs/decisions/0010).

Not here: the file formats (``controller.records``), opening and closing the files or
writing the summary (``session``), or what gets recorded when (the scan loop).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controller.records.audit import AuditLog, RecordError
from controller.records.folder import AUDIT_FILE, TRACE_FILE
from controller.records.storage import DiskReserve, is_disk_full
from controller.records.trace import TraceWriter
from controller.run.clock import Clock
from controller.run.snapshot import Snapshot

__all__ = ["BatchRecorder"]

logger = logging.getLogger(__name__)

_TRACE_FLUSH_ROWS = 30  # rows to the OS about once a minute of process time at 2 s/cycle
# ... and to the disk (fsync) at most this often in real time. A batch in real time
# fsyncs every flush, as before; a dry run (a virtual clock racing through hours a second)
# would otherwise fsync thousands of times for rows a checkpoint makes durable anyway.
_TRACE_SYNC_REAL_S = 60.0


class BatchRecorder:
    """Routes the scan loop's records: audit (fsync'd) and trace (buffered). When the disk
    fills, the space held for the audit (``reserve``) is given back and the trace stops,
    so the audit goes on to the end (docs/decisions/0010)."""

    def __init__(self, audit: AuditLog, trace: TraceWriter, clock: Clock,
                 reserve: DiskReserve | None = None) -> None:
        self.audit_log = audit
        self.trace_writer = trace
        self.clock = clock
        self.reserve = reserve
        self._last_t_s: float | None = None
        self._rows = 0
        self._synced_real_s = clock.real_s()  # when the trace was last fsync'd
        self.trace_stopped = ""  # why the trace stopped (disk full), "" while it runs
        # also handed each trace row (the batch's server; must return at once)
        self.on_row: Callable[[Sequence[object]], None] | None = None
        # Told of every audit record once it is durable (notifications). Must not block;
        # an exception is logged and ignored.
        self.listeners: list[Callable[[str, float, Mapping[str, Any]], None]] = []

    def audit(self, event: str, t_s: float, fields: dict[str, Any]) -> None:
        """Append to the audit log, durable on return. On a full disk the reserve is given
        back, the append tried once more and the trace stopped. Raises ``RecordError`` if
        the record cannot be written: the run must then go safe, since nothing it does
        could be recorded."""
        if self._append(event, t_s, fields):
            self._tell(event, t_s, fields)
            return
        freed_bytes = self.reserve.release() if self.reserve is not None else 0
        if not (freed_bytes and self._append(event, t_s, fields)):  # once more, into it
            raise RecordError("the audit log cannot be written (disk full)")
        self._reserve_released(t_s, f"an {AUDIT_FILE} append", freed_bytes)
        if not self.trace_stopped:  # the trace would soon take that space from the audit
            self._stop_trace("disk full", disk_full=True)
        self._tell(event, t_s, fields)

    def _tell(self, event: str, t_s: float, fields: Mapping[str, Any]) -> None:
        for listener in self.listeners:
            try:
                listener(event, t_s, fields)
            except Exception:  # a listener is never worth the batch
                logger.exception("audit listener failed on %s", event)

    def _append(self, event: str, t_s: float, fields: dict[str, Any]) -> bool:
        """One append: True if it landed, False if the disk was full (the log is left
        ending at its last record). Raises ``RecordError`` on any other failure."""
        try:
            self.audit_log.append(event, t_s=t_s, wall=self.clock.wall(), **fields)
        except OSError as exc:
            if is_disk_full(exc):
                return False
            raise RecordError(f"the audit log cannot be written ({exc})") from exc
        except RecordError as exc:
            raise RecordError(f"the audit log cannot be written ({exc})") from exc
        return True

    def _reserve_released(self, t_s: float, cause: str, freed_bytes: int) -> None:
        logger.error("disk full (%s): %d bytes held for the audit given back", cause,
                     freed_bytes)
        self.audit("disk_reserve_released", t_s, {
            "cause": f"disk full on {cause}", "freed_bytes": freed_bytes,
            "action": "the space held for the audit was given back, so that the audit, the "
                      "safe-state record and the summary can still be written; the trace "
                      "stops"})

    def trace(self, row: Sequence[object]) -> None:
        """Append a trace row. The trace is the non-essential record: if the disk fills,
        it stops (recorded in the audit) and the batch goes on with the audit alone."""
        if self.on_row is not None:
            self.on_row(row)
        if self.trace_stopped:
            return
        try:
            self.trace_writer.write_row(row)
            self._rows += 1
            if self._rows % _TRACE_FLUSH_ROWS == 0:
                real_s = self.clock.real_s()
                sync = real_s - self._synced_real_s >= _TRACE_SYNC_REAL_S
                self.trace_writer.flush(sync=sync)
                if sync:
                    self._synced_real_s = real_s
        except (OSError, RecordError) as exc:
            self._trace_failed(exc)

    def _trace_failed(self, exc: OSError | RecordError) -> None:
        full = isinstance(exc, OSError) and is_disk_full(exc)
        freed_bytes = self.reserve.release() if full and self.reserve is not None else 0
        if freed_bytes:  # given back before the records below need the space
            self._reserve_released(self._last_t_s or 0.0, f"a {TRACE_FILE} write", freed_bytes)
        self._stop_trace("disk full" if full else str(exc), disk_full=full)

    def _stop_trace(self, reason: str, *, disk_full: bool) -> None:
        self.trace_stopped = reason
        self.trace_writer.abandon()  # rows not yet written would take the audit's space
        logger.error("trace stopped: %s; the audit goes on", reason)
        self.audit("records_degraded", self._last_t_s or 0.0, {
            "what": "trace stopped", "reason": reason, "disk_full": disk_full,
            "rows_written": self._rows})

    def sync_trace(self) -> dict[str, object]:
        """Make every trace row so far durable (at a checkpoint) and return the trace's
        digest fields for the audit (``trace_sha256``, ``trace_bytes``, ``trace_rows``):
        a crash then loses at most the rows since the last checkpoint, and ``furnace
        verify`` checks the rows up to it. A failure stops the trace, as above ({})."""
        if self.trace_stopped:  # what was written before it stopped is still covered
            with contextlib.suppress(OSError, RecordError):
                return dict(self.trace_writer.digest().as_fields())
            return {}
        try:
            self.trace_writer.flush(sync=False)  # (raises once the writer is closed)
            digest = self.trace_writer.digest()  # the one fsync
            self._synced_real_s = self.clock.real_s()
            return dict(digest.as_fields())
        except (OSError, RecordError) as exc:
            self._trace_failed(exc)
            return {}

    def observe(self, snap: Snapshot) -> None:
        """Remember the latest process time (for records made outside a cycle)."""
        self._last_t_s = snap.t_s
