"""Simulated Eurotherm 3216 over the driver's map: remote-SP fallback, SP rate limit, own PID,
manual mode, sensor break and status word, driving ``FurnaceThermal``.
Not responsible for the wire (``bank``, buses) or for anything our controller decides.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

from drivers.eurotherm.registers import Status, build_map
from simulator.bank import RegisterBank
from simulator.thermal import FurnaceThermal, ThermalParams

__all__ = ["THERMOCOUPLES", "FurnaceTruth", "SimEurotherm3216", "ThermocoupleSpec"]


@dataclass(frozen=True, slots=True)
class ThermocoupleSpec:
    """Input range (°C) and PV noise (K, 1 sigma) of one thermocouple type."""

    range_lo_c: float
    range_hi_c: float
    noise_k: float


# Ranges: the 3216's input ranges (NIST ITS-90 limits, §4.3). Noise: MODEL ASSUMPTION,
# larger for the low-Seebeck noble-metal types (Type B: 0.22 mV at 220 °C, §4.3).
THERMOCOUPLES: Final = {
    "B": ThermocoupleSpec(0.0, 1820.0, 0.2),
    "R": ThermocoupleSpec(-50.0, 1768.0, 0.1),
    "S": ThermocoupleSpec(-50.0, 1768.0, 0.1),
    "K": ThermocoupleSpec(-200.0, 1372.0, 0.05),
    "N": ThermocoupleSpec(-200.0, 1300.0, 0.05),
}

REMOTE_TIMEOUT_S: Final = 10.0  # MODEL ASSUMPTION: the 3216's comms (remote SP) timeout
INPUT_FILTER_S: Final = 1.6  # MODEL ASSUMPTION: FILT.T default, filters PV for the PID
DERIVATIVE_FILTER_N: Final = 8.0  # MODEL ASSUMPTION: derivative filter time = Td / N
_OVER_RANGE_FRAC: Final = 0.05  # StAt B10: PV above range by > 5 % of span (§1.1)
_BREAK_UPSCALE_FRAC: Final = 0.10  # an open thermocouple drives the input upscale
# StAt bits as plain ints: the status word is built every publish, and IntFlag arithmetic
# costs ten times an int's. All 16 bits are defined, so ~ and & give the same words.
_MANUAL: Final = int(Status.MANUAL)
_RAMP_RUNNING: Final = int(Status.RAMP_RUNNING)
_REMOTE_SP_FAIL: Final = int(Status.REMOTE_SP_FAIL)
_SENSOR_BREAK: Final = int(Status.SENSOR_BREAK)
_PV_OVER_RANGE: Final = int(Status.PV_OVER_RANGE)
_ALARM_1: Final = int(Status.ALARM_1)
_NEW_ALARM: Final = int(Status.NEW_ALARM)
_PUBLISHED: Final = ("PV.IN", "WKG.SP", "WRK.OP", "ERR", "StAt", "StAt.INV")


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
    an Rm.SP write in remote mode it falls back to TG.SP. Raises ``ValueError`` for an
    unknown thermocouple type or a ``decimals`` other than 0-2.

    Fault hooks (driven by ``simulator.faults``): ``inject_sensor_break``, ``pv_offset_k``,
    ``pv_frozen``, ``pv_spike_k``, ``heater_override_frac``, ``power_off``/``power_on`` and
    the front-panel actions ``panel_*`` (state changes that are not bus writes).
    """

    __slots__ = (
        "_a1_c", "_alarm_active", "_auto_manual", "_d_alpha", "_d_dt_s", "_d_rate_k_per_s",
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
                 remote_timeout_s: float = REMOTE_TIMEOUT_S) -> None:
        if thermocouple not in THERMOCOUPLES:
            raise ValueError(f"unknown thermocouple type {thermocouple!r}")
        self.tc_spec = THERMOCOUPLES[thermocouple]
        self._rng = rng or random.Random(0)
        self.thermal = FurnaceThermal(ThermalParams(ambient_c=ambient_c), initial_c)
        self.remote_timeout_s = remote_timeout_s
        self.bank = RegisterBank(build_map(decimals))
        spec = self.tc_spec
        self._span_c = spec.range_hi_c - spec.range_lo_c
        self._over_range_c = spec.range_hi_c + _OVER_RANGE_FRAC * self._span_c
        start_c = self.thermal.tc_c
        # Power-up: local SP at the current temperature, WSP = PV, PID per §4.4.
        self._pv_c = self._pv_filtered_c = start_c
        self._wsp_c = self._local_sp_c = self._remote_sp_c = start_c
        self._pb_c, self._ti_s, self._td_s = 20.0, 300.0, 50.0
        self._op_lo_pct, self._op_hi_pct = 0.0, 100.0
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
        for name, value in (("TG.SP", start_c), ("Rm.SP", start_c), ("PB", 20.0),
                            ("Ti", 300.0), ("Td", 50.0), ("OP.HI", 100.0), ("OP.LO", 0.0),
                            ("RNG.LO", spec.range_lo_c), ("RNG.HI", spec.range_hi_c),
                            ("A1", spec.range_hi_c)):
            b.set(name, value)
        for name in ("TG.SP", "Rm.SP", "A1"):  # setpoint limits = the input range
            b.limit(name, spec.range_lo_c, spec.range_hi_c)
        self._handlers = {
            "TG.SP": self._on_local_sp, "Rm.SP": self._on_remote_sp, "L-R": self._on_lr,
            "A-M": self._on_am, "MAN.OP": self._on_man_op, "PB": self._on_pb,
            "Ti": self._on_ti, "Td": self._on_td, "OP.HI": self._on_op_hi,
            "OP.LO": self._on_op_lo, "SP.RAT": self._on_sp_rat, "A1": self._on_a1,
            "Ac.ALL": self._on_ack,
        }
        b.on_write(self._dispatch)
        # ``publish`` runs every scan cycle: it stores by slot index, resolved here once.
        self._registers = b.values
        self._published = tuple(b.slot(name) for name in _PUBLISHED)
        self.publish()

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
        selected = value >= 0.5
        if selected and not self._remote_selected:
            self._remote_age_s = 0.0  # selecting remote starts a fresh timeout
        self._remote_selected = selected
        if not selected:
            self._remote_failed = False

    def _on_am(self, value: float) -> None:
        manual = value >= 0.5
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
        self._sp_rate_c_per_s = value / 60.0

    def _on_a1(self, value: float) -> None:
        self._a1_c = value

    def _on_ack(self, value: float) -> None:
        self._new_alarm = False
        self.bank.set("Ac.ALL", 0.0)

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
        self._remote_selected = self._remote_failed = False
        self._remote_age_s = 0.0
        self._auto_manual = False
        self._alarm_active = self._new_alarm = False
        self._i_pct = self._d_rate_k_per_s = 0.0
        self.output_pct = 0.0
        b = self.bank
        b.set("L-R", 0.0)
        b.set("A-M", 0.0)
        b.set("Rm.SP", pv)
        self.publish()

    def panel_manual(self, output_pct: float | None = None) -> None:
        """Someone presses A/M on the front panel: manual mode at ``output_pct`` (default:
        the present output, a bumpless transfer). Not a bus write: no write count."""
        self._man_op_pct = self.output_pct if output_pct is None else output_pct
        self._auto_manual = True
        self.bank.set("MAN.OP", self._man_op_pct)
        self.bank.set("A-M", 1.0)
        self.publish()

    def panel_auto(self) -> None:
        """Someone returns the front panel to auto (bumpless, as a bus write of A-M 0)."""
        self._on_am(0.0)
        self.bank.set("A-M", 0.0)
        self.publish()

    def panel_local_setpoint(self, setpoint_c: float, *, select_local: bool = True) -> None:
        """Someone types ``setpoint_c`` (°C) as the local setpoint on the front panel and,
        with ``select_local``, selects the local setpoint (L-R 0). Not a bus write."""
        self._local_sp_c = setpoint_c
        self.bank.set("TG.SP", setpoint_c)
        if select_local:
            self._remote_selected = self._remote_failed = False
            self.bank.set("L-R", 0.0)
        self.publish()

    def panel_remote(self) -> None:
        """Someone selects the remote setpoint on the front panel (L-R 1)."""
        self._on_lr(1.0)
        self.bank.set("L-R", 1.0)
        self.publish()

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
        return self.bank.write_counts["TG.SP"]

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
        values = self._registers
        pv_i, wsp_i, op_i, err_i, status_i, inverse_i = self._published
        values[pv_i] = pv
        values[wsp_i] = wsp
        values[op_i] = self.output_pct
        values[err_i] = pv - wsp
        values[status_i] = float(status)
        values[inverse_i] = float(~status & 0xFFFF)

    def _status(self, pv: float) -> int:
        status = 0
        if self._auto_manual:
            status |= _MANUAL
        if self._wsp_c != self.active_setpoint_c:
            status |= _RAMP_RUNNING
        if self._remote_selected and self._remote_failed:
            status |= _REMOTE_SP_FAIL
        if self._sensor_break:
            status |= _SENSOR_BREAK
        if pv > self._over_range_c:
            status |= _PV_OVER_RANGE
        if self._alarm_active:
            status |= _ALARM_1
        if self._new_alarm:
            status |= _NEW_ALARM
        return status
