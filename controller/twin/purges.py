"""The purges in a batch's record: stretches where inert gas flows into a tube that still
holds oxygen and the O2 analyser reads it falling, the record the tube's gas volume is
fitted to (``simulator.twin.purge``).

A purge starts at a row where every gas flowing is inert and the analyser reads at least
``START_PPM``, steady over the minute before (within ``STEADY_FRAC``: the replay starts
tube and analyser in equilibrium, so not while the reading still climbs after the tube
was opened); it ends where an oxidising gas flows, the flow stops, a reading is missing or
stale, or the analyser reaches the inert gas's floor. Not here: the fit.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from controller.analysis.data import BatchData
from controller.recipe.station import Station
from controller.records.columns import flow_column
from simulator.twin.purge import FLOOR_PPM, Purge, inlet_ppm

__all__ = ["START_PPM", "batch_purges"]

START_PPM: Final = 1000.0
STEADY_FRAC: Final = 0.05  # the reading's noise is 1 % (1 sigma)
_STEADY_S: Final = 60.0
_MIN_ROWS: Final = 20


def _steady(t: np.ndarray, o2: np.ndarray, k: int) -> bool:
    """The reading at row ``k`` is within ``STEADY_FRAC`` of every reading in the minute
    before it (a batch's first row counts as steady: the tube starts full of air)."""
    first = int(np.searchsorted(t, t[k] - _STEADY_S))
    before = o2[first:k + 1]
    return bool(np.all(np.abs(before - o2[k]) <= STEADY_FRAC * o2[k]))


def batch_purges(data: BatchData, station: Station, name: str) -> tuple[Purge, ...]:
    """The purges recorded in ``data`` (a batch run on ``station``, named ``name`` in what
    is said of them); none without an O2 analyser column or measured flows."""
    o2 = data.trace.get("o2_ppm")
    if o2 is None:
        return ()
    flows = [(data.trace.get(flow_column(m.gas)), inlet_ppm(m.o2_fraction)) for m in station.mfc]
    present = [(f, c) for f, c in flows if f is not None]
    if not present:
        return ()
    total = np.sum([f for f, _ in present], axis=0)
    o2_flux = np.sum([f * c for f, c in present], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        inflow_ppm = np.where(total > 0.0, o2_flux / total, np.inf)
    flags = data.text.get("flags")
    stale = (np.char.find(flags, "stale:") >= 0 if flags is not None
             else np.zeros(data.rows, dtype=np.bool_))
    washing = (np.isfinite(o2) & np.isfinite(total) & (total > 0.0)
               & (inflow_ppm < FLOOR_PPM) & ~stale)
    t = data.trace["elapsed_s"]
    found = []
    k, n = 0, data.rows
    while k < n:
        if not (washing[k] and o2[k] >= START_PPM and _steady(t, o2, k)):
            k += 1
            continue
        end = k
        while end < n and washing[end] and o2[end] >= FLOOR_PPM:
            end += 1
        if end - k >= _MIN_ROWS:
            found.append(Purge(name, t[k:end].copy(), total[k:end].copy(),
                               inflow_ppm[k:end].copy(), o2[k:end].copy()))
        k = end + 1
    return tuple(found)
