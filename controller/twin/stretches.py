"""The stretches of a batch's trace a twin may be fitted to, and what was left out and why.

A row counts when the furnace's working setpoint, PV and output were all read, the setpoint
and output are inside what the furnace and its heater can be (a corrupt cell is not a
setpoint), and the PV is believable: not stale (``stale:furnace``: the instrument did not
answer, an outage), not a one-sample spike (``pv_spike``), and inside what the furnace can
be (a broken thermocouple reads upscale, far above the furnace's maximum; a shorted one
reads the room; no furnace jumps tens of kelvin between two rows). A gap in time (the PC
stopped, a resume) ends a stretch. Stretches too short to fit are left out. A boat
thermocouple reading what no furnace can be is not used for the boat's lag (its rows still
pin the furnace).

Not here: the fit (``simulator.twin.fit``, through ``controller.twin.fitting``) or deciding
whether the whole is enough (``fitting``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from controller.analysis.data import BatchData, load_batch
from controller.analysis.series import FloatArray
from controller.recipe.station import Station
from controller.records.folder import BatchFolder
from controller.text import hms, span
from controller.twin.purges import batch_purges
from simulator.twin.purge import Purge
from simulator.twin.replay import Stretch

__all__ = ["MIN_STRETCH_S", "BatchStretches", "batch_stretches"]

MIN_STRETCH_S: Final = 20 * 60.0
"""A stretch shorter than this is left out: its first minutes go to the warm-up."""
_GAP_PERIODS: Final = 3.0
"""Rows further apart than this many scan periods (and 10 s) are a gap."""
_RANGE_MARGIN_K: Final = 30.0
"""A PV further than this below the room or above the furnace's maximum is not believed."""
_JUMP_K: Final = 25.0
"""A PV step larger than this from one row to the next is not heat: a furnace core of
kilojoules per kelvin moves a few kelvin a minute at full power."""

BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class BatchStretches:
    """One batch: its usable stretches, the frozen station it ran on, and one line per
    stretch left out (batch, times, why)."""

    batch: str
    station: Station
    stretches: tuple[Stretch, ...]
    excluded: tuple[str, ...]
    purges: tuple[Purge, ...] = ()
    """Its purges of air with an O2 reading (``purges``), for the tube's gas volume."""
    batch_id: str = ""
    """The id its audit chain was created with (``batch_created``): the same for a copy of
    the folder under another name."""

    @property
    def used_s(self) -> float:
        """Time in the usable stretches, s."""
        return sum(s.duration_s for s in self.stretches)


def _flags(data: BatchData) -> NDArray[np.str_]:
    text = data.text.get("flags")
    if text is not None:
        return text
    return np.full(data.rows, "", dtype=np.str_)  # never a flag: read as an empty number


def _believable_c(station: Station) -> tuple[float, float]:
    """The temperatures a thermocouple of ``station``'s furnace can read, °C."""
    return (station.envelope.ambient_c - _RANGE_MARGIN_K,
            station.envelope.max_temperature_c + _RANGE_MARGIN_K)


def _why_bad(data: BatchData, station: Station) -> tuple[NDArray[np.int8], tuple[str, ...]]:
    """Per row, 0 if it counts, else 1 + the index of the first reason it does not."""
    t = data.trace
    pv, wsp, out = t["furnace_c"], t["working_setpoint_c"], t["output_pct"]
    flags = _flags(data)
    lo_c, hi_c = _believable_c(station)
    reasons: tuple[tuple[str, BoolArray], ...] = (
        ("furnace not read (stale: no answer, an outage?)",
         np.char.find(flags, "stale:furnace") >= 0),
        ("furnace setpoint, PV or output missing",
         ~(np.isfinite(pv) & np.isfinite(wsp) & np.isfinite(out))),
        (f"furnace PV outside {lo_c:g}..{hi_c:g} °C (a broken or shorted thermocouple?)",
         ~((pv >= lo_c) & (pv <= hi_c))),
        (f"furnace working setpoint outside {lo_c:g}..{hi_c:g} °C",
         ~((wsp >= lo_c) & (wsp <= hi_c))),
        ("furnace output outside 0..100 % (the twin's heater is 0-100 %)",
         ~((out >= 0.0) & (out <= 100.0))),
        ("PV spike", np.char.find(flags, "pv_spike") >= 0),
        (f"furnace PV jumped more than {_JUMP_K:g} K from one row to the next",
         np.abs(np.diff(pv, prepend=pv[:1])) > _JUMP_K),
    )
    code = np.zeros(data.rows, dtype=np.int8)
    for i, (_, bad) in enumerate(reversed(reasons)):
        code[bad] = len(reasons) - i
    return code, tuple(r for r, _ in reasons)


def _believed_boat(data: BatchData, station: Station, name: str,
                   excluded: list[tuple[float, str]]) -> FloatArray | None:
    """The boat thermocouple's column, NaN where it reads what no furnace can be (broken or
    shorted: its rows still pin the furnace, not the boat's lag); a line for each such run
    into ``excluded``. None if the trace has no boat."""
    sample = data.trace.get("sample_c")
    if sample is None:
        return None
    lo_c, hi_c = _believable_c(station)
    wrong = np.isfinite(sample) & ~((sample >= lo_c) & (sample <= hi_c))
    t = data.trace["elapsed_s"]
    for a, b in _runs(wrong):
        excluded.append((float(t[a]), f"{name}: {hms(t[a])}-{hms(t[b - 1])} excluded: boat "
                         f"thermocouple outside {lo_c:g}..{hi_c:g} °C (a broken or shorted "
                         "thermocouple?): not used for the boat's lag"))
    return np.where(wrong, np.nan, sample)


def _runs(mask: BoolArray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def batch_stretches(batch_dir: Path) -> BatchStretches:
    """Read ``batch_dir`` and cut its trace into usable stretches. Raises
    ``ConfigurationError`` (one line naming the file) for a folder that is not a batch."""
    data = load_batch(batch_dir)
    station, _ = BatchFolder.open(batch_dir).read_station()
    name = data.batch_dir.resolve().name  # "." is the folder it is
    t = data.trace["elapsed_s"]
    code, reasons = _why_bad(data, station)
    gap_s = max(10.0, _GAP_PERIODS * station.scan_period_s)
    gaps = np.flatnonzero(np.diff(t) > gap_s)  # a gap after row i
    excluded = [(float(t[g]), f"{name}: {hms(t[g])}-{hms(t[g + 1])} excluded: no rows for "
                 f"{span(t[g + 1] - t[g])} (the recording stopped: a resume, a stopped PC?)")
                for g in gaps]
    for a, b in _runs(code > 0):
        why = reasons[int(np.bincount(code[a:b]).argmax()) - 1]
        excluded.append((float(t[a]), f"{name}: {hms(t[a])}-{hms(t[b - 1])} excluded: {why}"))
    good = code == 0
    breaks = np.zeros(data.rows, dtype=np.bool_)
    breaks[gaps + 1] = True  # a new stretch starts after each gap
    sample = _believed_boat(data, station, name, excluded)
    stretches = []
    for a, b in _runs(good):
        cuts = [a, *(int(i) for i in np.flatnonzero(breaks[a + 1:b]) + a + 1), b]
        for lo, hi in zip(cuts, cuts[1:], strict=False):
            if hi - lo < 2 or t[hi - 1] - t[lo] < MIN_STRETCH_S:
                if hi > lo:
                    excluded.append((float(t[lo]), f"{name}: {hms(t[lo])}-{hms(t[hi - 1])} "
                                     f"excluded: under {span(MIN_STRETCH_S)} of usable rows "
                                     "in a row"))
                continue
            boat = (sample[lo:hi] if sample is not None
                    else np.full(hi - lo, np.nan))
            stretches.append(Stretch(
                name, t[lo:hi].copy(), data.trace["working_setpoint_c"][lo:hi].copy(),
                data.trace["furnace_c"][lo:hi].copy(), data.trace["output_pct"][lo:hi].copy(),
                np.asarray(boat, dtype=np.float64).copy(), station.envelope.ambient_c))
    return BatchStretches(name, station, tuple(stretches),
                          tuple(text for _, text in sorted(excluded)),
                          batch_purges(data, station, name), data.batch_id)
