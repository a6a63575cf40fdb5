"""Alicat mass-flow controller: register map and driver."""

from drivers.alicat.driver import AlicatMFC

__all__ = ["AlicatMFC"]
