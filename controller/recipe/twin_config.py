"""The ``[twin]`` section of a station file: the physical parameters of the station's own
furnace for the simulator to play (issue 16), each defaulting to the built-in furnace and
held inside bounds that keep it physical, and ``[twin.fit]``, what ``furnace twin fit``
records of how it estimated them; and which twin a station plays, in a line for people
(``describe_twin``) and as the tube the simulator fills (``simulated_tube_volume_l``).

Not here: the simulator's own form of them (``simulator.twin.TwinParams``, built from
``TwinSection.params`` by the composition root) or the fit itself.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from controller.recipe.validation import FieldRuleError
from controller.text import printable_line

if TYPE_CHECKING:  # the station holds its [twin]: only its type is named here
    from controller.recipe.station import Station

__all__ = ["MIN_CORE_TAU_S", "TUBE_VOLUME_BOUNDS_L", "TwinFitRecord", "TwinSection",
           "describe_twin", "simulated_tube_volume_l", "twin_bounds"]

_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
# A batch folder's name is at most 255 characters (a file name on ext4, NTFS, APFS); a note
# on a stretch left out is that name, its times and why (``controller.twin.stretches``).
BatchName = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(printable_line)]
Note = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(printable_line)]
NonNegative = Annotated[float, Field(ge=0)]
#: The fastest the furnace core may move: its time constant against its losses at the
#: hottest any station may be. The simulator steps the core in 0.5 s and a fit's replay in
#: 2 s, by explicit Euler, which diverges for a step over twice the time constant; a tube
#: furnace's core moves over minutes.
MIN_CORE_TAU_S: Final = 5.0
_HOTTEST_K: Final = 1820.0 + 273.15  # the top of Type B's range (station.MAX_TEMPERATURE_C)


TUBE_VOLUME_BOUNDS_L: Final = (0.02, 200.0)
"""A tube's gas volume, L: from a 20 mm quartz tube's hot zone to a box furnace's retort."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _utc(value: str) -> str:
    """ISO-8601 UTC to the second or finer, ending in Z: ``2026-12-01T21:30:00Z``."""
    try:
        if _UTC.fullmatch(value):
            datetime.fromisoformat(value)
            return value
    except ValueError:
        pass
    raise ValueError("must be a UTC time like 2026-12-01T21:30:00Z")


class TwinFitRecord(_Model):
    """``[twin.fit]``: when and from which batches ``furnace twin fit`` estimated the
    twin, how well each batch replays through it and how uncertain each parameter is."""

    fitted_utc: Annotated[str, AfterValidator(_utc)]
    batches: Annotated[tuple[BatchName, ...], Field(min_length=1)]  # batch folder names
    rms_k: tuple[NonNegative, ...]  # replay RMS error of the furnace temperature, per batch
    one_sigma: dict[str, NonNegative]  # 1-sigma uncertainty per fitted parameter
    excluded: tuple[Note, ...] = ()  # one text per stretch of a batch left out of the fit

    @model_validator(mode="after")
    def _consistent(self) -> TwinFitRecord:
        if len(self.rms_k) != len(self.batches):
            raise FieldRuleError("rms_k", f"{len(self.rms_k)} values for "
                                          f"{len(self.batches)} batches: one per batch")
        known = twin_bounds()
        for name in self.one_sigma:
            if name not in known:
                raise FieldRuleError(f"one_sigma.{name}", "not a twin parameter (one of: "
                                                          f"{', '.join(known)})")
        return self


class TwinSection(_Model):
    """``[twin]``: the furnace as the simulator plays it. Each value defaults to the
    built-in furnace (a test holds them equal to ``simulator.twin.TwinParams``), so a
    section that states only the defaults is the built-in simulator, bit for bit.

    ``C·dT/dt = u·P_max − G·(T − Ta) − k_r·(T_K⁴ − Ta_K⁴)``; the control thermocouple lags
    the core by ``tc_tau_s``, the boat lags it by ``sample_tau_s``; ``u`` is the
    instrument's PID output, clamped to ``output_low_pct``..``output_high_pct``.
    """

    heat_capacity_j_per_k: Annotated[float, Field(ge=100.0, le=1e6)] = 3.8e3  # C
    max_power_w: Annotated[float, Field(ge=100.0, le=1e5)] = 4.0e3  # P_max
    conductance_w_per_k: Annotated[float, Field(ge=0.0, le=100.0)] = 0.76  # G
    radiation_w_per_k4: Annotated[float, Field(ge=0.0, le=1e-8)] = 9.75e-11  # k_r
    tc_tau_s: Annotated[float, Field(ge=1.0, le=1800.0)] = 60.0
    sample_tau_s: Annotated[float, Field(ge=5.0, le=3600.0)] = 120.0
    proportional_band_c: Annotated[float, Field(ge=0.5, le=999.0)] = 20.0
    integral_time_s: Annotated[float, Field(ge=0.0, le=9999.0)] = 300.0  # 0: off
    derivative_time_s: Annotated[float, Field(ge=0.0, le=9999.0)] = 50.0  # 0: off
    output_low_pct: Annotated[float, Field(ge=0.0, le=100.0)] = 0.0
    output_high_pct: Annotated[float, Field(ge=0.0, le=100.0)] = 100.0
    # The tube's gas volume as the simulator plays it (None: the [envelope]'s, which the
    # controller plans its purges with): a tube that holds more than the station says
    # shows in a dry run as a purge that ends short of its target.
    tube_volume_l: Annotated[float | None, Field(ge=TUBE_VOLUME_BOUNDS_L[0],
                                                 le=TUBE_VOLUME_BOUNDS_L[1])] = None
    fit: TwinFitRecord | None = None  # None: set by hand, not fitted

    @model_validator(mode="after")
    def _output_limits_ordered(self) -> TwinSection:
        if not self.output_low_pct < self.output_high_pct:
            raise FieldRuleError("output_low_pct", f"{self.output_low_pct:g} % is not below "
                                                   f"output_high_pct "
                                                   f"({self.output_high_pct:g} %)")
        return self

    @model_validator(mode="after")
    def _core_steppable(self) -> TwinSection:
        # d(loss)/dT = G + 4·k_r·T_K³: the core's time constant is C over it.
        loss_w_per_k = self.conductance_w_per_k + 4.0 * self.radiation_w_per_k4 * _HOTTEST_K**3
        tau_s = self.heat_capacity_j_per_k / loss_w_per_k
        if tau_s < MIN_CORE_TAU_S:
            raise FieldRuleError("heat_capacity_j_per_k", (
                f"{self.heat_capacity_j_per_k:g} J/K against losses of {loss_w_per_k:.3g} W/K "
                f"at {_HOTTEST_K - 273.15:g} °C is a core time constant of {tau_s:.2g} s, "
                f"under {MIN_CORE_TAU_S:g} s: no furnace moves so fast, and the simulator "
                "cannot step it (a heavier core or smaller losses)"))
        return self

    def params(self) -> dict[str, float]:
        """The eleven physical values by name (``simulator.twin.TwinParams``' fields)."""
        return {name: float(getattr(self, name)) for name in _PARAMETERS}


#: The simulator's furnace parameters (``TwinParams``): every field but the tube's volume
#: (which the station's envelope gives unless the twin does) and ``fit``.
_PARAMETERS: Final = tuple(name for name in TwinSection.model_fields
                           if name not in ("fit", "tube_volume_l"))


def twin_bounds() -> dict[str, tuple[float, float]]:
    """Each twin parameter's physical bounds, ``name -> (lo, hi)``, inclusive: read off
    ``TwinSection``'s field constraints, so a fit and a station file agree on them."""
    bounds: dict[str, tuple[float, float]] = {}
    for name in (*_PARAMETERS, "tube_volume_l"):
        rules = TwinSection.model_fields[name].metadata  # annotated_types' Ge and Le
        lo = next(float(r.ge) for r in rules if hasattr(r, "ge"))
        hi = next(float(r.le) for r in rules if hasattr(r, "le"))
        bounds[name] = (lo, hi)
    return bounds


def describe_twin(station: Station) -> str:
    """Which twin simulates ``station`` (dry runs, ``furnace plan``, the ETA), in one line
    without the leading "twin: ": the built-in furnace, one set by hand, or one fitted."""
    twin = station.twin
    if twin is None:
        return "the built-in furnace model (not fitted to this station)"
    fit = twin.fit
    if fit is None:
        return "set by hand in the station file (not fitted)"
    n = len(fit.batches)
    names = ", ".join(fit.batches[:4]) + (f", ... and {n - 4} more" if n > 4 else "")
    lo, hi = f"{min(fit.rms_k):.1f}", f"{max(fit.rms_k):.1f}"
    rms = lo if lo == hi else f"{lo}-{hi}"
    return (f"fitted {fit.fitted_utc} from {n} batch{'es' if n != 1 else ''} ({names}), "
            f"replay error {rms} K RMS")


def simulated_tube_volume_l(station: Station) -> float:
    """The tube's gas volume the simulator plays, L: the ``[twin]``'s if it gives one (a
    fitted or measured tube), else the ``[envelope]``'s (what the controller plans with)."""
    twin = station.twin
    if twin is not None and twin.tube_volume_l is not None:
        return twin.tube_volume_l
    return station.envelope.tube_volume_l
