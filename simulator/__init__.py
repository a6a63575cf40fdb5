"""The instrument side: physics, register banks serving the drivers' own maps, buses.

Never imports ``controller``; never reads a clock (advance it with ``advance_to``).
"""

from simulator.alicat import SimAlicatMFC
from simulator.balance import SimBalance, SimSicsLine
from simulator.bank import ModbusExceptionReply, RegisterBank
from simulator.eurotherm import FurnaceTruth, SimEurotherm3216
from simulator.faults import FaultEvent, FaultInjector, FaultKind, FaultSpec, parse_fault
from simulator.gas import TubeGas
from simulator.inprocess import SimBus
from simulator.journal import JournalWrite, SimJournal
from simulator.o2 import SimO2Analyser
from simulator.sample import SampleBoat, SimIndicator
from simulator.thermal import FurnaceThermal, ThermalParams
from simulator.world import SimMfcSpec, SimStationSpec, SimTruth, SimWorld, WireFault

__all__ = [
    "FaultEvent",
    "FaultInjector",
    "FaultKind",
    "FaultSpec",
    "FurnaceThermal",
    "FurnaceTruth",
    "JournalWrite",
    "ModbusExceptionReply",
    "RegisterBank",
    "SampleBoat",
    "SimAlicatMFC",
    "SimBalance",
    "SimBus",
    "SimEurotherm3216",
    "SimIndicator",
    "SimJournal",
    "SimMfcSpec",
    "SimO2Analyser",
    "SimSicsLine",
    "SimStationSpec",
    "SimTruth",
    "SimWorld",
    "ThermalParams",
    "TubeGas",
    "WireFault",
    "parse_fault",
]
