"""Batch folders built with the record library alone (no run): fast fixtures for verify.

``make_hashed_batch`` writes what the session writes once it records trace and summary
hashes: trace rows, ``checkpoint`` records carrying the trace digest, a ``batch_ended``
record with the final digest and ``summary_sha256``, the summary and an anchor line.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controller.records.anchor import append_anchor
from controller.records.audit import AuditLog
from controller.records.batch import summary_digest, write_frozen, write_summary
from controller.records.folder import RECIPE_FILE, STATION_FILE, BatchFolder
from controller.records.trace import TraceWriter

WALL0 = datetime(2026, 11, 24, 21, 18, 40, tzinfo=UTC)
RECIPE = 'name = "POP70-600-1600"\r\n[[stage]]\nto_c = 600.0\n'
STATION = 'name = "sim"\n'
COLUMNS = ("elapsed_s", "wall_utc", "stage", "state", "setpoint_c", "furnace_c", "flow_Ar_sccm")
SUMMARY: dict[str, Any] = {
    "outcome": "completed", "end_reason": "end of recipe", "operators": ["ana"],
    "station": "sim", "planned_s": 3600.0, "actual_s": 3725.5, "peak_c": 1601.25,
    "gas_used_l": {"Ar": 152.25, "air": 30.0}, "holdback_s": float("nan"),
    "dwells": [{"stage": "préchauffage", "in_band_s": 7200.0}],
}


def wall(t_s: float) -> datetime:
    return WALL0 + timedelta(seconds=t_s)


def make_hashed_batch(root: Path, *, rows: int = 12, checkpoint_every: int = 5,
                      ended: bool = True, anchor_log: Path | None = None,
                      summary: dict[str, Any] | None = None) -> Path:
    """A batch as the wired session writes it. ``ended=False``: killed after the last row
    was flushed, so rows after the last checkpoint are in the file but not yet covered."""
    folder = BatchFolder.create(root, "POP70-600-1600", WALL0)
    batch = folder.path
    recipe_sha = write_frozen(batch, RECIPE_FILE, RECIPE)
    station_sha = write_frozen(batch, STATION_FILE, STATION)
    with AuditLog.create(folder.audit_jsonl, "0.1.0", recipe_sha, station_sha, t_s=0.0,
                         wall=WALL0, batch_id=batch.name, operator="ana",
                         station="sim") as log:
        trace = TraceWriter(folder.trace_csv, COLUMNS)
        for i in range(rows):
            t_s = 2.0 * (i + 1)
            trace.write_row([t_s, wall(t_s), "préchauffage", "running", 600.0 + i,
                             599.5 + i, 200.0])
            if (i + 1) % checkpoint_every == 0:
                log.append("checkpoint", t_s=t_s, wall=wall(t_s),
                           run_state={"step": i // checkpoint_every, "elapsed_s": t_s},
                           **trace.digest().as_fields())
        if not ended:
            trace.flush()
            trace.close()
            return batch
        trace.close()
        content = dict(SUMMARY if summary is None else summary)
        t_end = 2.0 * rows + 1.0
        log.append("batch_ended", t_s=t_end, wall=wall(t_end), outcome=content["outcome"],
                   end_reason=content["end_reason"], summary_sha256=summary_digest(content),
                   **trace.digest().as_fields())
        write_summary(batch, {**content, "audit_final_hash": log.final_hash,
                              "audit_records": log.count})
        if anchor_log is not None:
            append_anchor(anchor_log, batch_id=batch.name, final_hash=log.final_hash,
                          records=log.count, wall_utc=wall(t_end + 1.0), station="sim")
    return batch


def audit_records(batch: Path) -> list[dict[str, Any]]:
    return list(BatchFolder(batch).read_audit())


def rewrite_chain(batch: Path, records: list[dict[str, Any]]) -> None:
    """What someone with the source and write access does: a fresh, consistent chain from
    ``records`` (hashes recomputed by the real writer), the summary made to point at it."""
    folder = BatchFolder(batch)
    folder.audit_jsonl.unlink()
    first, *rest = records
    skip = {"seq", "t_s", "wall_utc", "event", "prev", "hash"}

    def fields(record: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if k not in skip}

    def when(record: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(record["wall_utc"].replace("Z", "+00:00"))

    head = fields(first)
    with AuditLog.create(folder.audit_jsonl, head.pop("software_version"),
                         head.pop("recipe_sha256"), head.pop("station_sha256"),
                         t_s=first["t_s"], wall=when(first), **head) as log:
        for record in rest:
            log.append(record["event"], t_s=record["t_s"], wall=when(record),
                       **fields(record))
        summary = folder.read_summary()
        if summary is not None:
            write_summary(batch, {**summary, "audit_final_hash": log.final_hash,
                                  "audit_records": log.count})
