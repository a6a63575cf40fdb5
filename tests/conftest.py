"""Shared fixtures: the built-in station and paths."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path

import pytest

from controller.recipe.station import Station, load_station

ROOT = Path(__file__).resolve().parent.parent

# Station locks of the test run (and of the furnace processes it starts) stay private.
os.environ["FURNACE_LOCK_DIR"] = tempfile.mkdtemp(prefix="furnace-locks-")
# Likewise the anchor logs that batches append their final hash to.
os.environ["FURNACE_ANCHOR_DIR"] = tempfile.mkdtemp(prefix="furnace-anchors-")
# And the OPC UA servers' certificates and keys.
os.environ["FURNACE_OPCUA_PKI_DIR"] = tempfile.mkdtemp(prefix="furnace-opcua-pki-")
# Batches end without archiving unless a test says where (never into the user's archive).
os.environ.pop("FURNACE_ARCHIVE_DB", None)
# The furnace processes the tests start at --speed N predict no live ETA in a child process
# of their own (tests/integration/test_eta.py tests the forecaster): dozens of whole-batch
# predictions would compete with the suite for the cores.
os.environ["FURNACE_NO_ETA"] = "1"
# A run started under nohup (or a CI runner that ignores SIGHUP) passes the ignored SIGHUP
# on to every furnace process the tests start, and a furnace process leaves an ignored
# SIGHUP ignored (as it should; tests/unit/test_signals.py sets that case up itself). The
# tests of SIGHUP and of one-line errors assume a plain terminal's default, so restore it.
if sys.platform != "win32" and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
PROFILES = ROOT / "profiles"


@pytest.fixture
def station() -> Station:
    """The built-in simulated station."""
    return load_station(None)[0]
