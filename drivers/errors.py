"""The project's error tree, in the bottom layer so every package can raise and catch it.

Not here: translation from pymodbus's two error channels (that is the bus's job).

    FurnaceError(Exception)
    ├── ConfigurationError(FurnaceError, ValueError)   bad recipe/station/argument
    ├── DeviceError(FurnaceError)                       carries the device name (+ register)
    │   ├── CommunicationError(DeviceError, ConnectionError)   no or garbled reply; retryable
    │   │   └── DeviceTimeoutError(CommunicationError, TimeoutError)
    │   ├── DeviceRejectedError(DeviceError)            Modbus exception response; .exception_code
    │   ├── ReadbackMismatchError(DeviceError)          wrote X, read back Y
    │   └── DeviceFaultError(DeviceError)               instrument reports sensor break / alarm

The controller's own errors (a recipe against a station's limits, an illegal runner
command) are ``controller/errors.py``.
"""

from __future__ import annotations

__all__ = [
    "CommunicationError",
    "ConfigurationError",
    "DeviceError",
    "DeviceFaultError",
    "DeviceRejectedError",
    "DeviceTimeoutError",
    "FurnaceError",
    "ReadbackMismatchError",
]


class FurnaceError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigurationError(FurnaceError, ValueError):
    """Bad user input: a recipe, station file or argument. Raised before anything moves.

    ``str()`` is the one-line message shown to the user: file, field and rule.
    """

    def __init__(self, message: str, *, source: str = "", field: str = "") -> None:
        self.source = source
        self.field = field
        self.reason = message  # the rule alone, without file and field
        prefix = f"{source}: " if source else ""
        where = f"{field}: " if field else ""
        super().__init__(f"{prefix}{where}{message}")


class DeviceError(FurnaceError):
    """Something went wrong talking to, or inside, one instrument."""

    def __init__(self, message: str, *, device: str = "", register: str = "") -> None:
        self.device = device
        self.register = register
        tags = ", ".join(x for x in (device, register) if x)
        super().__init__(f"{message} [{tags}]" if tags else message)


class CommunicationError(DeviceError, ConnectionError):
    """No reply, a garbled reply or a broken transport. Safe to retry reads."""


class DeviceTimeoutError(CommunicationError, TimeoutError):
    """The instrument did not answer within the timeout."""


class DeviceRejectedError(DeviceError):
    """The instrument answered with a Modbus exception response."""

    def __init__(
        self, message: str, *, exception_code: int, device: str = "", register: str = ""
    ) -> None:
        self.exception_code = exception_code
        super().__init__(f"{message} (exception {exception_code:02d})", device=device,
                         register=register)


class ReadbackMismatchError(DeviceError):
    """A write was acknowledged but reading the register back gave another value."""


class DeviceFaultError(DeviceError):
    """The instrument itself reports a fault (sensor break, ADC error...)."""
