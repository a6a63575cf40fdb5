"""Drivers for any Modbus instrument its map file describes (``drivers.maps``): a
temperature controller and a mass-flow controller, every register looked up by role.

Not here: any one vendor's addresses (the map files) or the vendor-named drivers with their
built-in maps (``drivers.eurotherm``, ``drivers.alicat``).
"""

from drivers.instrument.flow import ModbusMassFlowController
from drivers.instrument.temperature import EEPROM_SETPOINT_STEP_C, ModbusTemperatureController

__all__ = ["EEPROM_SETPOINT_STEP_C", "ModbusMassFlowController", "ModbusTemperatureController"]
