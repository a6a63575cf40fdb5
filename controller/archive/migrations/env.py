"""Alembic's environment for the archive: run on the connection ``controller.archive.db``
hands over (``config.attributes["connection"]``), never from an ini file or a URL here.

On PostgreSQL the upgrade first takes a transaction-scoped advisory lock, so that two
stations connecting to a new database at once do not both create the tables.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from controller.archive.schema import metadata

_LOCK_KEY = 0x66_75_72_6E  # "furn": the archive's advisory lock on PostgreSQL

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    context.run_migrations()
