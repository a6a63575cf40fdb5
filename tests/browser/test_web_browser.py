"""The dashboard in a real headless Chromium (Debian's chromium and chromedriver, driven by
Selenium): the live page follows a dry run at --speed 600, Hold then Resume from the page
are applied and audited, a command without the token gets 401, and the TGA overlay of two
finished screens draws. Screenshots are saved under the test's temporary folder.

Skipped, with the reason, only where no browser is installed (``.ci/run`` installs one).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROFILES
from tests.integration.helpers import dry_run, free_port, furnace

pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("browser")]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT_S = 30  # the longest any condition below may take to come true


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium with a fresh profile."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("no browser: install Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver; .ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1800",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: Any, script: str, what: str) -> Any:
    """Wait until ``script`` (a JS expression) is truthy in the page; its value."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_S).until(
            lambda d: d.execute_script(f"return {script};"))
    except TimeoutException:
        raise AssertionError(f"never: {what}") from None


def dashboard_url(proc: subprocess.Popen[str]) -> str:
    """The URL ``furnace run --web`` prints (with the token in its fragment)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("dashboard: "):
            return line.split(" ", 1)[1].strip()
    raise AssertionError(f"furnace run printed no dashboard line (exit {proc.wait()})")


def audit(batches: Path) -> list[dict[str, Any]]:
    [batch] = [p for p in batches.iterdir() if (p / "control.json").exists()]
    return [json.loads(line) for line in (batch / "audit.jsonl").read_text().splitlines()]


def test_live_page_follows_the_run_and_commands_from_the_page(
        browser: Any, tmp_path: Path) -> None:
    batches = tmp_path / "batches"
    # two finished TGA screens (POP50 and POP70 mixtures in air) for the overlay
    for acid in ("50", "70"):
        asyncio.run(dry_run(PROFILES / "screen-air.toml", batches, {"acid_wt": acid}))
    port = free_port()
    proc = subprocess.Popen(
        furnace("run", str(PROFILES / "smoke-600.toml"), "--speed", "600", "--yes",
                "--web", f"127.0.0.1:{port}", "--batches", str(batches),
                "--operator", "pytest"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = dashboard_url(proc)
        browser.get(url)
        # the live page updates while the run advances: state, then more rows and time
        t1 = wait(browser, "window.furnaceLive.state && window.furnaceLive.rows > 0 "
                           "&& window.furnaceLive.state.t_s", "the first state and rows")
        rows1 = browser.execute_script("return window.furnaceLive.rows;")
        wait(browser, f"window.furnaceLive.state.t_s > {t1} && window.furnaceLive.rows > "
                      f"{rows1}", "the page following the run")
        charts = browser.execute_script("return window.furnaceLive.charts;")
        assert ["process time (h)", "setpoint_c", "furnace_c", "sample_c"] in charts
        assert any("mass_pct" in c for c in charts)

        # Hold, then Resume, from the page
        browser.find_element("id", "operator").send_keys("ann")
        browser.find_element("id", "btn-hold").click()
        wait(browser, "window.furnaceLive.state.state === 'held'", "held")
        assert "held" in browser.find_element("id", "reply").text
        browser.find_element("id", "reason").send_keys("checked the gas")
        browser.find_element("id", "btn-resume").click()
        wait(browser, "window.furnaceLive.replies.length === 2 && "
                      "window.furnaceLive.state.state === 'running'", "running again")
        replies = browser.execute_script("return window.furnaceLive.replies;")
        assert [(r["status"], r["state"]) for r in replies] == [("applied", "held"),
                                                               ("applied", "running")]
        records = audit(batches)
        commands = [(r["trigger"], r["operator"], r["status"], r["reason"]) for r in records
                    if r["event"] == "operator_command"]
        assert ("hold", "ann", "applied", "") in commands
        assert ("resume", "ann", "applied", "checked the gas") in commands

        # a command without the token, from the page's own origin: 401, nothing applied
        status = browser.execute_async_script("""
            const done = arguments[arguments.length - 1];
            fetch('/api/commands', {method: 'POST', headers: {'Content-Type': 'application/json'},
                  body: JSON.stringify({id: 'x1', trigger: 'abort', operator: 'mallory',
                                        reason: 'no token'})})
              .then(r => done(r.status), e => done(String(e)));""")
        assert status == 401
        wait(browser, "document.getElementById('audit').textContent.includes('resume')",
             "the audit tail showing the resume")
        browser.save_screenshot(str(tmp_path / "live.png"))

        # the overlay of the two screens draws, and its CSV is offered
        browser.get(url.split("#")[0] + "batches")
        wait(browser, "document.querySelectorAll('input.pick').length >= 3", "the list")
        for pick in browser.find_elements("css selector", "input.pick"):
            if "SCREEN-AIR" in pick.get_attribute("value"):
                pick.click()
        browser.find_element("id", "overlay-btn").click()
        drawn = wait(browser, "window.furnaceOverlay.series === 2 && window.furnaceOverlay",
                     "the overlay drawn")
        assert drawn["points"] > 100
        assert "id=" in browser.find_element("id", "csv").get_attribute("href")
        inked = browser.execute_script("""
            const c = document.getElementById('overlay-canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;""")
        assert inked > 5000
        browser.save_screenshot(str(tmp_path / "overlay.png"))
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert not any(batches.glob("*/control.json"))  # removed when the run ended
    assert (tmp_path / "live.png").stat().st_size > 10_000
    assert not [r for r in audit_all(batches) if r.get("operator") == "mallory"]


def audit_all(batches: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in batches.iterdir()
            for line in (p / "audit.jsonl").read_text().splitlines()]
