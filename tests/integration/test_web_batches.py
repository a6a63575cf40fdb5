"""``furnace web --batches DIR`` (issue 12 item 2, finished batches): the list, a summary,
the report, and the TGA overlay of several batches with its CSV, through the real app; a
foreign Host is refused, and nothing outside the batches folder can be asked for."""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from controller.archive.db import connect
from controller.archive.ingest import archive_batch
from controller.web.server import serve_batches
from tests.conftest import PROFILES
from tests.integration.helpers import dry_run


@pytest.fixture(scope="module")
def shelf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, list[str]]]:
    """Two air screens under a folder, served by ``furnace web``'s server on loopback."""
    root = tmp_path_factory.mktemp("batches")
    ids = []
    for acid in ("50", "70"):
        batch = asyncio.run(dry_run(PROFILES / "screen-air.toml", root,
                                    {"acid_wt": acid, "mass_g": "1"}))
        ids.append(batch.result.batch_dir.name)
    server, cache = serve_batches(root, "127.0.0.1", 0)
    host, port = server.address
    try:
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=30) as client:
            yield client, ids
    finally:
        server.stop()
        cache.cleanup()


def test_the_list_and_a_summary(shelf: tuple[httpx.Client, list[str]]) -> None:
    client, ids = shelf
    listed = client.get("/api/batches").json()
    assert {b["id"] if "id" in b else b["batch_id"] for b in listed} == set(ids)
    summary = client.get(f"/api/batches/{ids[0]}/summary").json()
    assert summary["outcome"] == "completed"
    assert summary["sample"] == "SCREEN-AIR-P50"
    assert client.get("/batches").status_code == 200


def test_the_overlay_and_its_csv(shelf: tuple[httpx.Client, list[str]]) -> None:
    client, ids = shelf
    query = "&".join(f"id={i}" for i in ids)
    overlay = client.get(f"/api/overlay?{query}")
    assert overlay.status_code == 200
    text = client.get(f"/api/overlay.csv?{query}").text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:2] == ["batch_id", "sample"]
    assert "mass_pct" in rows[0]
    assert {r[1] for r in rows[1:]} == {"SCREEN-AIR-P50", "SCREEN-AIR-P70"}
    assert len(rows) > 100


def test_the_report_is_drawn(shelf: tuple[httpx.Client, list[str]]) -> None:
    client, ids = shelf
    png = client.get(f"/api/batches/{ids[1]}/report.png")
    assert png.status_code == 200
    assert png.content.startswith(b"\x89PNG")


@pytest.mark.parametrize("batch_id", ["..", "../etc", "nope", "%2e%2e%2fetc"])
def test_nothing_outside_the_folder(shelf: tuple[httpx.Client, list[str]], batch_id: str
                                    ) -> None:
    client, _ = shelf
    assert client.get(f"/api/batches/{batch_id}/summary").status_code == 404


def test_a_foreign_host_is_refused(shelf: tuple[httpx.Client, list[str]]) -> None:
    client, _ = shelf
    reply = client.get("/api/batches", headers={"Host": "evil.example"})
    assert reply.status_code == 403


def test_there_is_no_live_batch_to_command(shelf: tuple[httpx.Client, list[str]]) -> None:
    client, _ = shelf
    reply = client.post("/api/commands", json={"trigger": "hold", "operator": "a"},
                        headers={"Authorization": "Bearer x"})
    assert reply.status_code in (401, 404)


def test_archived_batches_are_listed_with_db(tmp_path: Path) -> None:
    """``furnace web --db``: a batch archived and no longer in the folder is still listed,
    with its archived summary; the folder's own batches are listed beside it."""
    root = tmp_path / "batches"
    gone = asyncio.run(dry_run(PROFILES / "smoke-600.toml", root)).result.batch_dir
    url = f"sqlite:///{tmp_path / 'archive.sqlite'}"
    engine = connect(url)
    try:
        archive_batch(engine, gone)
    finally:
        engine.dispose()
    shutil.move(gone, tmp_path / "elsewhere")
    here = asyncio.run(dry_run(PROFILES / "screen-air.toml", root,
                               {"mass_g": "1"})).result.batch_dir
    server, cache = serve_batches(root, "127.0.0.1", 0, archive=url)
    host, port = server.address
    try:
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=30) as client:
            listed = {b["id"]: b for b in client.get("/api/batches").json()}
            summary = client.get(f"/api/batches/{gone.name}/summary").json()
    finally:
        server.stop()
        cache.cleanup()
    assert set(listed) == {gone.name, here.name}
    assert listed[gone.name].get("archived") is True
    assert "archived" not in listed[here.name]
    assert summary["sample"] == "SMOKE-600"
    assert summary["outcome"] == "completed"
