"""Rung 1: counting foreign changes (``monitors.ForeignWrites``) and the ``foreign_writer``
interlock that judges the count."""

from __future__ import annotations

import math
from types import MappingProxyType

from controller.recipe.station import Station
from controller.run.interlocks import FOREIGN_CHANGES_HOLD, Context, Severity, evaluate
from controller.run.monitors import ForeignChange, ForeignWrites
from controller.run.snapshot import Snapshot
from drivers.roles import ControllerReading, FlowReading

TOL_SCCM = 0.2


def _see(writes: ForeignWrites, t_s: float, found: float, *, ours: float | None = 200.0,
         device: str = "mfc_Ar", setting: str = "flow_Ar") -> ForeignChange | None:
    return writes.observe(t_s, device, setting, "setpoint", ours=ours, found=found,
                          tolerance=TOL_SCCM, unit="sccm")


def test_our_value_within_tolerance_is_no_change() -> None:
    writes = ForeignWrites()
    assert _see(writes, 0.0, 200.0) is None
    assert _see(writes, 2.0, 200.0 + TOL_SCCM / 2) is None
    assert writes.latest == {}


def test_a_standing_foreign_value_counts_once() -> None:
    writes = ForeignWrites()
    first = _see(writes, 2.0, 50.0)
    assert first == ForeignChange("mfc_Ar", "flow_Ar", "setpoint", 200.0, 50.0, "sccm", 1,
                                  2.0)
    # left as found (held): the same change every cycle, never counted again
    assert [_see(writes, t, 50.0) for t in (4.0, 6.0, 8.0)] == [None, None, None]
    assert writes.latest["mfc_Ar"].count == 1


def test_rewritten_or_seen_as_ours_again_counts_the_next_change() -> None:
    writes = ForeignWrites()
    assert _see(writes, 2.0, 50.0) is not None
    writes.rewritten("flow_Ar")
    # the other program wrote again before our next read: a second change, not the first
    second = _see(writes, 4.0, 50.0)
    assert second is not None
    assert second.count == 2
    assert _see(writes, 6.0, 200.0) is None  # the instrument shows ours again (re-armed)
    third = _see(writes, 8.0, 120.0)
    assert third is not None
    assert third.count == 3
    assert third.found == 120.0
    assert writes.latest["mfc_Ar"] is third


def test_counts_are_per_device() -> None:
    writes = ForeignWrites()
    assert _see(writes, 2.0, 50.0) is not None
    other = _see(writes, 2.0, 10.0, ours=0.0, device="mfc_N2", setting="flow_N2")
    assert other is not None
    assert other.count == 1
    assert set(writes.latest) == {"mfc_Ar", "mfc_N2"}


def test_nothing_to_compare_is_no_change() -> None:
    writes = ForeignWrites()
    assert _see(writes, 2.0, 50.0, ours=None) is None  # nothing written and read back yet
    assert _see(writes, 2.0, math.nan) is None  # the instrument does not report it
    assert writes.latest == {}


def test_reset_forgets_counts_and_standing_changes() -> None:
    writes = ForeignWrites()
    _see(writes, 2.0, 50.0)
    writes.rewritten("flow_Ar")
    _see(writes, 4.0, 50.0)
    writes.reset()
    assert writes.latest == {}
    again = _see(writes, 6.0, 50.0)  # still foreign after the resume: counted afresh
    assert again is not None
    assert again.count == 1


# ---- the interlock ------------------------------------------------------------------------

RUNNING = Context(setpoint_c=300.0, inert_unpurged=False, inert_purged=True,
                  flows_sccm=(("Ar", 200.0), ("air", 0.0), ("N2", 0.0)))


def _snap(*changes: ForeignChange) -> Snapshot:
    reading = ControllerReading(300.0, 300.0, 20.0, False, False, False, False, False,
                                target_setpoint_c=25.0)
    flows = MappingProxyType({"Ar": FlowReading(200.0, 200.0, False),
                              "air": FlowReading(0.0, 0.0, False),
                              "N2": FlowReading(0.0, 0.0, False)})
    return Snapshot(10.0, reading, flows, 3.0, MappingProxyType({"furnace": 0}),
                    foreign_changes=MappingProxyType({c.device: c for c in changes}))


def _change(count: int, device: str = "mfc_Ar") -> ForeignChange:
    return ForeignChange(device, "flow_Ar", "setpoint", 200.0, 50.0, "sccm", count, 10.0)


def test_one_foreign_change_trips_nothing(station: Station) -> None:
    assert evaluate(_snap(_change(1)), RUNNING, station) == []


def test_the_second_foreign_change_holds_for_a_person(station: Station) -> None:
    assert FOREIGN_CHANGES_HOLD == 2
    [verdict] = evaluate(_snap(_change(2)), RUNNING, station)
    assert verdict.interlock == "foreign_writer"
    assert verdict.severity is Severity.HOLD
    assert (verdict.measured, verdict.limit) == (50.0, 200.0)
    assert verdict.justification == (
        "mfc_Ar setpoint changed by another program twice (200 -> 50 sccm): another "
        "controller or program writes to this instrument; find it before resuming")
    assert verdict.auto_resume_after_s is None  # waits for a person
    assert verdict.reconfigure_on_resume  # and the resume re-applies ours
    assert not verdict.cut_heat


def test_the_furnace_local_setpoint_is_named(station: Station) -> None:
    change = ForeignChange("furnace", "local_setpoint", "local setpoint (TG.SP)", 25.0,
                           300.0, "°C", 3, 10.0)
    [verdict] = evaluate(_snap(change), RUNNING, station)
    assert verdict.justification.startswith(
        "furnace local setpoint (TG.SP) changed by another program 3 times (25 -> 300 °C)")


def test_one_verdict_however_many_devices(station: Station) -> None:
    verdicts = evaluate(_snap(_change(2), _change(2, "mfc_N2")), RUNNING, station)
    assert [v.interlock for v in verdicts] == ["foreign_writer"]


def test_no_verdict_without_a_running_recipe(station: Station) -> None:
    idle = Context(setpoint_c=25.0, inert_unpurged=False, active=False)
    assert evaluate(_snap(_change(2)), idle, station) == []
