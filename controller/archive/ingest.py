"""``furnace archive``: one ended, verified batch folder into the archive, in one
transaction; again is a no-op; a folder whose final hash differs from the archived one is
reported, never written over.

Reads the folder through ``controller.records`` (verified first, whole) and
``controller.analysis`` (the arrays, the exotherm); writes the tables of ``schema``. Not
here: opening the database (``db``), reading it back (``query``), printing (the CLI).
"""

from __future__ import annotations

import json
import logging
import math
import socket
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from controller.analysis.data import BatchData, load_batch
from controller.archive.codec import FLOAT, TEXT, encode_floats, encode_texts
from controller.archive.schema import (
    batch_parameters,
    batches,
    dwells,
    events,
    stages,
    step_data,
    trace_columns,
)
from controller.records.folder import BatchFolder
from controller.records.verify import Verdict, verify_batch
from controller.run.clock import utc_now

__all__ = ["Archived", "Status", "archive_batch", "archived_hash"]

logger = logging.getLogger(__name__)

#: Audit records left out of ``events``: the serialised run state (resume's business, most
#: of the audit's bytes). The whole chain is kept anyway, compressed, on the batch's row.
_NOT_EVENTS = frozenset({"checkpoint"})


class Status(StrEnum):
    """What ``archive_batch`` did with a folder (exit code: 0, 0, 1, 1, 2, 2)."""

    ADDED = "archived"
    ALREADY = "already archived"
    DIFFERS = "TAMPERED"  # the archive holds this batch id with another final hash
    REFUSED = "refused"  # the folder does not verify
    NOT_ENDED = "not ended"
    NOT_A_BATCH = "not a batch"

    @property
    def exit_code(self) -> int:
        return {Status.ADDED: 0, Status.ALREADY: 0, Status.DIFFERS: 1,
                Status.REFUSED: 1}.get(self, 2)


@dataclass(frozen=True, slots=True)
class Archived:
    """The outcome for one folder: its status, batch id (when known) and one line."""

    status: Status
    batch_id: str
    reason: str


def archived_hash(connection: Connection, batch_id: str) -> tuple[str, int] | None:
    """The archived final hash and record count of ``batch_id``, or None."""
    row = connection.execute(select(batches.c.audit_final_hash, batches.c.audit_records)
                             .where(batches.c.batch_id == batch_id)).first()
    return None if row is None else (str(row[0]), int(row[1]))


def _compare(batch_id: str, final_hash: str, archived: tuple[str, int] | None) -> Archived:
    if archived is None:
        raise LookupError(batch_id)
    if archived[0] == final_hash:
        return Archived(Status.ALREADY, batch_id,
                        f"already archived (final hash {final_hash[:16]}...): nothing to do")
    return Archived(Status.DIFFERS, batch_id,
                    f"TAMPERED: the archive holds {batch_id} with final hash "
                    f"{archived[0][:16]}... ({archived[1]} records); this folder's is "
                    f"{final_hash[:16]}...: rewritten since it was archived")


def archive_batch(engine: Engine, batch_dir: Path) -> Archived:
    """Archive the batch in ``batch_dir``: verified whole first (``verify_batch``), ended
    (it has summary.json), then every table written in one transaction. Idempotent: the
    same batch id with the same final hash is ``ALREADY``; with another hash ``DIFFERS``
    (the folder was rewritten; the archive is left as it was). Blocking. Raises
    ``ConfigurationError`` for a batch whose files cannot be read as numbers,
    ``sqlalchemy.exc.SQLAlchemyError`` if the database fails."""
    result = verify_batch(batch_dir)
    if result.verdict is Verdict.NOT_A_BATCH:
        return Archived(Status.NOT_A_BATCH, "", f"not a batch folder: {result.reason}")
    if not result.ok:
        return Archived(Status.REFUSED, "", f"does not verify, not archived: {result.reason}")
    if result.verdict is Verdict.INTERRUPTED:
        return Archived(Status.NOT_ENDED, "", "has not ended (no summary.json): archive it "
                                              "once it has ended")
    data = load_batch(batch_dir)
    summary = data.summary or {}
    final_hash = str(summary["audit_final_hash"])
    with engine.begin() as connection:
        try:
            return _compare(data.batch_id, final_hash, archived_hash(connection, data.batch_id))
        except LookupError:
            pass
        try:
            _insert(connection, data, final_hash)
        except IntegrityError:  # another process archived it since we looked
            connection.rollback()
        else:
            logger.debug("batch archived", extra={"batch_id": data.batch_id})
            return Archived(Status.ADDED, data.batch_id,
                            f"archived ({result.records} records, {data.rows} trace rows, "
                            f"final hash {final_hash[:16]}...)")
    with engine.connect() as connection:
        return _compare(data.batch_id, final_hash, archived_hash(connection, data.batch_id))


# ------------------------------------------------------------------------------ rows
def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _when(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _exotherm(data: BatchData) -> tuple[float | None, float | None]:
    """The exotherm's peak temperature and ΔT (``analysis.events``), or Nones."""
    from controller.analysis.events import analyse

    exo = analyse(data).exotherm
    return (None, None) if exo is None else (exo.peak_c, exo.peak_delta_t_c)


def _insert(connection: Connection, data: BatchData, final_hash: str) -> None:
    summary = data.summary or {}
    folder = BatchFolder(data.batch_dir)
    yields = _map(summary.get("yields"))
    peaks = _map(summary.get("peak_measured_c"))
    created = data.audit[0]
    exo_c, exo_dt = _exotherm(data)
    pk = connection.execute(insert(batches).returning(batches.c.pk), {
        "batch_id": data.batch_id, "audit_final_hash": final_hash,
        "audit_records": int(summary["audit_records"]),
        "sample": data.sample, "recipe": data.recipe,
        "station": str(_map(summary.get("station")).get("name") or data.station or ""),
        "simulated": bool(data.simulated),
        "outcome": str(summary.get("outcome", "")),
        "end_reason": str(summary.get("end_reason", "")),
        "started_utc": _when(summary.get("started_utc") or created.get("wall_utc")),
        "ended_utc": _when(summary.get("ended_utc")),
        "time_basis": str(summary.get("time_basis", "")),
        "planned_s": _num(summary.get("planned_s")), "actual_s": _num(summary.get("actual_s")),
        "holdback_s": _num(summary.get("holdback_s")),
        "peak_furnace_c": _num(peaks.get("furnace_c")),
        "peak_sample_c": _num(peaks.get("sample_c")),
        "peak_exotherm_c": exo_c, "peak_exotherm_delta_t_c": exo_dt,
        "yield_loaded_pct": _num(yields.get("yield_loaded_pct")),
        "yield_precursor_pct": _num(yields.get("yield_precursor_pct")),
        "final_mass_g": _num(_map(yields.get("final")).get("mass_g")),
        "operators": list(summary.get("operators") or []),
        "software_version": str(created.get("software_version", "")),
        "summary": json.loads(folder.summary_json.read_text(encoding="utf-8")),
        "recipe_toml": folder.recipe_toml.read_text(encoding="utf-8"),
        "station_toml": folder.station_toml.read_text(encoding="utf-8"),
        "audit_jsonl_z": zlib.compress(folder.audit_jsonl.read_bytes(), 6),
        "trace_rows": data.rows, "archived_utc": utc_now(),
        "archived_from": f"{socket.gethostname()}:{data.batch_dir.resolve()}",
    }).scalar_one()
    _children(connection, pk, data, summary)


def _children(connection: Connection, pk: int, data: BatchData,
              summary: Mapping[str, Any]) -> None:
    params = [{"batch_pk": pk, "name": str(k), "value_num": _num(v),
               "value_text": v if isinstance(v, str) else json.dumps(v)}
              for k, v in _map(summary.get("parameters")).items()]
    rows = {tuple(r.get("stages") or ()): _map(r)
            for r in _map(summary.get("yields")).get("rows") or ()}
    stage_rows = []
    for i, (name, timing) in enumerate(_map(summary.get("stages")).items()):
        m = rows.get((name,), {})
        stage_rows.append({
            "batch_pk": pk, "position": i, "name": name,
            "planned_s": _num(_map(timing).get("planned_s")),
            "actual_s": _num(_map(timing).get("actual_s")),
            "mass_change_g": _num(m.get("change_g")),
            "change_loaded_pct": _num(m.get("change_loaded_pct")),
            "change_precursor_pct": _num(m.get("change_precursor_pct")),
            "remaining_loaded_pct": _num(m.get("remaining_loaded_pct")),
            "remaining_precursor_pct": _num(m.get("remaining_precursor_pct"))})
    dwell_rows = [{"batch_pk": pk, "step_index": int(d.get("index", i)),
                   "stage": str(d.get("stage", "")), "label": str(d.get("label", "")),
                   "at_c": _num(d.get("at_c")), "band_c": _num(d.get("band_c")),
                   "planned_s": _num(d.get("planned_s")), "in_band_s": _num(d.get("in_band_s")),
                   "out_of_band_s": _num(d.get("out_of_band_s")),
                   "completed": bool(d.get("completed"))}
                  for i, d in enumerate(summary.get("dwells") or ())]
    event_rows = [{"batch_pk": pk, "seq": i, "t_s": _num(r.get("t_s")),
                   "wall_utc": str(r.get("wall_utc") or "")[:40] or None,
                   "event": str(r.get("event", ""))[:80],
                   "operator": str(r["operator"])[:200] if r.get("operator") else None,
                   "record": dict(r)}
                  for i, r in enumerate(data.audit) if r.get("event") not in _NOT_EVENTS]
    step_rows = []
    for s in summary.get("step_data") or ():
        units = _map(s.get("units"))
        for field, value in _map(s.get("data")).items():
            step_rows.append({
                "batch_pk": pk, "step_index": int(s.get("index") or 0),
                "stage": s.get("stage"), "sample_action": s.get("sample_action"),
                "operator": s.get("operator"), "field": str(field), "value_num": _num(value),
                "value_text": value if isinstance(value, str) else json.dumps(value),
                "unit": units.get(field), "source": s.get("data_source"),
                "simulated": bool(s.get("simulated"))})
    columns = []
    for i, name in enumerate(data.columns):
        if name in data.trace:
            kind, blob = FLOAT, encode_floats(data.trace[name])
        else:
            kind, blob = TEXT, encode_texts([str(x) for x in data.text[name]])
        columns.append({"batch_pk": pk, "position": i, "name": name, "kind": kind,
                        "rows": data.rows, "data_z": blob})
    for table, values in ((batch_parameters, params), (stages, stage_rows),
                          (dwells, dwell_rows), (events, event_rows), (step_data, step_rows),
                          (trace_columns, columns)):
        if values:
            connection.execute(insert(table), values)
