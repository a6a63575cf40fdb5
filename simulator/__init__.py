"""The instrument side: physics, register banks serving the drivers' own maps, buses.

Never imports ``controller``; never reads a clock (advance it with ``advance_to``).
"""

from simulator.alicat import SimAlicatMFC
from simulator.balance import SimBalance, SimSicsLine
from simulator.bank import ModbusExceptionReply, RegisterBank
from simulator.eurotherm import FurnaceTruth, SimEurotherm3216
from simulator.gas import TubeGas
from simulator.inprocess import SimBus
from simulator.o2 import SimO2Analyser
from simulator.sample import SampleBoat, SimIndicator
from simulator.thermal import FurnaceThermal, ThermalParams
from simulator.world import SimMfcSpec, SimStationSpec, SimTruth, SimWorld

__all__ = [
    "FurnaceThermal",
    "FurnaceTruth",
    "ModbusExceptionReply",
    "RegisterBank",
    "SampleBoat",
    "SimAlicatMFC",
    "SimBalance",
    "SimBus",
    "SimEurotherm3216",
    "SimIndicator",
    "SimMfcSpec",
    "SimO2Analyser",
    "SimSicsLine",
    "SimStationSpec",
    "SimTruth",
    "SimWorld",
    "ThermalParams",
    "TubeGas",
]
