"""Batch records in one import: folder, frozen files, audit log, trace, summary, verifier.

A re-export only; the code lives in ``controller/batch.py`` (folder, summary, verify),
``controller/audit.py`` (hash-chained audit log) and ``controller/trace.py`` (CSV trace).
"""

from __future__ import annotations

from controller.audit import AuditLog, RecordError
from controller.batch import (
    AUDIT_FILE,
    RECIPE_FILE,
    STATION_FILE,
    SUMMARY_FILE,
    TRACE_FILE,
    VerifyResult,
    create_batch_dir,
    verify_batch,
    write_frozen,
    write_summary,
)
from controller.trace import TraceWriter

__all__ = [
    "AUDIT_FILE",
    "RECIPE_FILE",
    "STATION_FILE",
    "SUMMARY_FILE",
    "TRACE_FILE",
    "AuditLog",
    "RecordError",
    "TraceWriter",
    "VerifyResult",
    "create_batch_dir",
    "verify_batch",
    "write_frozen",
    "write_summary",
]
