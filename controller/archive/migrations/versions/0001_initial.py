"""The first archive: batches with their parameters, stages, dwells, events, operator-step
data and the trace by column.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _fk(table: str) -> sa.Column[int]:
    """The column that ties a row to its batch; deleted with it."""
    return sa.Column("batch_pk", sa.Integer,
                     sa.ForeignKey("batches.pk", ondelete="CASCADE",
                                   name=f"fk_{table}_batch_pk_batches"),
                     nullable=False)


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(200), nullable=False),
        sa.Column("audit_final_hash", sa.String(64), nullable=False),
        sa.Column("audit_records", sa.Integer, nullable=False),
        sa.Column("sample", sa.String(200), nullable=False),
        sa.Column("recipe", sa.String(200), nullable=False),
        sa.Column("station", sa.String(200), nullable=False),
        sa.Column("simulated", sa.Boolean, nullable=False),
        sa.Column("outcome", sa.String(40), nullable=False),
        sa.Column("end_reason", sa.Text, nullable=False),
        sa.Column("started_utc", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_utc", sa.DateTime(timezone=True), nullable=True),
        sa.Column("time_basis", sa.String(200), nullable=False),
        sa.Column("planned_s", sa.Float, nullable=True),
        sa.Column("actual_s", sa.Float, nullable=True),
        sa.Column("holdback_s", sa.Float, nullable=True),
        sa.Column("peak_furnace_c", sa.Float, nullable=True),
        sa.Column("peak_sample_c", sa.Float, nullable=True),
        sa.Column("peak_exotherm_c", sa.Float, nullable=True),
        sa.Column("peak_exotherm_delta_t_c", sa.Float, nullable=True),
        sa.Column("yield_loaded_pct", sa.Float, nullable=True),
        sa.Column("yield_precursor_pct", sa.Float, nullable=True),
        sa.Column("final_mass_g", sa.Float, nullable=True),
        sa.Column("operators", sa.JSON, nullable=False),
        sa.Column("software_version", sa.String(80), nullable=False),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("recipe_toml", sa.Text, nullable=False),
        sa.Column("station_toml", sa.Text, nullable=False),
        sa.Column("audit_jsonl_z", sa.LargeBinary, nullable=False),
        sa.Column("trace_rows", sa.Integer, nullable=False),
        sa.Column("archived_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived_from", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_batches"),
        sa.UniqueConstraint("batch_id", name="uq_batches_batch_id"),
    )
    op.create_index("ix_batches_sample", "batches", ["sample"])
    op.create_index("ix_batches_started_utc", "batches", ["started_utc"])
    op.create_table(
        "batch_parameters",
        _fk("batch_parameters"),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value_num", sa.Float, nullable=True),
        sa.Column("value_text", sa.Text, nullable=False),
        sa.UniqueConstraint("batch_pk", "name", name="uq_batch_parameters_batch_pk_name"),
    )
    op.create_index("ix_batch_parameters_name", "batch_parameters", ["name", "value_num"])
    op.create_table(
        "stages",
        _fk("stages"),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("planned_s", sa.Float, nullable=True),
        sa.Column("actual_s", sa.Float, nullable=True),
        sa.Column("mass_change_g", sa.Float, nullable=True),
        sa.Column("change_loaded_pct", sa.Float, nullable=True),
        sa.Column("change_precursor_pct", sa.Float, nullable=True),
        sa.Column("remaining_loaded_pct", sa.Float, nullable=True),
        sa.Column("remaining_precursor_pct", sa.Float, nullable=True),
        sa.UniqueConstraint("batch_pk", "position", name="uq_stages_batch_pk_position"),
    )
    op.create_table(
        "dwells",
        _fk("dwells"),
        sa.Column("step_index", sa.Integer, nullable=False),
        sa.Column("stage", sa.String(200), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("at_c", sa.Float, nullable=True),
        sa.Column("band_c", sa.Float, nullable=True),
        sa.Column("planned_s", sa.Float, nullable=True),
        sa.Column("in_band_s", sa.Float, nullable=True),
        sa.Column("out_of_band_s", sa.Float, nullable=True),
        sa.Column("completed", sa.Boolean, nullable=False),
        sa.UniqueConstraint("batch_pk", "step_index", name="uq_dwells_batch_pk_step_index"),
    )
    op.create_table(
        "events",
        _fk("events"),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("t_s", sa.Float, nullable=True),
        sa.Column("wall_utc", sa.String(40), nullable=True),
        sa.Column("event", sa.String(80), nullable=False),
        sa.Column("operator", sa.String(200), nullable=True),
        sa.Column("record", sa.JSON, nullable=False),
        sa.UniqueConstraint("batch_pk", "seq", name="uq_events_batch_pk_seq"),
    )
    op.create_index("ix_events_event", "events", ["event"])
    op.create_table(
        "step_data",
        _fk("step_data"),
        sa.Column("step_index", sa.Integer, nullable=False),
        sa.Column("stage", sa.String(200), nullable=True),
        sa.Column("sample_action", sa.String(40), nullable=True),
        sa.Column("operator", sa.String(200), nullable=True),
        sa.Column("field", sa.String(100), nullable=False),
        sa.Column("value_num", sa.Float, nullable=True),
        sa.Column("value_text", sa.Text, nullable=False),
        sa.Column("unit", sa.String(40), nullable=True),
        sa.Column("source", sa.String(40), nullable=True),
        sa.Column("simulated", sa.Boolean, nullable=False),
        sa.UniqueConstraint("batch_pk", "step_index", "field",
                            name="uq_step_data_batch_pk_step_index_field"),
    )
    op.create_table(
        "trace_columns",
        _fk("trace_columns"),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("data_z", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("batch_pk", "name", name="uq_trace_columns_batch_pk_name"),
    )


def downgrade() -> None:
    for table in ("trace_columns", "step_data", "events", "dwells", "stages",
                  "batch_parameters", "batches"):
        op.drop_table(table)
