"""Reading the archive back: the batches that match a filter, one batch's numbers and
dwells, its trace columns and audit records. Blocking; read-only.

Not here: writing (``ingest``), tabulating or drawing (``compare``, the CLI).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, and_, exists, select

from controller.archive.codec import FLOAT, decode_floats, decode_texts
from controller.archive.schema import batch_parameters, batches, dwells, trace_columns

__all__ = ["BatchFilter", "audit_of", "dwells_of", "find_batch", "list_batches",
           "trace_of"]

#: What ``list_batches`` gives per batch (``furnace batches --json``).
LISTED = (batches.c.batch_id, batches.c.sample, batches.c.recipe, batches.c.station,
          batches.c.outcome, batches.c.started_utc, batches.c.actual_s,
          batches.c.yield_loaded_pct, batches.c.yield_precursor_pct,
          batches.c.peak_exotherm_c, batches.c.audit_final_hash, batches.c.simulated)


@dataclass(frozen=True, slots=True)
class BatchFilter:
    """``furnace batches``' filters; all given must hold. ``sample``: a pattern with ``*``
    and ``?`` (case-sensitive); ``params``: (name, value) pairs, a number compared as a
    number (``acid_wt=70`` matches 70.0); ``since``: started at or after (UTC)."""

    sample: str | None = None
    recipe: str | None = None
    params: tuple[tuple[str, str], ...] = field(default=())
    since: datetime | None = None
    outcome: str | None = None
    station: str | None = None


def _like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def list_batches(connection: Connection, where: BatchFilter = BatchFilter()
                 ) -> list[dict[str, Any]]:
    """The batches that match ``where``, newest first, as ``LISTED``'s columns."""
    query = select(*LISTED)
    if where.sample:
        query = query.where(batches.c.sample.like(_like(where.sample), escape="\\"))
    if where.recipe:
        query = query.where(batches.c.recipe == where.recipe)
    if where.outcome:
        query = query.where(batches.c.outcome == where.outcome)
    if where.station:
        query = query.where(batches.c.station == where.station)
    if where.since is not None:
        since = where.since.astimezone(UTC)
        if connection.dialect.name == "sqlite":  # stored as text, without the zone
            since = since.replace(tzinfo=None)
        query = query.where(batches.c.started_utc >= since)
    for name, value in where.params:
        number = _number(value)
        match = (batch_parameters.c.value_num == number if number is not None
                 else batch_parameters.c.value_text == value)
        query = query.where(exists().where(and_(batch_parameters.c.batch_pk == batches.c.pk,
                                                batch_parameters.c.name == name, match)))
    query = query.order_by(batches.c.started_utc.desc(), batches.c.batch_id.desc())
    return [dict(row) for row in connection.execute(query).mappings()]


def find_batch(connection: Connection, name: str) -> dict[str, Any] | None:
    """The batch row named ``name``: its batch id, else the newest batch of that sample
    name; None if neither."""
    row = connection.execute(select(batches).where(batches.c.batch_id == name)
                             ).mappings().first()
    if row is None:
        row = connection.execute(select(batches).where(batches.c.sample == name)
                                 .order_by(batches.c.started_utc.desc()).limit(1)
                                 ).mappings().first()
    return None if row is None else dict(row)


def dwells_of(connection: Connection, pk: int) -> list[dict[str, Any]]:
    """The batch's dwells in plan order."""
    rows = connection.execute(select(dwells).where(dwells.c.batch_pk == pk)
                              .order_by(dwells.c.step_index))
    return [dict(r) for r in rows.mappings()]


def trace_of(connection: Connection, pk: int, names: Sequence[str]
             ) -> dict[str, NDArray[np.float64] | list[str]]:
    """The batch's trace columns named in ``names`` that it has (numbers as float64 with
    NaN for an empty cell, text as str). Raises ``ValueError`` for a damaged blob."""
    rows = connection.execute(select(trace_columns.c.name, trace_columns.c.kind,
                                     trace_columns.c.data_z)
                              .where(trace_columns.c.batch_pk == pk,
                                     trace_columns.c.name.in_(list(names))))
    return {name: decode_floats(blob) if kind == FLOAT else decode_texts(blob)
            for name, kind, blob in rows}


def audit_of(connection: Connection, pk: int) -> list[dict[str, Any]]:
    """The batch's whole audit chain as archived, parsed."""
    blob = connection.execute(select(batches.c.audit_jsonl_z)
                              .where(batches.c.pk == pk)).scalar_one()
    return [json.loads(line) for line in zlib.decompress(blob).split(b"\n") if line.strip()]
