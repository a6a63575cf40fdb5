"""The batch archive (issue 13) on SQLite and on a real PostgreSQL server: dry runs archived
twice (the second a no-op), listed and filtered; a folder rewritten with a consistent chain
(it verifies by itself) caught as TAMPERED against the archive; a folder that does not
verify, or has not ended, refused; ``furnace compare`` of the air screens at 50/60/70/80 wt%
acid (the POP family's TGA screens) printing its table and writing the overlay PNG; the
migrations create exactly the schema of ``controller.archive.schema``."""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from controller.archive.db import connect, normalise_url
from controller.archive.schema import batches, events, metadata, trace_columns
from controller.cli import main
from controller.records.verify import verify_batch
from tests.conftest import PROFILES
from tests.integration.conftest import DryRuns
from tests.integration.helpers import free_port
from tests.postgres import postgres_server, server_bin
from tests.records import audit_records, make_hashed_batch, rewrite_chain

ACIDS = ("50", "60", "70", "80")
_names = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """One PostgreSQL server per test process (Debian's postgresql; skipped without it)."""
    if server_bin() is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    with postgres_server(free_port()) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty archive database's URL: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'archive.sqlite'}"
    server: str = request.getfixturevalue("postgres")
    name = f"archive_{next(_names)}"
    admin = create_engine(normalise_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def screens(dry_runs: DryRuns) -> list[Path]:
    """The air screens at 50, 60, 70 and 80 wt% acid, dry-run once per session."""
    return [dry_runs(PROFILES / "screen-air.toml", {"acid_wt": a}).result.batch_dir
            for a in ACIDS]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _count(url: str, table: object) -> int:
    engine = connect(url)
    with engine.connect() as c:
        n = int(c.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]
    engine.dispose()
    return n


def test_archive_twice_then_list_and_filter(db: str, screens: list[Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "archive", *map(str, screens), "--db", db)
    assert code == 0, out
    assert out.count(": archived (") == 4
    code, out, _ = _run(capsys, "archive", *map(str, screens), "--db", db)
    assert code == 0
    assert out.count("already archived") == 4  # idempotent: reported, nothing written
    assert _count(db, batches) == 4
    assert _count(db, events) > 4 * 10
    assert _count(db, trace_columns) == 4 * len(
        (screens[0] / "trace.csv").read_text().splitlines()[0].split(","))

    def listed(*filters: str) -> list[dict[str, object]]:
        code, out, _ = _run(capsys, "batches", "--db", db, "--json", *filters)
        assert code == 0
        rows: list[dict[str, object]] = json.loads(out)
        return rows

    assert len(listed()) == 4
    assert [r["sample"] for r in listed("--param", "acid_wt=70")] == ["SCREEN-AIR-P70"]
    assert len(listed("--sample", "SCREEN-AIR-P?0", "--recipe", "screen-air",
                      "--outcome", "completed", "--station", "sim-builtin")) == 4
    assert len(listed("--sample", "POP*")) == 0
    assert len(listed("--since", "2999-01-01")) == 0
    assert len(listed("--since", "2000-01-01", "--param", "acid_wt=80")) == 1
    assert len(listed("--outcome", "aborted")) == 0
    one = listed("--param", "acid_wt=50")[0]
    assert one["outcome"] == "completed"
    assert one["yield_loaded_pct"] is not None
    code, out, _ = _run(capsys, "batches", "--db", db)
    assert code == 0
    assert "4 batch(es)" in out


def test_a_rewritten_folder_differs_from_the_archive(db: str, screens: list[Path],
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    original = screens[2]
    assert _run(capsys, "archive", str(original), "--db", db)[0] == 0
    copy = tmp_path / original.name
    shutil.copytree(original, copy)
    records = audit_records(copy)
    records[0]["operator"] = "mallory"  # who started it, rewritten with a fresh chain
    rewrite_chain(copy, records)
    assert verify_batch(copy).ok  # consistent in itself: only an outside copy can tell

    code, out, _ = _run(capsys, "archive", str(copy), "--db", db)
    assert code == 1
    assert "TAMPERED" in out
    assert "rewritten since it was archived" in out
    code, out, _ = _run(capsys, "verify", str(copy), "--db", db)
    assert code == 1
    assert "TAMPERED" in out.splitlines()[-1]
    code, out, _ = _run(capsys, "verify", str(original), "--db", db)
    assert code == 0
    assert "matches the archive" in out
    assert _count(db, batches) == 1  # the archived copy is left as it was


def test_unverified_or_unended_folders_are_refused(db: str, screens: list[Path],
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    edited = tmp_path / "edited" / screens[0].name
    shutil.copytree(screens[0], edited)
    trace = edited / "trace.csv"
    trace.write_text(trace.read_text().replace("running", "runnin_", 1))
    code, out, _ = _run(capsys, "archive", str(edited), "--db", db)
    assert code == 1
    assert out.count("\n") == 1
    assert "does not verify, not archived" in out

    running = make_hashed_batch(tmp_path / "running", ended=False)
    code, out, _ = _run(capsys, "archive", str(running), "--db", db)
    assert code == 2
    assert "has not ended" in out

    code, out, _ = _run(capsys, "archive", str(tmp_path), "--db", db)
    assert code == 2
    assert "not a batch folder" in out
    assert _count(db, batches) == 0


def test_compare_the_acid_screens(db: str, screens: list[Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "220")  # one line per batch
    assert _run(capsys, "archive", *map(str, screens), "--db", db)[0] == 0
    png = tmp_path / "overlay.png"
    samples = [f"SCREEN-AIR-P{a}" for a in ACIDS]
    code, out, _ = _run(capsys, "compare", *samples[:3], str(screens[3]), "--db", db,
                        "-o", str(png))
    print(out)  # the table, for the record (-s)
    assert code == 0
    for header in ("yield (loaded)", "yield (precursor)", "exotherm peak",
                   "time in band per dwell"):
        assert header in out
    for sample in samples:
        assert sample in out
    assert out.count("(ΔT +") == 4  # every screen shows its exotherm
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000

    code, out, err = _run(capsys, "compare", "NO-SUCH-SAMPLE", "--db", db, "-o", str(png))
    assert code == 2
    assert "no such batch in the archive" in err


def test_the_migrations_build_the_schema(db: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = connect(db)
    connect(db).dispose()  # a second connect finds it current
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), metadata)
    engine.dispose()
    assert diff == []


def test_a_batch_is_archived_as_it_ends_when_configured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    from tests.integration.helpers import dry_run

    url = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    monkeypatch.setenv("FURNACE_ARCHIVE_DB", url)
    batch = asyncio.run(dry_run(PROFILES / "screen-air.toml", tmp_path / "a",
                                {"acid_wt": "70"}))
    engine = connect(url)
    with engine.connect() as c:
        ids = c.execute(select(batches.c.batch_id)).scalars().all()
    engine.dispose()
    assert ids == [batch.result.batch_dir.name]

    # an archive that cannot be reached: one warning, the batch completes all the same
    monkeypatch.setenv("FURNACE_ARCHIVE_DB", "postgresql://nobody@127.0.0.1:1/none")
    batch = asyncio.run(dry_run(PROFILES / "screen-air.toml", tmp_path / "b",
                                {"acid_wt": "70"}))
    assert batch.result.summary["outcome"] == "completed"
    assert any("the batch was not archived" in r.getMessage() for r in caplog.records)
