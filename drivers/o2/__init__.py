"""Generic O2 analyser: register map and driver."""

from drivers.o2.driver import O2Analyser

__all__ = ["O2Analyser"]
