"""Mettler Toledo MT-SICS as pure functions: command encoding and reply parsing into a
``MassReading`` or an error from the driver tree (reference/hardware.md §3.1).

Not here: any I/O, port handling or timing (see ``drivers.balance.driver``).

Reply -> outcome, and why that error class:

    S S <value> <unit>   stable weight             -> MassReading(is_stable=True)
    S D <value> <unit>   dynamic (unstable) weight -> MassReading(is_stable=False)
    S I                  not executable now        -> BalanceBusyError (a CommunicationError)
    S +  /  S -          overload / underload      -> DeviceFaultError
    ET                   transmission error        -> CommunicationError
    ES  /  EL            syntax / logical error    -> SicsRejectedError (a DeviceRejectedError)
    anything else        garbled                   -> CommunicationError("garbled reply ...")

``S I`` is the balance saying "busy" (taring, adjusting, or it timed out waiting for
stability). The balance did answer, but the condition is transient and a later poll can
succeed, exactly the "no usable reply this cycle; safe to retry" contract of
``CommunicationError``; a ``DeviceRejectedError`` would mean "this request will never be
accepted" (config drift), which a busy balance is not. ``ES``/``EL`` are that second
case: the balance refuses the command itself (not an MT-SICS balance, or the command is
not available at its level), so retrying cannot help.
"""

from __future__ import annotations

import re
from typing import Final

from drivers.errors import (
    CommunicationError,
    ConfigurationError,
    DeviceError,
    DeviceFaultError,
    DeviceRejectedError,
)
from drivers.roles import MassReading

__all__ = [
    "TERMINATOR",
    "UNITS_G",
    "BalanceBusyError",
    "SicsRejectedError",
    "command",
    "parse_identity",
    "parse_weight",
]

TERMINATOR: Final = b"\r\n"  # every MT-SICS command and reply line ends CR LF (§3.1)
UNITS_G: Final = {"g": 1.0, "mg": 1e-3, "kg": 1e3}
"""Grams per weighing unit, for the units we accept in a weight reply."""

_COMMAND_WORD: Final = re.compile(r"^[A-Z0-9@]+$")
_NUMBER: Final = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")
_IDENTITY: Final = re.compile(r'^(I\d+) A "(.*)"$')
_SHOWN_BYTES: Final = 60  # a reply quoted in an error message is cut to this length


class BalanceBusyError(CommunicationError):
    """``S I``: the balance cannot execute the command now (busy, or no stability in time).

    Transient, so it is a ``CommunicationError``: retry on the next poll.
    """


class SicsRejectedError(DeviceRejectedError):
    """``ES`` (syntax) or ``EL`` (logical error): the balance refuses the command itself.

    MT-SICS has no numeric code, so ``exception_code`` is 0 (no Modbus exception uses 0);
    ``reply`` holds the reply text (``"ES"`` or ``"EL"``).
    """

    def __init__(self, message: str, *, reply: str, device: str = "") -> None:
        # Skip DeviceRejectedError.__init__: its "(exception NN)" suffix is Modbus-only.
        DeviceError.__init__(self, message, device=device)
        self.exception_code = 0
        self.reply = reply


def command(name: str) -> bytes:
    """Encode one MT-SICS command line: the command word uppercased, parameters kept as
    given (a unit such as ``g`` stays lowercase), ASCII, terminated CR LF.

    ``command("si") == b"SI\\r\\n"``. Raises ``ConfigurationError`` for an empty command,
    non-printable or non-ASCII text, or a command word that is not letters/digits/``@``.
    """
    text = name.strip()
    word, sep, params = text.partition(" ")
    word = word.upper()
    if not (text.isascii() and text.isprintable() and _COMMAND_WORD.match(word)):
        raise ConfigurationError(f"not an MT-SICS command: {name!r}")
    return f"{word}{sep}{params}".encode("ascii") + TERMINATOR


def _shown(line: bytes) -> str:
    """The reply as quoted in an error message: one line, cut to a readable length."""
    body = line.rstrip(b"\r\n")
    cut = body[:_SHOWN_BYTES]
    return repr(cut) + ("..." if len(body) > _SHOWN_BYTES else "")


def _tokens(line: bytes, device: str) -> list[str]:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise CommunicationError(f"garbled reply {_shown(line)}", device=device) from None
    return text.rstrip("\r\n").split()


def _general_error(tokens: list[str], line: bytes, device: str) -> None:
    """Raise for the general error replies ES, ET and EL; return for anything else."""
    if tokens == ["ET"]:
        raise CommunicationError(f"balance reports a transmission error, reply {_shown(line)}",
                                 device=device)
    if tokens == ["ES"]:
        raise SicsRejectedError(f"balance rejected the command as a syntax error, reply "
                                f"{_shown(line)}", reply="ES", device=device)
    if tokens == ["EL"]:
        raise SicsRejectedError(f"balance rejected the command as a logical error, reply "
                                f"{_shown(line)}", reply="EL", device=device)


def parse_weight(line: bytes, *, device: str = "") -> MassReading:
    """Parse the reply to ``S`` or ``SI`` (with or without its CR LF) into grams.

    ``b"S S     100.00 g\\r\\n"`` -> ``MassReading(100.0, is_stable=True)``; ``S D`` gives
    ``is_stable=False``; ``mg`` and ``kg`` are converted to grams. Raises
    ``BalanceBusyError`` (``S I``), ``DeviceFaultError`` (``S +`` overload, ``S -``
    underload, or a unit other than g/mg/kg), ``CommunicationError`` (``ET``, or a garbled
    reply), ``SicsRejectedError`` (``ES``, ``EL``); every message is one line naming the
    reply. ``device`` labels the error.
    """
    tokens = _tokens(line, device)
    if len(tokens) == 4 and tokens[0] == "S" and tokens[1] in ("S", "D"):  # the usual reply
        _, flag, value, unit = tokens
        if _NUMBER.match(value):
            grams_per_unit = UNITS_G.get(unit)
            if grams_per_unit is None:
                raise DeviceFaultError(f"balance weighs in {unit!r}, set it to g, mg or kg; "
                                       f"reply {_shown(line)}", device=device)
            return MassReading(float(value) * grams_per_unit, is_stable=flag == "S")
        raise CommunicationError(f"garbled reply {_shown(line)}", device=device)
    _general_error(tokens, line, device)
    if len(tokens) == 2 and tokens[0] == "S":
        flag = tokens[1]
        if flag == "I":
            raise BalanceBusyError(f"balance busy or not stable in time, reply {_shown(line)}",
                                   device=device)
        if flag == "+":
            raise DeviceFaultError(f"balance overload, reply {_shown(line)}", device=device)
        if flag == "-":
            raise DeviceFaultError(f"balance underload, reply {_shown(line)}", device=device)
    raise CommunicationError(f"garbled reply {_shown(line)}", device=device)


def parse_identity(line: bytes, *, device: str = "") -> str:
    """Parse an identity reply such as ``I2 A "XS205 220.0000 g"`` into its quoted text.

    Raises like ``parse_weight`` for ``ES``/``ET``/``EL``, ``BalanceBusyError`` for
    ``I2 I``, and ``CommunicationError`` for anything else that is not ``<Ix> A "..."``.
    """
    tokens = _tokens(line, device)
    _general_error(tokens, line, device)
    if len(tokens) == 2 and tokens[1] == "I":
        raise BalanceBusyError(f"balance busy, reply {_shown(line)}", device=device)
    match = _IDENTITY.match(line.decode("ascii").rstrip("\r\n"))
    if match is None:
        raise CommunicationError(f"garbled reply {_shown(line)}", device=device)
    return match.group(2)
