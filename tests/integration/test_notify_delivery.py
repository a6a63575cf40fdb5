"""Notifications from a running batch (issue 12 acceptance): a local SMTP server gets the
wash-due mail, issued the lead time before the wash step begins, then the wash-waiting and
end mails; a webhook receiver that never answers does not hold the scan loop up (the batch
runs to its end while every delivery to it hangs)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from controller.recipe.station import Station, load_station, load_station_text
from controller.records.folder import BatchFolder
from controller.session import run_batch
from tests.integration.helpers import free_port, in_process

pytestmark = pytest.mark.timeout(120)

RECIPE = '''schema_version = 1
name = "T"
sample = "NOTIFYTEST"

[sample_material]
precursor = "pitch"
acid_wt = 70
mass_g = 2.0

[[stages]]
name = "heat"
atmosphere = "Ar"

[[stages.steps]]
kind = "purge"
gas = "Ar"
flow_sccm = 500
volumes = 8

[[stages.steps]]
kind = "ramp"
to_c = 150
rate_c_per_min = 3.5

[[stages.steps]]
kind = "dwell"
duration_min = 60
band_c = 5

[[stages.steps]]
kind = "cool"
to_c = 100
rate_c_per_min = 3.5

[[stages]]
name = "wash"
atmosphere = "Ar"

[[stages.steps]]
kind = "operator"
message = "Wash the solid to neutral, dry it and reload."
opens_tube = true
sample_action = "wash"
flows_sccm = {}

[[stages.steps]]
kind = "end"
'''


class Inbox:
    """aiosmtpd handler: keeps every message."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def with_notify(extra: str) -> Station:
    """The built-in simulated station with a ``[notify]`` section."""
    _, text = load_station(None)
    return load_station_text(text + extra, "station.toml")


async def run(tmp_path: Path, station: Station) -> Path:
    ip = in_process(tmp_path, RECIPE)
    result = await run_batch(plan=ip.plan, station=station, recipe_text=ip.recipe_text,
                             station_text=ip.station_text, clock=ip.clock,
                             batches_dir=tmp_path / "batches", operator="ann",
                             built=ip.built)
    assert result.summary["outcome"] == "completed"
    return result.batch_dir


async def test_the_wash_due_mail_goes_out_before_the_wash(
        tmp_path: Path, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    station = with_notify(f'''
[notify]
operator_lead_min = 30
retry_wait_s = 0

[notify.smtp]
host = "127.0.0.1"
port = {port}
sender = "furnace@lab.example"
to = ["ann@lab.example", "bob@lab.example"]
''')
    batch = await run(tmp_path, station)
    subjects = [m["Subject"] for m in inbox.messages]
    assert subjects[0].startswith("[furnace] NOTIFYTEST: operator step due in 0 h 30 min")
    assert subjects[1] == "[furnace] NOTIFYTEST: operator step waiting: wash"
    assert subjects[-1] == "[furnace] NOTIFYTEST: batch completed"
    assert inbox.messages[0]["To"] == "ann@lab.example, bob@lab.example"
    assert inbox.messages[0]["X-Furnace-Batch"] == batch.name
    # Issued at least the lead time before the wash began (by the plan's reckoning of the
    # steps before it, which the slow natural cooling to 100 °C makes early, not late).
    audit = BatchFolder.open(batch).read_audit()
    wash_t_s = next(r["t_s"] for r in audit if r["event"] == "step_started"
                    and r.get("sample_action") == "wash")
    issued_t_s = float(inbox.messages[0]["X-Furnace-Process-Time"])
    assert issued_t_s <= wash_t_s - 30 * 60


def test_a_webhook_that_never_answers_does_not_hold_the_batch_up(tmp_path: Path) -> None:
    """Every delivery hangs until its timeout on a socket that accepts and never replies;
    the batch (hours of process time on the virtual clock) runs to its end regardless, and
    the notices are logged as failed, not raised."""
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = silent.accept()
                held.append(conn)  # never read, never answered
            except OSError:
                continue

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        station = with_notify(f'''
[notify]
retries = 0
retry_wait_s = 0

[notify.webhook]
url = "http://127.0.0.1:{port}/hook"
timeout_s = 0.5
''')
        batch = asyncio.run(run(tmp_path, station))
    finally:
        stop.set()
        acceptor.join(5)
        for conn in held:
            conn.close()
        silent.close()
    assert (batch / "summary.json").exists()
