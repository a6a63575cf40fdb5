"""Laboratory balance on a serial line of its own: MT-SICS protocol and driver."""

from drivers.balance.driver import SerialLine, SicsBalance, SicsLine
from drivers.balance.sics import (
    BalanceBusyError,
    SicsRejectedError,
    command,
    parse_identity,
    parse_weight,
)
from drivers.roles import MassReading

__all__ = [
    "BalanceBusyError",
    "MassReading",
    "SerialLine",
    "SicsBalance",
    "SicsLine",
    "SicsRejectedError",
    "command",
    "parse_identity",
    "parse_weight",
]
