"""The archive's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

One row per ended batch in ``batches``, keyed by its id and carrying the audit chain's final
hash; the rest hang off it by ``batch_pk`` and go with it (``ON DELETE CASCADE``). This is
the schema as it is now: the database is brought to it by the migrations in
``migrations/versions`` (a test compares the two), never by ``create_all``.

The trace is stored per column, not per row (docs/decisions/0014-batch-archive.md): one row
in ``trace_columns`` per trace column, its values zlib-compressed (little-endian float64 for
numbers, NaN for an empty cell; UTF-8 lines for text). A 35 h batch is some 60 000 scan
rows: as table rows that is tens of millions of rows for a lab's few hundred batches, and
seconds per ingest on PostgreSQL; as column blobs it is about a megabyte and a few
milliseconds, and ``compare`` fetches only the two columns it draws.
Not here: reading or writing rows (``ingest``, ``query``).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = ["SCHEMA_REVISION", "batch_parameters", "batches", "dwells", "events", "metadata",
           "stages", "step_data", "trace_columns"]

#: The Alembic revision this module describes (``migrations/versions``).
SCHEMA_REVISION: Final = "0001"

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})


def _batch_fk() -> Column[int]:
    return Column("batch_pk", Integer, ForeignKey("batches.pk", ondelete="CASCADE"),
                  nullable=False)


batches = Table(
    "batches", metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(200), nullable=False),  # <UTC start>_<sample>, unique
    Column("audit_final_hash", String(64), nullable=False),  # sha256 hex of the last record
    Column("audit_records", Integer, nullable=False),
    Column("sample", String(200), nullable=False),
    Column("recipe", String(200), nullable=False),
    Column("station", String(200), nullable=False),
    Column("simulated", Boolean, nullable=False),
    Column("outcome", String(40), nullable=False),  # completed, stopped, aborted, faulted
    Column("end_reason", Text, nullable=False),
    Column("started_utc", DateTime(timezone=True), nullable=True),
    Column("ended_utc", DateTime(timezone=True), nullable=True),
    Column("time_basis", String(200), nullable=False),  # real, or a dry run's simulated time
    Column("planned_s", Float, nullable=True),
    Column("actual_s", Float, nullable=True),
    Column("holdback_s", Float, nullable=True),
    Column("peak_furnace_c", Float, nullable=True),
    Column("peak_sample_c", Float, nullable=True),
    Column("peak_exotherm_c", Float, nullable=True),  # sample temperature at the DSC-like peak
    Column("peak_exotherm_delta_t_c", Float, nullable=True),
    Column("yield_loaded_pct", Float, nullable=True),
    Column("yield_precursor_pct", Float, nullable=True),
    Column("final_mass_g", Float, nullable=True),
    Column("operators", JSON, nullable=False),  # names, in order of first appearance
    Column("software_version", String(80), nullable=False),
    Column("summary", JSON, nullable=False),  # summary.json as written
    Column("recipe_toml", Text, nullable=False),  # the frozen files, byte for byte (UTF-8)
    Column("station_toml", Text, nullable=False),
    Column("audit_jsonl_z", LargeBinary, nullable=False),  # the whole chain, zlib
    Column("trace_rows", Integer, nullable=False),
    Column("archived_utc", DateTime(timezone=True), nullable=False),
    Column("archived_from", Text, nullable=False),  # host:folder it was read from
    UniqueConstraint("batch_id"),
)
Index("ix_batches_sample", batches.c.sample)
Index("ix_batches_started_utc", batches.c.started_utc)

batch_parameters = Table(
    "batch_parameters", metadata,
    _batch_fk(),
    Column("name", String(100), nullable=False),
    Column("value_num", Float, nullable=True),  # the number, when the value is one
    Column("value_text", Text, nullable=False),  # the value as text (JSON scalar)
    UniqueConstraint("batch_pk", "name"),
)
Index("ix_batch_parameters_name", batch_parameters.c.name, batch_parameters.c.value_num)

stages = Table(
    "stages", metadata,
    _batch_fk(),
    Column("position", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("planned_s", Float, nullable=True),
    Column("actual_s", Float, nullable=True),
    Column("mass_change_g", Float, nullable=True),
    Column("change_loaded_pct", Float, nullable=True),  # points of the loaded mixture
    Column("change_precursor_pct", Float, nullable=True),
    Column("remaining_loaded_pct", Float, nullable=True),
    Column("remaining_precursor_pct", Float, nullable=True),
    UniqueConstraint("batch_pk", "position"),
)

dwells = Table(
    "dwells", metadata,
    _batch_fk(),
    Column("step_index", Integer, nullable=False),
    Column("stage", String(200), nullable=False),
    Column("label", Text, nullable=False),
    Column("at_c", Float, nullable=True),
    Column("band_c", Float, nullable=True),
    Column("planned_s", Float, nullable=True),
    Column("in_band_s", Float, nullable=True),
    Column("out_of_band_s", Float, nullable=True),
    Column("completed", Boolean, nullable=False),
    UniqueConstraint("batch_pk", "step_index"),
)

events = Table(
    "events", metadata,
    _batch_fk(),
    Column("seq", Integer, nullable=False),  # the audit record's index in the chain
    Column("t_s", Float, nullable=True),
    Column("wall_utc", String(40), nullable=True),
    Column("event", String(80), nullable=False),
    Column("operator", String(200), nullable=True),
    Column("record", JSON, nullable=False),  # the audit record as written
    UniqueConstraint("batch_pk", "seq"),
)
Index("ix_events_event", events.c.event)

step_data = Table(
    "step_data", metadata,
    _batch_fk(),
    Column("step_index", Integer, nullable=False),
    Column("stage", String(200), nullable=True),
    Column("sample_action", String(40), nullable=True),
    Column("operator", String(200), nullable=True),
    Column("field", String(100), nullable=False),
    Column("value_num", Float, nullable=True),
    Column("value_text", Text, nullable=False),
    Column("unit", String(40), nullable=True),
    Column("source", String(40), nullable=True),  # operator, simulated sample, nominal
    Column("simulated", Boolean, nullable=False),
    UniqueConstraint("batch_pk", "step_index", "field"),
)

trace_columns = Table(
    "trace_columns", metadata,
    _batch_fk(),
    Column("position", Integer, nullable=False),  # in trace.csv's header
    Column("name", String(100), nullable=False),
    Column("kind", String(8), nullable=False),  # "f8": float64 LE, NaN empty; "text": lines
    Column("rows", Integer, nullable=False),
    Column("data_z", LargeBinary, nullable=False),  # zlib
    UniqueConstraint("batch_pk", "name"),
)
