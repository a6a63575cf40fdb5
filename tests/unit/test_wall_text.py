"""The trace's wall-time cell, formatted from the offset into the day, equals strftime's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from controller.run.scan import _WallText

_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
       st.lists(st.floats(-90_000, 200_000), max_size=20))
def test_wall_text_equals_strftime(start: datetime, steps_s: list[float]) -> None:
    text = _WallText()
    wall = start.replace(tzinfo=UTC)
    for step_s in [0.0, *steps_s]:  # forwards and back, across days
        wall += timedelta(seconds=step_s)
        assert text(wall) == wall.strftime(_FORMAT)
