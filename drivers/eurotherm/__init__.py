"""Eurotherm 3200-series temperature controller: register map and driver."""

from drivers.eurotherm.driver import Eurotherm3216
from drivers.eurotherm.registers import Status, build_map
from drivers.roles import ControllerReading

__all__ = ["ControllerReading", "Eurotherm3216", "Status", "build_map"]
