"""Station validation at model level: the envelope is self-consistent and physical, gases
with oxygen are oxidising, and an error names the field the user must fix."""

from __future__ import annotations

import pytest

from controller.recipe.station import (
    MAX_FULL_SCALE_SCCM,
    MAX_TUBE_VOLUME_L,
    MIN_TUBE_VOLUME_L,
    load_station_text,
)
from controller.text import printable_line, printable_text, unsafe_char
from drivers.errors import ConfigurationError
from tests.conftest import ROOT

TEXT = (ROOT / "stations" / "sim-tcp.toml").read_text(encoding="utf-8")


def _error(old: str, new: str) -> ConfigurationError:
    assert old in TEXT, old
    with pytest.raises(ConfigurationError) as info:
        load_station_text(TEXT.replace(old, new, 1), "st.toml")
    return info.value


@pytest.mark.parametrize(("old", "new", "field"), [
    ("air_max_c = 250.0", "air_max_c = 1651.0", "envelope.air_max_c"),
    ("open_tube_max_c = 100.0", "open_tube_max_c = 250.5", "envelope.open_tube_max_c"),
    ("open_tube_max_c = 100.0", "open_tube_max_c = 25.0", "envelope.open_tube_max_c"),
    ("oxidising = true\n", "oxidising = false\n", "mfc.1.oxidising"),
    ("scan_period_s = 2.0", "scan_period_s = 10.0", None),  # still fine: 117 s a volume
    ("tube_volume_l = 1.96", "tube_volume_l = 0.02", "envelope.tube_volume_l"),  # 1.2 s
])
def test_cross_field_rules_name_their_field(old: str, new: str, field: str | None) -> None:
    if field is None:
        load_station_text(TEXT.replace(old, new, 1), "st.toml")
        return
    err = _error(old, new)
    assert err.field == field
    assert str(err).startswith(f"st.toml: {field}: ")


def test_limits_may_coincide() -> None:
    """open tube = air limit = maximum is consistent (if odd): nothing contradicts."""
    text = TEXT.replace("air_max_c = 250.0", "air_max_c = 1650.0", 1).replace(
        "open_tube_max_c = 100.0", "open_tube_max_c = 1650.0", 1)
    env = load_station_text(text, "st.toml").envelope
    assert env.open_tube_max_c == env.air_max_c == env.max_temperature_c


@pytest.mark.parametrize("volume_l", [MIN_TUBE_VOLUME_L, MAX_TUBE_VOLUME_L])
def test_tube_volume_bounds_are_inclusive(volume_l: float) -> None:
    text = TEXT.replace("tube_volume_l = 1.96", f"tube_volume_l = {volume_l}", 1).replace(
        "scan_period_s = 2.0", "scan_period_s = 0.5", 1)  # 0.02 L at 1 slpm: 1.2 s a volume
    assert load_station_text(text, "st.toml").envelope.tube_volume_l == volume_l


def test_full_scale_bound_is_inclusive() -> None:
    text = TEXT.replace("full_scale_sccm = 1000.0     # 1",
                        f"full_scale_sccm = {MAX_FULL_SCALE_SCCM}     # 1", 1).replace(
        "scan_period_s = 2.0", "scan_period_s = 0.5", 1)  # 1.96 L at 100 slpm: 1.2 s
    assert load_station_text(text, "st.toml").mfc[0].full_scale_sccm == MAX_FULL_SCALE_SCCM


@pytest.mark.parametrize(("text", "bad"), [
    ("plain", None), ("Ünïcödé 加热 °C ☃", None), ("a\u00a0b", None),  # NBSP is printable
    ("a\u2028b", "\u2028"), ("a\u2029b", "\u2029"), ("a\x85b", "\x85"), ("a\rb", "\r"),
    ("a\nb", "\n"), ("\u202eab", "\u202e"), ("a\u200bb", "\u200b"), ("\ufeffab", "\ufeff"),
    ("a\x00b", "\x00"), ("a\x1bb", "\x1b"),
])
def test_unsafe_characters(text: str, bad: str | None) -> None:
    assert unsafe_char(text) == bad


def test_printable_line_and_text() -> None:
    assert printable_line("one line") == "one line"
    assert printable_text("two\nlines\tand a tab") == "two\nlines\tand a tab"
    with pytest.raises(ValueError, match="U\\+2028 LINE SEPARATOR"):
        printable_line("a\u2028b")
    with pytest.raises(ValueError, match="U\\+000A"):
        printable_line("a\nb")
    with pytest.raises(ValueError, match="U\\+000D"):
        printable_text("a\r\nb")
