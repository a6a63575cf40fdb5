"""MT-SICS encoding and parsing, from the manual's examples (reference/hardware.md §3.1)."""

from __future__ import annotations

import pytest

from drivers.balance import (
    BalanceBusyError,
    MassReading,
    SicsRejectedError,
    command,
    parse_identity,
    parse_weight,
)
from drivers.errors import (
    CommunicationError,
    ConfigurationError,
    DeviceFaultError,
    DeviceRejectedError,
    DeviceTimeoutError,
)

# ---- commands ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "wire"), [
    ("SI", b"SI\r\n"),
    ("S", b"S\r\n"),
    ("si", b"SI\r\n"),
    (" Z ", b"Z\r\n"),
    ("I2", b"I2\r\n"),
    ("@", b"@\r\n"),
    ("ta 10.00 g", b"TA 10.00 g\r\n"),  # parameters keep their case (the unit is "g")
])
def test_command_is_uppercase_ascii_terminated_cr_lf(name: str, wire: bytes) -> None:
    assert command(name) == wire


@pytest.mark.parametrize("name", ["", "   ", "S\r\nZ", "TA\t1 g", "Sé", "S-I", "S?"])
def test_bad_command_is_a_configuration_error(name: str) -> None:
    with pytest.raises(ConfigurationError, match="not an MT-SICS command"):
        command(name)


# ---- weight replies ------------------------------------------------------------------


@pytest.mark.parametrize(("line", "expected"), [
    (b"S S     100.00 g\r\n", MassReading(100.0, is_stable=True)),  # the manual's example
    (b"S S 100.00 g", MassReading(100.0, is_stable=True)),  # no terminator, one space
    (b"S D     100.12 g\r\n", MassReading(100.12, is_stable=False)),
    (b"S S     2.01235 g\r\n", MassReading(2.01235, is_stable=True)),
    (b"S S    -0.0012 g\r\n", MassReading(-0.0012, is_stable=True)),
    (b"S S   +12.5 g\r\n", MassReading(12.5, is_stable=True)),
    (b"S S        .5 g\r\n", MassReading(0.5, is_stable=True)),
    (b"S S         12 g\r\n", MassReading(12.0, is_stable=True)),
])
def test_weight_replies(line: bytes, expected: MassReading) -> None:
    assert parse_weight(line) == expected


@pytest.mark.parametrize(("unit", "grams"), [("g", 1.5), ("mg", 1.5e-3), ("kg", 1.5e3)])
def test_units_are_converted_to_grams(unit: str, grams: float) -> None:
    reading = parse_weight(f"S S       1.5 {unit}\r\n".encode())
    assert reading.mass_g == pytest.approx(grams, rel=1e-12)


def test_unsupported_unit_is_a_fault_naming_the_unit() -> None:
    with pytest.raises(DeviceFaultError, match="weighs in 'lb'") as info:
        parse_weight(b"S S     4.4092 lb\r\n", device="balance")
    assert info.value.device == "balance"


# ---- error replies -------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    assert "\r" not in text
    return text


def test_s_i_is_busy_and_retryable() -> None:
    with pytest.raises(BalanceBusyError) as info:
        parse_weight(b"S I\r\n", device="balance")
    assert isinstance(info.value, CommunicationError)  # retryable, like a missed reply
    assert not isinstance(info.value, DeviceTimeoutError)
    assert "b'S I'" in _one_line(info.value)
    assert info.value.device == "balance"


@pytest.mark.parametrize(("line", "word"), [(b"S +\r\n", "overload"),
                                            (b"S -\r\n", "underload")])
def test_overload_and_underload_are_device_faults(line: bytes, word: str) -> None:
    with pytest.raises(DeviceFaultError, match=word) as info:
        parse_weight(line)
    assert line.strip().decode() in _one_line(info.value)


def test_transmission_error_is_a_communication_error() -> None:
    with pytest.raises(CommunicationError, match="transmission error") as info:
        parse_weight(b"ET\r\n")
    assert not isinstance(info.value, DeviceRejectedError)
    assert "b'ET'" in _one_line(info.value)


@pytest.mark.parametrize(("line", "reply", "word"), [(b"ES\r\n", "ES", "syntax"),
                                                     (b"EL\r\n", "EL", "logical")])
def test_syntax_and_logical_errors_are_rejections(line: bytes, reply: str, word: str) -> None:
    with pytest.raises(SicsRejectedError, match=word) as info:
        parse_weight(line, device="balance")
    exc = info.value
    assert isinstance(exc, DeviceRejectedError)
    assert not isinstance(exc, CommunicationError)  # retrying cannot help
    assert (exc.reply, exc.exception_code, exc.device) == (reply, 0, "balance")
    assert "exception" not in _one_line(exc)  # no Modbus code suffix


@pytest.mark.parametrize("line", [
    b"",
    b"\r\n",
    b"S\r\n",
    b"S S\r\n",
    b"S S 100.00\r\n",
    b"S X     100.00 g\r\n",
    b"S S     1OO.00 g\r\n",
    b"S S       nan g\r\n",
    b"S S       inf g\r\n",
    b"S S     1e3 g\r\n",
    b"S S     100.00 g extra\r\n",
    b"SI S     100.00 g\r\n",
    b"S Q\r\n",
    b"\xff\xfe\r\n",
    b"ZZZZ" * 100,
])
def test_anything_else_is_garbled(line: bytes) -> None:
    with pytest.raises(CommunicationError, match="^garbled reply") as info:
        parse_weight(line)
    assert type(info.value) is CommunicationError
    assert len(_one_line(info.value)) < 120


# ---- identity ------------------------------------------------------------------------


def test_identity_reply() -> None:
    assert parse_identity(b'I2 A "XS205DU Excellence 220.0000 g"\r\n') == \
        "XS205DU Excellence 220.0000 g"
    assert parse_identity(b'I4 A "B123456789"\r\n') == "B123456789"


@pytest.mark.parametrize(("line", "error"), [(b"ES\r\n", SicsRejectedError),
                                             (b"I2 I\r\n", BalanceBusyError),
                                             (b"I2 A XS205\r\n", CommunicationError),
                                             (b"S S 1.0 g\r\n", CommunicationError)])
def test_identity_errors(line: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_identity(line)
