"""Simulated Eurotherm 3216 over the driver's map: remote-SP fallback, SP rate limit, own PID,
manual mode, sensor break and status word, driving ``FurnaceThermal``. Any temperature
controller's map file plays it (the 2400's, the 3500's, a lab's own): writes are applied by
role, readings published into the registers the roles name, the status word built from the
map's bits; what the map lacks the instrument lacks.
Not responsible for the wire (``bank``, buses) or for anything our controller decides.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

from drivers.maps import InstrumentMap
from simulator.mapped import (
    Published,
    bank_for,
    publish_readings,
    slot_index,
    slot_of,
    status_masks,
)
from simulator.tc_input import THERMOCOUPLES, controller_map
from simulator.thermal import FurnaceThermal
from simulator.twin.params import TwinParams

__all__ = ["FurnaceTruth", "SimEurotherm3216"]


REMOTE_TIMEOUT_S: Final = 10.0  # MODEL ASSUMPTION: the 3216's comms (remote SP) timeout
INPUT_FILTER_S: Final = 1.6  # MODEL ASSUMPTION: FILT.T default, filters PV for the PID
DERIVATIVE_FILTER_N: Final = 8.0  # MODEL ASSUMPTION: derivative filter time = Td / N
_OVER_RANGE_FRAC: Final = 0.05  # StAt B10: PV above range by > 5 % of span (§1.1)
_BREAK_UPSCALE_FRAC: Final = 0.10  # an open thermocouple drives the input upscale
# The status bits the instrument sets, by the names map files give them.
_STATUS_BITS: Final = ("manual", "ramp_running", "remote_fail", "sensor_break", "over_range",
                       "alarm_1", "new_alarm")


@dataclass(frozen=True, slots=True)
class FurnaceTruth:
    """What the furnace really does, for tests and reports (never served on the wire)."""

    furnace_c: float
    tc_c: float
    output_pct: float


class SimEurotherm3216:
    """A 3216 with a Type ``thermocouple`` input showing ``decimals`` decimal places.

    Bus writes reach it through ``bank`` (hooks update its internal parameters at once);
    ``step`` integrates the instrument and the furnace, ``publish`` refreshes the readable
    registers, ``advance`` does both. Never reads a clock. ``ambient_c`` and ``initial_c``
    (default: ambient, in equilibrium) are °C; after ``remote_timeout_s`` seconds without
    an Rm.SP write in remote mode it falls back to TG.SP. ``imap``: the map it serves
    (default: the built-in 3216 map at ``decimals``); the names above are the 3216's, the
    roles say which registers play them. Raises ``ValueError`` for an unknown thermocouple
    type, decimal places the map cannot show or a map that is not a temperature controller's.

    Fault hooks (driven by ``simulator.faults``): ``inject_sensor_break``, ``pv_offset_k``,
    ``pv_frozen``, ``pv_spike_k``, ``heater_override_frac``, ``power_off``/``power_on`` and
    the front-panel actions ``panel_*`` (state changes that are not bus writes).
    """

    __slots__ = (
        "_a1_c", "_alarm_active", "_always_remote", "_auto_manual", "_auto_value", "_d_alpha",
        "_d_dt_s", "_d_rate_k_per_s", "_local_value", "_manual_value", "_masks",
        "_pv_addresses", "_rate", "_remote_value", "_roles", "_slots",
        "_filter_alpha", "_filter_dt_s", "_handlers", "_i_pct", "_local_sp_c", "_man_op_pct",
        "_new_alarm", "_op_hi_pct", "_op_lo_pct", "_over_range_c", "_pb_c", "_published",
        "_pv_c", "_pv_filtered_c", "_registers", "_remote_age_s", "_remote_failed",
        "_remote_selected", "_remote_sp_c", "_rng", "_sensor_break", "_span_c",
        "_sp_rate_c_per_s", "_td_s", "_ti_s", "_wsp_c",
        "bank", "heater_override_frac", "output_pct", "power_cycles", "powered",
        "pv_frozen", "pv_offset_k", "pv_spike_k", "remote_timeout_s", "tc_spec", "thermal",
    )

    def __init__(self, decimals: int = 1, thermocouple: str = "S",
                 rng: random.Random | None = None, ambient_c: float = 25.0,
                 initial_c: float | None = None,
                 remote_timeout_s: float = REMOTE_TIMEOUT_S, *,
                 imap: InstrumentMap | None = None, twin: TwinParams | None = None) -> None:
        if thermocouple not in THERMOCOUPLES:
            raise ValueError(f"unknown thermocouple type {thermocouple!r}")
        imap, roles = controller_map(imap, decimals)
        self._roles = roles
        self.tc_spec = THERMOCOUPLES[thermocouple]
        self._rng = rng or random.Random(0)
        twin = twin or TwinParams()
        self.thermal = FurnaceThermal(twin.thermal(ambient_c), initial_c)
        self.remote_timeout_s = remote_timeout_s
        self.bank = bank_for(imap)
        spec = self.tc_spec
        self._span_c = spec.range_hi_c - spec.range_lo_c
        self._over_range_c = spec.range_hi_c + _OVER_RANGE_FRAC * self._span_c
        start_c = self.thermal.tc_c
        # Power-up: local SP at the current temperature, WSP = PV, PID per §4.4.
        self._pv_c = self._pv_filtered_c = start_c
        self._wsp_c = self._local_sp_c = self._remote_sp_c = start_c
        self._pb_c, self._ti_s = twin.proportional_band_c, twin.integral_time_s
        self._td_s = twin.derivative_time_s
        self._op_lo_pct, self._op_hi_pct = twin.output_low_pct, twin.output_high_pct
        self._sp_rate_c_per_s = 0.0
        self._man_op_pct = 0.0
        self._auto_manual = self._remote_selected = False
        self._remote_age_s = 0.0
        self._remote_failed = self._sensor_break = False
        self._a1_c = spec.range_hi_c  # alarm 1 (full-scale high) parked at the range top
        self._alarm_active = self._new_alarm = False
        self._i_pct = self._d_rate_k_per_s = 0.0
        self._filter_dt_s = self._d_dt_s = -1.0
        self._filter_alpha = self._d_alpha = 0.0
        self.output_pct = 0.0
        """Working output the instrument drives, % (what WRK.OP shows)."""
        # Fault hooks (``simulator.faults``); the defaults change nothing.
        self.pv_offset_k = 0.0
        """Fault hook: added to the measured PV, K (a drifting or shunted thermocouple reads
        low with a negative offset; the instrument's own PID sees it too)."""
        self.pv_frozen = False
        """Fault hook: the PV stops updating (a dead ADC): register and PID keep the last
        value."""
        self.pv_spike_k = 0.0
        """Fault hook: added to the PV *register* only (a glitch on the reading), K."""
        self.heater_override_frac: float | None = None
        """Fault hook: heater power actually delivered, 0-1, whatever the output (0: open
        element or contactor; 1: SSR failed closed). None: the output drives the heater."""
        self.powered = True
        """False between ``power_off`` and ``power_on``: no PID, output 0 %."""
        self.power_cycles = 0
        """How many times ``power_off`` was called (instrument power cycles)."""
        b = self.bank
        # Each role's slot (None: the map has no such role, the instrument no such thing).
        sel, am, rate = roles.remote_select, roles.auto_manual, roles.rate_limit
        slot = {name: slot_of(imap, register) for name, register in (
            ("pv", roles.process_value), ("wsp", roles.working_setpoint),
            ("output", roles.output), ("error", roles.error),
            ("status", roles.status.register if roles.status else None),
            ("inverted", roles.status.inverted if roles.status else None),
            ("local", roles.local_setpoint), ("remote", roles.remote_setpoint),
            ("select", sel.register if sel else None), ("am", am.register if am else None),
            ("manual", roles.manual_output), ("pb", roles.proportional_band),
            ("ti", roles.integral_time), ("td", roles.derivative_time),
            ("op_hi", roles.output_high), ("op_lo", roles.output_low),
            ("rate", rate.register if rate else None), ("a1", roles.alarm_high),
            ("ack", roles.acknowledge_alarms), ("range_lo", roles.range_low),
            ("range_hi", roles.range_high), ("decimals", roles.display_decimals),
            ("rate_units", rate.units_register if rate else None))}
        self._slots = slot
        self._pv_addresses = tuple(r.address for r in imap.registers
                                   if imap.slot(r.name) == slot["pv"])
        self._masks = status_masks(roles.status, *_STATUS_BITS)
        self._rate = rate
        self._remote_value, self._local_value = (sel.remote, sel.local) if sel else (1, 0)
        self._auto_value, self._manual_value = (am.auto, am.manual) if am else (0, 1)
        # A remote setpoint without a way to select it is always the one used (a station
        # that waived volatile_setpoint): the instrument keeps its last value, no fallback.
        self._always_remote = roles.remote_setpoint is not None and sel is None
        self._remote_selected = self._always_remote
        if self._always_remote:
            self.remote_timeout_s = math.inf
        for name, value in (("local", start_c), ("remote", start_c), ("pb", self._pb_c),
                            ("ti", self._ti_s), ("td", self._td_s), ("op_hi", self._op_hi_pct),
                            ("op_lo", self._op_lo_pct),
                            ("range_lo", spec.range_lo_c), ("range_hi", spec.range_hi_c),
                            ("a1", spec.range_hi_c), ("decimals", float(imap.decimals or 0)),
                            ("rate_units", float(rate.units_value or 0) if rate else 0.0),
                            ("select", float(self._local_value)),
                            ("am", float(self._auto_value))):
            name_ = slot[name]
            if name_ is not None:
                b.set(name_, value)
        for name in ("local", "remote", "a1"):  # setpoint limits = the input range
            name_ = slot[name]
            if name_ is not None:
                b.limit(name_, spec.range_lo_c, spec.range_hi_c)
        handlers = (("local", self._on_local_sp), ("remote", self._on_remote_sp),
                    ("select", self._on_lr), ("am", self._on_am), ("manual", self._on_man_op),
                    ("pb", self._on_pb), ("ti", self._on_ti), ("td", self._on_td),
                    ("op_hi", self._on_op_hi), ("op_lo", self._on_op_lo),
                    ("rate", self._on_sp_rat), ("a1", self._on_a1), ("ack", self._on_ack))
        self._handlers = {slot[n]: h for n, h in handlers if slot[n] is not None}
        b.on_write(self._dispatch)
        # ``publish`` runs every scan cycle: it stores by slot index, resolved here once
        # (None: a register this map does not have).
        self._registers = b.values
        self._published: Published = (
            b.slot(imap.slot(roles.process_value)), b.slot(imap.slot(roles.working_setpoint)),
            b.slot(imap.slot(roles.output)), slot_index(b, slot["error"]),
            slot_index(b, slot["status"]), slot_index(b, slot["inverted"]))
        self.publish()

    def _set(self, role: str, value: float) -> None:
        """Set the register a role names (instrument side), if the map has it."""
        name = self._slots[role]
        if name is not None:
            self.bank.set(name, value)

    # ---- bus write hooks -------------------------------------------------------------

    def _dispatch(self, name: str, value: float) -> None:
        handler = self._handlers.get(name)
        if handler is not None:
            handler(value)
            self.publish()  # status bits change at once (e.g. a fresh Rm.SP clears the fail)

    def _on_local_sp(self, value: float) -> None:
        self._local_sp_c = value

    def _on_remote_sp(self, value: float) -> None:
        self._remote_sp_c = value
        self._remote_age_s = 0.0
        self._remote_failed = False

    def _on_lr(self, value: float) -> None:
        selected = round(value) == self._remote_value
        if selected and not self._remote_selected:
            self._remote_age_s = 0.0  # selecting remote starts a fresh timeout
        self._remote_selected = selected
        if not selected:
            self._remote_failed = False

    def _on_am(self, value: float) -> None:
        manual = round(value) == self._manual_value
        if self._auto_manual and not manual:
            # Bumpless return to auto: the integral picks up the manual output.
            self._i_pct = self.output_pct
            self._d_rate_k_per_s = 0.0
        self._auto_manual = manual

    def _on_man_op(self, value: float) -> None:
        self._man_op_pct = value

    def _on_pb(self, value: float) -> None:
        self._pb_c = value

    def _on_ti(self, value: float) -> None:
        self._ti_s = value

    def _on_td(self, value: float) -> None:
        self._td_s = value
        self._d_dt_s = -1.0  # the derivative filter time is Td / N

    def _on_op_hi(self, value: float) -> None:
        self._op_hi_pct = value

    def _on_op_lo(self, value: float) -> None:
        self._op_lo_pct = value

    def _on_sp_rat(self, value: float) -> None:
        rate = self._rate
        self._sp_rate_c_per_s = (rate.from_register(value) if rate else value) / 60.0

    def _on_a1(self, value: float) -> None:
        self._a1_c = value

    def _on_ack(self, value: float) -> None:
        self._new_alarm = False
        self._set("ack", 0.0)

    # ---- fault hooks and truth -------------------------------------------------------

    def inject_sensor_break(self, broken: bool) -> None:
        """Open (``True``) or mend the thermocouple.

        While broken, StAt shows SENSOR_BREAK and PV_OVER_RANGE, PV reads upscale and the
        output is forced to 0 % (the instrument's safe output).
        """
        self._sensor_break = broken
        if broken:
            self._i_pct = 0.0
        self.publish()

    def power_off(self) -> None:
        """The instrument loses power: no control, output 0 % (the world also silences its
        unit). Counted in ``power_cycles``. Idempotent while off."""
        if self.powered:
            self.powered = False
            self.power_cycles += 1
            self.output_pct = 0.0

    def power_on(self) -> None:
        """Power returns and the instrument restarts as from cold: EEPROM parameters (TG.SP,
        PID terms, output limits, SP.RAT, A1) are kept; the local setpoint is selected
        (L-R 0), the remote setpoint is forgotten (Rm.SP = PV), auto mode (A-M 0), alarms
        and the remote-fail state are cleared, and the working setpoint starts at PV."""
        self.powered = True
        pv = self.thermal.tc_c + self.pv_offset_k if not self.pv_frozen else self._pv_c
        self._pv_c = self._pv_filtered_c = pv
        self._wsp_c = self._remote_sp_c = pv
        self._remote_selected = self._always_remote
        self._remote_failed = False
        self._remote_age_s = 0.0
        self._auto_manual = False
        self._alarm_active = self._new_alarm = False
        self._i_pct = self._d_rate_k_per_s = 0.0
        self.output_pct = 0.0
        self._set("select", float(self._local_value))
        self._set("am", float(self._auto_value))
        self._set("remote", pv)
        self.publish()

    def panel_manual(self, output_pct: float | None = None) -> None:
        """Someone presses A/M on the front panel: manual mode at ``output_pct`` (default:
        the present output, a bumpless transfer). Not a bus write: no write count."""
        self._man_op_pct = self.output_pct if output_pct is None else output_pct
        self._auto_manual = True
        self._set("manual", self._man_op_pct)
        self._set("am", float(self._manual_value))
        self.publish()

    def panel_auto(self) -> None:
        """Someone returns the front panel to auto (bumpless, as a bus write of A-M 0)."""
        self._on_am(float(self._auto_value))
        self._set("am", float(self._auto_value))
        self.publish()

    def panel_local_setpoint(self, setpoint_c: float, *, select_local: bool = True) -> None:
        """Someone types ``setpoint_c`` (°C) as the local setpoint on the front panel and,
        with ``select_local``, selects the local setpoint (L-R 0). Not a bus write."""
        self._local_sp_c = setpoint_c
        self._set("local", setpoint_c)
        if select_local and not self._always_remote:
            self._remote_selected = self._remote_failed = False
            self._set("select", float(self._local_value))
        self.publish()

    def panel_remote(self) -> None:
        """Someone selects the remote setpoint on the front panel (L-R 1)."""
        self._on_lr(float(self._remote_value))
        self._set("select", float(self._remote_value))
        self.publish()

    @property
    def local_sp_c(self) -> float:
        """The local (target) setpoint the instrument falls back to, °C."""
        return self._local_sp_c

    @property
    def pv_addresses(self) -> tuple[int, ...]:
        """The addresses of the process value's registers (every view of it: a read there
        shows the PV)."""
        return self._pv_addresses

    @property
    def manual(self) -> bool:
        """True in manual mode (A-M 1)."""
        return self._auto_manual

    @property
    def remote_selected(self) -> bool:
        """True while the remote (comms) setpoint is selected (L-R 1)."""
        return self._remote_selected

    @property
    def working_sp_c(self) -> float:
        """The working (ramped) setpoint, °C."""
        return self._wsp_c

    @property
    def heater_frac(self) -> float:
        """Heater power actually delivered, 0-1 (the output unless a heater fault)."""
        o = self.heater_override_frac
        if o is not None:
            return o
        u = self.output_pct * 0.01
        return 0.0 if u < 0.0 else 1.0 if u > 1.0 else u

    @property
    def sensor_break(self) -> bool:
        """True while a sensor break is injected."""
        return self._sensor_break

    @property
    def eeprom_writes(self) -> int:
        """Bus writes to the EEPROM-backed target setpoint TG.SP (100 000-cycle life)."""
        local = self._slots["local"]
        return self.bank.write_counts[local] if local is not None else 0

    @property
    def truth(self) -> FurnaceTruth:
        """True furnace and thermocouple temperatures (°C) and applied output (%)."""
        return FurnaceTruth(self.thermal.furnace_c, self.thermal.tc_c, self.output_pct)

    @property
    def active_setpoint_c(self) -> float:
        """The setpoint the working setpoint ramps toward: remote unless failed, else local."""
        if self._remote_selected and not self._remote_failed:
            return self._remote_sp_c
        return self._local_sp_c

    # ---- integration -----------------------------------------------------------------

    def advance(self, dt_s: float) -> None:
        """Integrate instrument and furnace over one step of ``dt_s`` seconds, then publish."""
        self.step(dt_s)
        self.publish()

    def step(self, dt_s: float) -> None:
        """Integrate one step of ``dt_s`` seconds without refreshing the registers."""
        if not self.powered:
            self._rng.gauss(0.0, self.tc_spec.noise_k)  # keep the noise stream in step
            o = self.heater_override_frac
            self.thermal.step(dt_s, 0.0 if o is None else o)
            return
        if self._remote_selected:
            self._remote_age_s += dt_s
            if self._remote_age_s > self.remote_timeout_s:
                self._remote_failed = True
        # active_setpoint_c, inlined (every substep)
        if self._remote_selected and not self._remote_failed:
            target_c = self._remote_sp_c
        else:
            target_c = self._local_sp_c
        wsp = self._wsp_c
        rate = self._sp_rate_c_per_s
        if rate <= 0.0 or abs(target_c - wsp) <= rate * dt_s:
            self._wsp_c = wsp = target_c
        else:
            self._wsp_c = wsp = wsp + (rate * dt_s if target_c > wsp else -rate * dt_s)
        thermal = self.thermal
        # PV = thermocouple + gaussian noise; the PID sees it through the input filter.
        noise_k = self._rng.gauss(0.0, self.tc_spec.noise_k)
        if self.pv_frozen:
            pv = self._pv_c
        else:
            self._pv_c = pv = thermal.tc_c + self.pv_offset_k + noise_k
        if dt_s != self._filter_dt_s:
            self._filter_dt_s = dt_s
            self._filter_alpha = -math.expm1(-dt_s / INPUT_FILTER_S)
        previous_c = self._pv_filtered_c
        self._pv_filtered_c = pv_f = previous_c + (pv - previous_c) * self._filter_alpha
        if self._sensor_break:
            out = 0.0
        elif self._auto_manual:
            out = min(max(self._man_op_pct, self._op_lo_pct), self._op_hi_pct)
        else:
            out = self._pid(dt_s, wsp, pv_f, previous_c)
        self.output_pct = out
        # Alarm 1, full-scale high; a rising edge latches NEW_ALARM until Ac.ALL.
        alarm = self._sensor_break or pv > self._a1_c
        if alarm and not self._alarm_active:
            self._new_alarm = True
        self._alarm_active = alarm
        o = self.heater_override_frac
        thermal.step(dt_s, out * 0.01 if o is None else o)

    def _pid(self, dt_s: float, wsp_c: float, pv_c: float, previous_c: float) -> float:
        """Positional PID (%): P and I on error, D on PV, conditional-integration anti-windup.

        D on PV (no setpoint kick) costs overshoot after a ramp: about 4.5 K on PV at
        5 °C/min. §4.4's 1.3 K (1500 °C) and 2.2 K (220 °C) are what D on error gives.
        """
        kp = 100.0 / self._pb_c  # %/K
        error = wsp_c - pv_c
        td = self._td_s
        if td > 0.0:
            if dt_s != self._d_dt_s:  # reset to -1 when Td changes
                self._d_dt_s = dt_s
                self._d_alpha = -math.expm1(-dt_s * DERIVATIVE_FILTER_N / td)
            rate = (pv_c - previous_c) / dt_s if dt_s > 0.0 else 0.0
            self._d_rate_k_per_s += (rate - self._d_rate_k_per_s) * self._d_alpha
            d = -kp * td * self._d_rate_k_per_s
        else:
            d = 0.0
        p = kp * error
        lo, hi = self._op_lo_pct, self._op_hi_pct
        i = self._i_pct
        if self._ti_s > 0.0:
            i_new = i + kp * error * dt_s / self._ti_s
            u = p + i_new + d
            # Integrate only while that does not push further into saturation.
            if not ((u > hi and error > 0.0) or (u < lo and error < 0.0)):
                i = min(max(i_new, lo), hi)
        else:
            i = 0.0
        self._i_pct = i
        u = p + i + d
        return lo if u < lo else hi if u > hi else u

    @property
    def displayed_pv_c(self) -> float:
        """The PV as the instrument shows it (register PV.IN), °C: upscale on a sensor
        break, plus any injected spike."""
        if self._sensor_break:
            return self.tc_spec.range_hi_c + _BREAK_UPSCALE_FRAC * self._span_c
        return self._pv_c + self.pv_spike_k

    def status_word(self) -> int:
        """The StAt word (``Status`` bits) for the present state."""
        return self._status(self.displayed_pv_c)

    def publish(self) -> None:
        """Refresh the readable registers (PV, WSP, output, error, status) from the state."""
        pv = self.displayed_pv_c
        wsp = self._wsp_c
        status = self._status(pv)
        publish_readings(self._registers, self._published, pv, wsp, self.output_pct, status)

    def _status(self, pv: float) -> int:
        """The status word from the map's masks (0 for a bit the map does not have)."""
        manual, ramp, remote_fail, sensor_break, over_range, alarm_1, new_alarm = self._masks
        status = 0
        if self._auto_manual:
            status |= manual
        if self._wsp_c != self.active_setpoint_c:
            status |= ramp
        if self._remote_selected and self._remote_failed:
            status |= remote_fail
        if self._sensor_break:
            status |= sensor_break
        if pv > self._over_range_c:
            status |= over_range
        if self._alarm_active:
            status |= alarm_1
        if self._new_alarm:
            status |= new_alarm
        return status
