"""Opening the archive: which database (``--db URL``, else the SQLite file in the user's data
folder), and bringing its tables to this version's schema (Alembic ``upgrade head``, run on
every connect; a no-op once it is current).

URLs: ``sqlite:///path/archive.sqlite`` (embedded, zero set-up), or PostgreSQL as
``postgresql://user@host/db`` (driven by psycopg 3: ``postgresql+psycopg://``). Not here:
what goes into the tables (``ingest``) or comes out (``query``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Final

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from drivers.errors import ConfigurationError

__all__ = ["ARCHIVE_DB_ENV", "MIGRATIONS", "connect", "default_db_url", "normalise_url"]

logger = logging.getLogger(__name__)

#: Names the archive's database URL instead of the SQLite file in the user's data folder.
ARCHIVE_DB_ENV: Final = "FURNACE_ARCHIVE_DB"
MIGRATIONS: Final = Path(__file__).with_name("migrations")


def default_db_url() -> str:
    """``$FURNACE_ARCHIVE_DB``, else ``sqlite:///<user data folder>/furnace/archive.sqlite``
    (``~/.local/share/furnace`` on Linux, ``%LOCALAPPDATA%\\furnace`` on Windows)."""
    named = os.environ.get(ARCHIVE_DB_ENV)
    if named:
        return named
    import platformdirs  # only when asked for

    folder = Path(platformdirs.user_data_dir("furnace", appauthor=False))
    return f"sqlite:///{folder / 'archive.sqlite'}"


def normalise_url(url: str) -> str:
    """``url`` with PostgreSQL given to psycopg 3 (``postgresql://`` and ``postgres://``
    become ``postgresql+psycopg://``). Raises ``ConfigurationError`` for a URL that is not
    SQLite or PostgreSQL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError("not a database URL (sqlite:///FILE or "
                                 "postgresql://USER@HOST/DB)", field="--db") from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend == "sqlite":
        return url
    raise ConfigurationError(f"{backend!r} is not supported: use sqlite:///FILE or "
                             "postgresql://USER@HOST/DB", field="--db")


def _sqlite_pragmas(dbapi_connection: object, record: object) -> None:
    del record
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")  # ON DELETE CASCADE, as on PostgreSQL
    cursor.execute("PRAGMA busy_timeout=30000")  # another station's ingest: wait, not fail
    cursor.close()


def connect(url: str | None = None) -> Engine:
    """An engine on the archive at ``url`` (default ``default_db_url()``), its tables
    brought to this version's schema first (``alembic upgrade head``; a SQLite file's
    folder is made). Blocking. Raises ``ConfigurationError`` (one line naming the URL,
    its password hidden) for a bad URL, a database that cannot be reached or a schema
    newer than this version knows."""
    raw = url or default_db_url()
    full = normalise_url(raw)
    parsed = make_url(full)
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(full, connect_args={"connect_timeout": 10}
                               if parsed.get_backend_name() == "postgresql" else {})
    except ImportError:
        raise ConfigurationError("PostgreSQL needs its driver: pip install 'furnace[postgres]' "
                                 "(psycopg 3)", source=shown, field="--db") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        _upgrade(engine)
    except (SQLAlchemyError, OSError) as exc:
        engine.dispose()
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise ConfigurationError(f"cannot open the archive ({detail[0] if detail else exc})",
                                 source=shown, field="--db") from None
    return engine


def _upgrade(engine: Engine) -> None:
    """``alembic upgrade head`` on ``engine``, from the migrations in this package."""
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    logging.getLogger("alembic").setLevel(logging.WARNING)  # its set-up chatter, per connect
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        from alembic.runtime.migration import MigrationContext

        current = MigrationContext.configure(connection).get_current_revision()
        head = ScriptDirectory.from_config(config).get_current_head()
        if current == head:
            return
        config.attributes["connection"] = connection
        try:
            command.upgrade(config, "head")
        except CommandError as exc:  # a revision this version does not have: newer schema
            raise ConfigurationError(f"the archive's schema ({current}) is newer than this "
                                     f"version knows ({head}): {exc}", field="--db") from None
        logger.info("archive schema upgraded", extra={"from": current, "to": head})
