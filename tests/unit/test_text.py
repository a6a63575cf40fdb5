"""How durations are written everywhere (controller.text): the live view and the report
(``hms``), ``furnace plan`` (``hm``) and error messages (``span``); and user text echoed in
a one-line message (``one_line``). The rule for one line of user text in a file is tested
with the station (test_station.py)."""

from __future__ import annotations

import math

import pytest

from controller.text import hm, hms, one_line, span


@pytest.mark.parametrize(("seconds", "shown"), [
    (0.0, "0:00:00"), (59.9, "0:00:59"), (3725.9, "1:02:05"), (36000.0, "10:00:00"),
    (600.0, "0:10:00"), (1.999, "0:00:01"),  # a countdown never shows more than is left
    (10799.999999999, "3:00:00"),  # float noise in a sum of steps is not a fraction
    (-5.0, "-0:00:05"), (None, "—"), (math.nan, "—"), (math.inf, "—"),
])
def test_hms(seconds: float | None, shown: str) -> None:
    assert hms(seconds) == shown


@pytest.mark.parametrize(("seconds", "shown"), [
    (0.0, "0 h 00 min"), (5430.0, "1 h 30 min"), (3599.0, "0 h 59 min"),
    (10799.999999999, "3 h 00 min"), (30 * 3600.0, "30 h 00 min"), (None, "—"),
])
def test_hm(seconds: float | None, shown: str) -> None:
    assert hm(seconds) == shown


@pytest.mark.parametrize(("seconds", "shown"), [
    (90.0, "1.5 min"), (5400.0, "1.5 h"), (7 * 86400.0, "7 days"), (math.inf, "forever"),
    (math.nan, "forever"),
])
def test_span(seconds: float, shown: str) -> None:
    assert span(seconds) == shown


@pytest.mark.parametrize(("text", "limit", "shown"), [
    ("plain", 80, "plain"), ("lab\npc\r\n", 80, "lab pc"), ("a\u2028b\tc", 80, "a b c"),
    ("esc\x1b[31m", 80, "esc\\x1b[31m"), ("nul\x00", 80, "nul\\x00"),
    ("\u202eevil", 80, "\\u202eevil"), ("x" * 10, 5, "xxxx…"), ("x" * 5, 5, "xxxxx"),
])
def test_one_line(text: str, limit: int, shown: str) -> None:
    assert one_line(text, limit) == shown
