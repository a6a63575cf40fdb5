"""Fault injection on the simulator: spec parsing, each kind's physical symptom seen through
the registers as a driver sees them, fault timing, and the ground-truth journal."""

from __future__ import annotations

import math

import pytest

from drivers.alicat.registers import MASS_FLOW, SETPOINT, SETPOINT_READBACK
from drivers.errors import CommunicationError, DeviceRejectedError, DeviceTimeoutError
from drivers.eurotherm.registers import Status, build_map
from drivers.modbus_bus import ModbusBus
from drivers.o2.registers import MAP as O2_MAP
from drivers.registers import Register, decode, encode
from simulator.balance import SimSicsLine
from simulator.faults import (
    AIR_LEAK_SCCM,
    PV_SPIKE_K,
    TC_DRIFT_MAX_K,
    FaultEvent,
    FaultInjector,
    FaultSpec,
    format_duration,
    parse_fault,
)
from simulator.inprocess import SimBus
from simulator.journal import SimJournal
from simulator.modbus_server import SimModbusServer
from simulator.world import SimStationSpec, SimWorld

EURO = {r.name: r for r in build_map(1).registers}
O2 = {r.name: r for r in O2_MAP.registers}
FURNACE, AR, AIR, SAMPLE_TC, O2_UNIT = 1, 2, 3, 5, 6
INERT = SimStationSpec(sample_precursor=None)  # no chemistry: faster, and irrelevant here


def reg(name: str) -> Register:
    """The register a driver uses for a 3216 parameter: its float alias when it has one."""
    return EURO.get(f"{name}.F", EURO[name])


def put(world: SimWorld, unit: int, register: Register, value: float) -> None:
    world.write(unit, register.address, encode(register, value))


def get(world: SimWorld, unit: int, register: Register) -> float:
    return decode(register, world.read(unit, register.address, register.word_count))


def setf(world: SimWorld, name: str, value: float) -> None:
    put(world, FURNACE, reg(name), value)


def getf(world: SimWorld, name: str) -> float:
    return get(world, FURNACE, reg(name))


def status(world: SimWorld, unit: int = FURNACE) -> Status:
    return Status(int(get(world, unit, EURO["StAt"])))


def world_with(specs: list[str], spec: SimStationSpec = INERT,
               seed: int = 3) -> tuple[SimWorld, FaultInjector]:
    world = SimWorld(spec, seed=seed)
    return world, FaultInjector(world, [parse_fault(s) for s in specs], seed=seed)


def stream_remote(world: SimWorld, setpoint_c: float, until_s: float,
                  period_s: float = 2.0) -> None:
    """The controller's pattern: Rm.SP rewritten every scan, remote selected."""
    setf(world, "Rm.SP", setpoint_c)
    put(world, FURNACE, EURO["L-R"], 1)
    t = world.now_s
    while t < until_s - 1e-9:
        t = min(t + period_s, until_s)
        world.advance_to(t)
        setf(world, "Rm.SP", setpoint_c)


# ---- parsing -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("sensor_break@26h", FaultSpec("sensor_break", "furnace", 93600.0, None)),
    ("sensor_break:sample_tc@90s", FaultSpec("sensor_break", "sample_tc", 90.0, None)),
    ("comms_loss:furnace@2h", FaultSpec("comms_loss", "furnace", 7200.0, None)),
    ("comms_loss@45m", FaultSpec("comms_loss", "furnace", 2700.0, None)),
    ("comms_loss:Ar@10", FaultSpec("comms_loss", "mfc_Ar", 10.0, None)),
    ("slow_replies:mfc_air@1.5h+30s", FaultSpec("slow_replies", "mfc_air", 5400.0, 30.0)),
    ("garbled_replies:o2@5m+2m", FaultSpec("garbled_replies", "o2", 300.0, 120.0)),
    ("exception_replies:sample_tc@0", FaultSpec("exception_replies", "sample_tc", 0.0, None)),
    ("comms_loss:balance@1h", FaultSpec("comms_loss", "balance", 3600.0, None)),
    ("mfc_no_flow:Ar@27h", FaultSpec("mfc_no_flow", "Ar", 97200.0, None)),
    ("mfc_stuck:mfc_N2@1h+10m", FaultSpec("mfc_stuck", "N2", 3600.0, 600.0)),
    ("pv_frozen@90s", FaultSpec("pv_frozen", None, 90.0, None)),
    ("tc_drift@45m+.5h", FaultSpec("tc_drift", None, 2700.0, 1800.0)),
    ("front_panel:manual@3h", FaultSpec("front_panel", "manual", 10800.0, None)),
    ("front_panel:local_sp=150@1h", FaultSpec("front_panel", "local_sp", 3600.0, None, 150.0)),
    ("power_cycle@2h", FaultSpec("power_cycle", None, 7200.0, None)),
    ("exotherm_runaway@30m", FaultSpec("exotherm_runaway", None, 1800.0, None)),
])
def test_good_specs_parse_and_print_back(text: str, expected: FaultSpec) -> None:
    spec = parse_fault(text)
    assert spec == expected
    assert parse_fault(str(spec)) == spec


def test_durations_and_their_defaults() -> None:
    assert parse_fault("heater_open@1h").end_s == math.inf  # lasts to the end of the run
    assert parse_fault("heater_open@1h+1m").end_s == 3660.0
    assert parse_fault("power_cycle@1h").end_s == 3605.0  # its off time
    assert [format_duration(s) for s in (93600.0, 2700.0, 90.0, 1.5, 0.0)] == \
        ["26h", "45m", "90s", "1.5s", "0s"]


@pytest.mark.parametrize(("text", "rule"), [
    ("", "missing '@TIME'"),
    ("sensor_break", "missing '@TIME'"),
    ("sensorbreak@1h", "unknown kind 'sensorbreak'"),
    ("sensor_break@", "bad time ''"),
    ("sensor_break@1d", "bad time '1d'"),
    ("sensor_break@-5s", "bad time"),
    ("sensor_break@1e3", "bad time"),
    ("sensor_break@nan", "bad time"),
    ("sensor_break@1h@2h", "bad time"),
    ("sensor_break@1h+", "bad time ''"),
    ("sensor_break@1h+0s", "more than 0 s"),
    ("sensor_break:o2@1h", "unknown target 'o2'"),
    ("pv_frozen:furnace@1h", "takes no target"),
    ("air_leak:5@1h", "takes no target"),
    ("comms_loss:@1h", "empty target"),
    ("comms_loss:pump@1h", "unknown device 'pump'"),
    ("slow_replies:balance@1h", "does not apply to the balance"),
    ("mfc_no_flow@1h", "needs a gas"),
    ("mfc_no_flow:Xe@1h", "unknown gas 'Xe'"),
    ("front_panel@1h", "needs a target"),
    ("front_panel:auto@1h", "unknown target 'auto'"),
    ("front_panel:manual=5@1h", "unknown target 'manual=5'"),
    ("front_panel:local_sp=hot@1h", "bad setpoint 'hot'"),
    ("front_panel:local_sp=inf@1h", "bad setpoint 'inf'"),
    ("sensor_break@1h\n+2h", "bad time"),
])
def test_bad_specs_are_one_line_errors_naming_the_text_and_rule(text: str, rule: str) -> None:
    with pytest.raises(ValueError, match="^fault ") as info:
        parse_fault(text)
    message = str(info.value)
    assert "\n" not in message
    assert repr(text) in message
    assert rule in message


@pytest.mark.parametrize(("text", "spec", "rule"), [
    ("comms_loss:o2@1h", SimStationSpec(o2_unit=None), "no O2 analyser"),
    ("sensor_break:sample_tc@1h", SimStationSpec(sample_tc_unit=None), "no sample thermo"),
    ("mfc_no_flow:He@1h", INERT, "no MFC for He (has: Ar, air, N2)"),
    ("garbled_replies:mfc_He@1h", INERT, "no MFC for He"),
    ("balance_disconnected@1h", SimStationSpec(has_balance=False), "no balance"),
    ("comms_loss:balance@1h", SimStationSpec(has_balance=False), "no balance"),
    ("exotherm_runaway@1h", INERT, "inert boat"),
])
def test_a_fault_the_station_cannot_take_is_refused_up_front(
        text: str, spec: SimStationSpec, rule: str) -> None:
    world = SimWorld(spec)
    with pytest.raises(ValueError, match="^fault ") as info:
        FaultInjector(world, [text])
    assert rule in str(info.value)
    assert "\n" not in str(info.value)
    assert world.hooks == []


# ---- furnace instrument and heater -------------------------------------------------------

def test_sensor_break_sets_the_status_bit_and_the_safe_output_then_mends() -> None:
    world, _ = world_with(["sensor_break@60s+60s"])
    setf(world, "TG.SP", 300.0)
    world.advance_to(59.0)
    assert getf(world, "WRK.OP") == pytest.approx(100.0)
    world.advance_to(61.0)
    assert Status.SENSOR_BREAK in status(world)
    assert getf(world, "WRK.OP") == 0.0
    assert world.truth().heater_pct == 0.0
    world.advance_to(121.0)
    assert Status.SENSOR_BREAK not in status(world)
    assert getf(world, "WRK.OP") > 0.0


def test_sensor_break_on_the_sample_thermocouple() -> None:
    world, _ = world_with(["sensor_break:sample_tc@10s"])
    world.advance_to(11.0)
    assert Status.SENSOR_BREAK in status(world, SAMPLE_TC)
    assert Status.SENSOR_BREAK not in status(world)


def test_heater_stuck_heats_with_the_setpoint_at_ambient() -> None:
    world, _ = world_with(["heater_stuck@0"])
    setf(world, "TG.SP", 25.0)
    world.advance_to(600.0)
    truth = world.truth()
    assert getf(world, "WRK.OP") == 0.0  # the instrument asks for nothing...
    assert truth.heater_pct == 100.0  # ...and the SSR gives everything
    assert truth.furnace_c > 300.0
    assert getf(world, "PV.IN") > 200.0


def test_heater_open_gives_no_rise_at_full_output() -> None:
    world, _ = world_with(["heater_open@0"])
    setf(world, "TG.SP", 800.0)
    world.advance_to(600.0)
    assert getf(world, "WRK.OP") == pytest.approx(100.0)
    assert world.truth().furnace_c == pytest.approx(25.0, abs=0.01)
    assert getf(world, "PV.IN") == pytest.approx(25.0, abs=1.0)


def test_tc_drift_makes_the_furnace_run_hot_while_pv_looks_right() -> None:
    world, _ = world_with(["tc_drift@40m"])
    setf(world, "TG.SP", 200.0)
    world.advance_to(2400.0)
    settled = world.truth()
    assert settled.furnace_c == pytest.approx(200.0, abs=3.0)
    world.advance_to(2400.0 + 60.0 * 60.0)  # 25 min to full offset, then settle
    truth = world.truth()
    assert getf(world, "PV.IN") == pytest.approx(200.0, abs=2.0)
    assert world.furnace.pv_offset_k == -TC_DRIFT_MAX_K
    assert truth.furnace_c - truth.pv_c > 40.0
    assert truth.tc_c == pytest.approx(250.0, abs=3.0)


def test_pv_frozen_keeps_the_register_while_the_furnace_moves() -> None:
    world, _ = world_with(["pv_frozen@60s"])
    setf(world, "TG.SP", 150.0)
    world.advance_to(61.0)
    frozen = getf(world, "PV.IN")
    tc_at_freeze = world.truth().tc_c
    readings = []
    for t in range(62, 900, 2):
        world.advance_to(float(t))
        readings.append(getf(world, "PV.IN"))
    assert set(readings) == {frozen}
    assert frozen < 150.0
    assert world.truth().tc_c - tc_at_freeze > 100.0  # the PID, blind, keeps heating
    assert getf(world, "WRK.OP") == pytest.approx(100.0)


def test_pv_spikes_are_single_samples_of_plus_200_k() -> None:
    world, injector = world_with(["pv_spike@0"], seed=5)
    spiked = []
    for t in range(2, 3602, 2):
        world.advance_to(float(t))
        excess = getf(world, "PV.IN") - world.truth().tc_c
        spiked.append(excess > PV_SPIKE_K / 2)
        assert excess == pytest.approx(PV_SPIKE_K, abs=1.0) or abs(excess) < 1.0
    assert 10 <= sum(spiked) <= 60  # about one per 2 min over an hour
    assert not any(a and b for a, b in zip(spiked, spiked[1:], strict=False))
    assert injector.active  # still running: it lasts to the end
    injector.close()
    assert world.hooks == []
    assert world.read_hooks == []


def test_power_cycle_goes_silent_then_comes_back_reset() -> None:
    world, _ = world_with(["power_cycle@600s"])
    setf(world, "SP.RAT", 60.0)
    setf(world, "TG.SP", 25.0)  # the safe local setpoint, EEPROM
    stream_remote(world, 300.0, 598.0)
    assert getf(world, "L-R") == 1
    assert getf(world, "WKG.SP") == 300.0
    before = world.furnace.eeprom_writes
    world.advance_to(601.0)
    with pytest.raises(DeviceTimeoutError):
        world.read(FURNACE, 1, 1)
    assert world.truth().heater_pct == 0.0
    world.advance_to(606.0)
    pv = getf(world, "PV.IN")
    assert getf(world, "L-R") == 0  # local selected
    assert getf(world, "A-M") == 0  # auto
    assert getf(world, "Rm.SP") == pytest.approx(pv, abs=1.0)  # remote SP forgotten
    assert getf(world, "WKG.SP") == pytest.approx(pv, abs=1.0)  # WSP starts at PV...
    assert getf(world, "TG.SP") == 25.0
    assert getf(world, "SP.RAT") == 60.0
    stat = status(world)
    assert Status.REMOTE_SP_FAIL not in stat
    assert Status.NEW_ALARM not in stat
    world.advance_to(666.0)
    assert getf(world, "WKG.SP") == pytest.approx(pv - 60.0, abs=1.0)  # ...and ramps down
    assert Status.RAMP_RUNNING in status(world)
    assert world.furnace.power_cycles == 1
    assert world.furnace.eeprom_writes == before


def test_front_panel_manual_shows_in_the_status_word() -> None:
    world, _ = world_with(["front_panel:manual@120s+60s"])
    setf(world, "TG.SP", 200.0)
    world.advance_to(119.0)
    world.advance_to(121.0)
    output = world.furnace.output_pct
    assert Status.MANUAL in status(world)
    assert getf(world, "A-M") == 1
    assert getf(world, "MAN.OP") == pytest.approx(output, abs=0.1)
    world.advance_to(181.0)
    assert Status.MANUAL not in status(world)
    assert getf(world, "A-M") == 0


def test_front_panel_local_setpoint_selects_local_without_a_bus_write() -> None:
    world, _ = world_with(["front_panel:local_sp=100@60s"])
    stream_remote(world, 300.0, 58.0)
    writes = world.furnace.eeprom_writes
    stream_remote(world, 300.0, 80.0)
    assert getf(world, "L-R") == 0
    assert getf(world, "TG.SP") == 100.0
    assert world.furnace.active_setpoint_c == 100.0
    assert world.furnace.eeprom_writes == writes


# ---- the wire, in process ----------------------------------------------------------------

async def test_comms_loss_is_a_timeout_through_simbus_and_ends() -> None:
    world, _ = world_with(["comms_loss:Ar@10s+20s"])
    clock = [0.0]
    bus = SimBus(world, lambda: clock[0], {AR: "mfc_Ar"})
    assert len(await bus.read_registers(AR, MASS_FLOW.address, 2)) == 2
    clock[0] = 11.0
    with pytest.raises(DeviceTimeoutError, match="mfc_Ar"):
        await bus.read_registers(AR, MASS_FLOW.address, 2)
    assert len(await bus.read_registers(FURNACE, 1, 1)) == 1  # the others still answer
    clock[0] = 31.0
    assert len(await bus.read_registers(AR, MASS_FLOW.address, 2)) == 2


async def test_exception_replies_are_code_4_and_change_nothing() -> None:
    world, _ = world_with(["exception_replies@10s"])
    clock = [11.0]
    bus = SimBus(world, lambda: clock[0])
    with pytest.raises(DeviceRejectedError) as info:
        await bus.read_registers(FURNACE, 1, 1)
    assert info.value.exception_code == 4
    with pytest.raises(DeviceRejectedError):
        await bus.write_registers(FURNACE, reg("TG.SP").address, encode(reg("TG.SP"), 500.0))
    assert world.furnace.bank.get("TG.SP") != 500.0


@pytest.mark.parametrize(("kind", "error"), [("garbled_replies", CommunicationError),
                                             ("slow_replies", DeviceTimeoutError)])
async def test_lost_replies_raise_but_the_write_happened(
        kind: str, error: type[Exception]) -> None:
    world, _ = world_with([f"{kind}:mfc_Ar@0"])
    journal = SimJournal(world)
    bus = SimBus(world, lambda: 1.0)
    with pytest.raises(error) as info:
        await bus.write_registers(AR, SETPOINT.address, encode(SETPOINT, 250.0))
    if kind == "garbled_replies":
        assert "garbled reply" in str(info.value)
        assert not isinstance(info.value, DeviceTimeoutError)
    assert world.mfcs["Ar"].setpoint_sccm == 250.0
    assert len(journal.writes(AR, SETPOINT.address)) == 1
    with pytest.raises(error):
        await bus.read_registers(AR, SETPOINT_READBACK.address, 2)


# ---- gas, balance, sample ----------------------------------------------------------------

def test_mfc_no_flow_decays_to_zero_with_the_setpoint_kept() -> None:
    world, _ = world_with(["mfc_no_flow:Ar@30s"])
    put(world, AR, SETPOINT, 200.0)
    world.advance_to(29.0)
    assert get(world, AR, MASS_FLOW) == pytest.approx(200.0, abs=2.0)
    world.advance_to(45.0)
    assert get(world, AR, MASS_FLOW) == 0.0
    assert get(world, AR, SETPOINT_READBACK) == 200.0


def test_mfc_stuck_freezes_the_flow() -> None:
    world, _ = world_with(["mfc_stuck:Ar@30s"])
    put(world, AR, SETPOINT, 200.0)
    world.advance_to(31.0)
    put(world, AR, SETPOINT, 0.0)
    world.advance_to(60.0)
    assert world.mfcs["Ar"].flow_sccm == pytest.approx(200.0, abs=0.1)


def test_air_leak_raises_o2_under_argon() -> None:
    plain = SimWorld(INERT, seed=1)
    world, _ = world_with(["air_leak@0"], seed=1)
    for w in (plain, world):
        put(w, AR, SETPOINT, 200.0)
        w.advance_to(3 * 3600.0)
    assert plain.truth().o2_ppm < 20.0
    expected_ppm = AIR_LEAK_SCCM / (200.0 + AIR_LEAK_SCCM) * 209_460.0
    assert world.truth().o2_ppm == pytest.approx(expected_ppm, rel=0.02)
    assert get(world, O2_UNIT, O2["O2"]) > 3000.0
    assert world.truth().leak_sccm == AIR_LEAK_SCCM


@pytest.mark.parametrize("text", ["balance_disconnected@60s", "comms_loss:balance@60s"])
async def test_a_disconnected_balance_times_out(text: str) -> None:
    world, _ = world_with([text])
    clock = [0.0]
    assert world.balance is not None
    line = SimSicsLine(world.balance, lambda: world.advance_to(clock[0]))
    assert (await line.transact(b"SI\r\n")).startswith(b"S ")
    clock[0] = 61.0
    with pytest.raises(DeviceTimeoutError):
        await line.transact(b"SI\r\n")


@pytest.mark.parametrize("acid_wt", [50.0, 70.0])
def test_exotherm_runaway_heats_a_pop_sample_tens_of_k_above_the_furnace(
        acid_wt: float) -> None:
    pop = SimStationSpec(sample_precursor="pitch", sample_acid_wt=acid_wt)
    excess = {}
    for faults in ([], ["exotherm_runaway@20m"]):
        world, _ = world_with(faults, pop)
        put(world, AIR, SETPOINT, 500.0)
        setf(world, "SP.RAT", 5.0)
        setf(world, "TG.SP", 220.0)  # pre-oxidation in air
        worst = -math.inf
        for t in range(10, 3 * 3600, 10):
            world.advance_to(float(t))
            truth = world.truth()
            worst = max(worst, truth.sample_c - truth.furnace_c)
        excess[bool(faults)] = worst
        assert world.truth().furnace_c == pytest.approx(220.0, abs=2.0)
    assert excess[False] < 10.0
    assert 20.0 < excess[True] < 100.0


# ---- timing, the hook, and the journal ---------------------------------------------------

def test_faults_start_and_end_at_their_times_and_the_hook_goes() -> None:
    world, injector = world_with(["heater_stuck@60s+2m", "comms_loss:o2@100s+10s"])
    journal = SimJournal(world)
    journal.watch(injector)
    assert len(world.hooks) == 2
    world.advance_to(59.0)
    assert injector.active == ()
    world.advance_to(101.0)
    assert [s.kind for s in injector.active] == ["heater_stuck", "comms_loss"]
    world.advance_to(400.0)
    assert injector.active == ()
    assert injector.pending == ()
    assert injector.events == [
        FaultEvent("heater_stuck", None, 60.0, "start"),
        FaultEvent("comms_loss", "o2", 100.0, "start"),
        FaultEvent("comms_loss", "o2", 110.0, "end"),
        FaultEvent("heater_stuck", None, 180.0, "end"),
    ]
    assert list(journal.events) == injector.events
    assert world.hooks == [journal._on_substep]  # the injector removed itself
    assert journal.fault_time("heater_stuck", "end") == 180.0
    assert journal.truth_at(179.0).heater_pct == 100.0
    assert journal.truth_at(181.0).heater_pct == 0.0
    assert world.is_responding(O2_UNIT)


def test_no_faults_no_hooks_and_identical_truth() -> None:
    plain = SimWorld(SimStationSpec(), seed=11)
    empty = SimWorld(SimStationSpec(), seed=11)
    FaultInjector(empty, [])
    assert empty.hooks == []
    later = SimWorld(SimStationSpec(), seed=11)
    FaultInjector(later, ["heater_stuck@100h", "pv_spike@100h"])
    SimJournal(later, period_s=1.0)
    for w in (plain, empty, later):
        put(w, AIR, SETPOINT, 300.0)
        setf(w, "TG.SP", 250.0)
    for t in (1.3, 60.0, 600.25, 1800.0):
        for w in (plain, empty, later):
            w.advance_to(t)
        assert plain.truth() == empty.truth() == later.truth()


async def test_journal_records_simbus_writes_truth_samples_and_queries() -> None:
    world = SimWorld(INERT, seed=2)
    journal = SimJournal(world)  # 2 s
    clock = [0.0]
    bus = SimBus(world, lambda: clock[0])
    tg = reg("TG.SP")
    clock[0] = 5.0
    await bus.write_registers(FURNACE, tg.address, encode(tg, 400.0))
    clock[0] = 65.0
    await bus.write_registers(FURNACE, tg.address, encode(tg, 0.0))
    await bus.write_registers(AR, SETPOINT.address, encode(SETPOINT, 100.0))
    clock[0] = 300.0
    await bus.read_registers(FURNACE, 1, 1)
    writes = journal.writes(FURNACE, tg.address + 1)  # covered by the float's first word
    assert [(w.t_s, decode(tg, list(w.words))) for w in writes] == [(5.0, 400.0), (65.0, 0.0)]
    assert len(journal.writes()) == 3
    assert len(journal.writes(AR)) == 1
    times = [s.t_s for s in journal.samples]
    assert times[:3] == [0.0, 2.0, 4.0]
    assert times[-1] == 298.0
    assert journal.truth_at(5.9).t_s == 4.0
    with pytest.raises(LookupError):
        journal.truth_at(-1.0)
    hot = journal.first_time(lambda s: s.furnace_c > 50.0)
    assert hot is not None
    assert 5.0 < hot < 65.0
    assert journal.first_time(lambda s: s.furnace_c > 50.0, after_s=99.0) == 100.0
    assert journal.first_time(lambda s: s.furnace_c > 1000.0) is None
    journal.detach()
    world.advance_to(400.0)
    assert journal.samples[-1].t_s == 298.0


def test_a_bounded_journal_keeps_the_latest_samples() -> None:
    world = SimWorld(INERT)
    journal = SimJournal(world, period_s=1.0, max_samples=100)
    world.advance_to(1000.0)
    assert 100 <= len(journal.samples) <= 125
    assert journal.samples[-1].t_s == 999.5 or journal.samples[-1].t_s == 999.0
    with pytest.raises(LookupError):
        journal.truth_at(10.0)


async def test_journal_and_wire_faults_over_the_modbus_server() -> None:
    world = SimWorld(INERT, seed=4)
    journal = SimJournal(world)
    injector = FaultInjector(world, ["exception_replies:mfc_Ar@100s+100s",
                                     "garbled_replies:furnace@300s"])
    clock = [0.0]
    server = SimModbusServer(world, lambda: clock[0])
    port = await server.start_tcp("127.0.0.1", 0)
    bus = ModbusBus(transport="tcp", host="127.0.0.1", port=port, timeout_s=0.5, retries=0)
    try:
        await bus.connect()
        clock[0] = 12.0
        await bus.write_registers(AR, SETPOINT.address, encode(SETPOINT, 120.0))
        clock[0] = 150.0
        with pytest.raises(DeviceRejectedError) as info:
            await bus.read_registers(AR, MASS_FLOW.address, 2)
        assert info.value.exception_code == 4
        clock[0] = 201.0
        assert len(await bus.read_registers(AR, MASS_FLOW.address, 2)) == 2
        clock[0] = 301.0
        tg = reg("TG.SP")
        with pytest.raises(CommunicationError, match="garbled") as garbled:
            await bus.write_registers(FURNACE, tg.address, encode(tg, 90.0), idempotent=False)
        assert not isinstance(garbled.value, DeviceTimeoutError)
        assert world.furnace.bank.get("TG.SP") == 90.0  # served; only the reply was lost
    finally:
        await bus.close()
        await server.stop()
    [write] = journal.writes(AR)
    assert (write.t_s, write.address) == (12.0, SETPOINT.address)
    assert decode(SETPOINT, list(write.words)) == 120.0
    assert [e.phase for e in injector.events] == ["start", "end", "start"]
    assert [w.t_s for w in journal.writes(FURNACE, reg("TG.SP").address)] == [301.0]
