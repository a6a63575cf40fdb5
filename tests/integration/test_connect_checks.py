"""Connect checks over the wire: each driver's ``verify`` proves the device at its unit id
is the one the station describes, and a wrong unit id or station field is caught before a
recipe starts."""

from __future__ import annotations

import pytest

from drivers.alicat import AlicatMFC
from drivers.errors import ConfigurationError, DeviceRejectedError, DeviceTimeoutError
from drivers.eurotherm import Eurotherm3216
from drivers.o2 import O2Analyser
from tests.integration.wire import connected, served


async def test_the_simulated_station_passes_every_check() -> None:
    async with served() as wire, connected(wire) as bus:
        wire.now.t_s = 3.0
        await Eurotherm3216(bus, 1).verify()
        await Eurotherm3216(bus, 5, name="sample_tc").verify()
        for unit, gas in ((2, "Ar"), (3, "air"), (4, "N2")):
            await AlicatMFC(bus, unit, gas=gas, full_scale_sccm=1000.0).verify()
        await O2Analyser(bus, 6).verify()


async def test_a_wrong_or_silent_unit_id_is_caught_at_connect() -> None:
    async with served() as wire, connected(wire, retries=0) as bus:
        with pytest.raises(DeviceTimeoutError):
            await Eurotherm3216(bus, 9).verify()  # nobody on the line has id 9
        wire.world.set_responding(6, False)
        with pytest.raises(DeviceTimeoutError):
            await O2Analyser(bus, 6).verify()
        with pytest.raises(DeviceRejectedError) as info:
            await Eurotherm3216(bus, 2).verify()  # an Alicat answers at id 2
        assert info.value.exception_code == 2


async def test_wrong_decimals_and_wrong_gas_name_the_field_to_fix() -> None:
    async with served() as wire, connected(wire) as bus:
        with pytest.raises(ConfigurationError) as info:
            await Eurotherm3216(bus, 1, decimals=2).verify()
        assert str(info.value) == (
            "furnace (unit 1): scaled PV 250 and float PV 25.0 disagree — the instrument "
            "shows 1 decimal place but the station says 2 (furnace.decimals)")
        with pytest.raises(ConfigurationError, match=r"gas number 1 \(Ar\) but the station "
                                                     r"says N2 .* mfc\.gas"):
            await AlicatMFC(bus, 2, gas="N2", full_scale_sccm=1000.0).verify()
