"""``furnace sweep``'s table, sweep.csv: one row per variant in grid order (its swept
parameters, outcome, duration, gas per gas, exotherm peak, yields, interlock trips and
alarms, wall time and batch folder), replaced whole so a reader never sees half of it.

Not here: running the variants (``sweep``) or printing the table (``cli_sweep``).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from controller.sweep import VariantResult, parameter_cells

__all__ = ["csv_header", "csv_row", "write_csv"]


def csv_header(names: Sequence[str], gases: Sequence[str]) -> list[str]:
    """sweep.csv's columns: the swept parameters, then one of each per variant."""
    return ["variant", *names, "sample", "outcome", "end_reason", "duration_h",
            *(f"gas_{g}_l" for g in gases), "exotherm_peak_c", "exotherm_delta_t_c",
            "yield_loaded_pct", "yield_precursor_pct", "interlock_trips", "alarms",
            "wall_s", "batch_dir"]


def _cell(value: object, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}" if isinstance(value, float) \
        else str(value)


def csv_row(result: VariantResult, names: Sequence[str], gases: Sequence[str]
            ) -> list[str]:
    """One variant's row of sweep.csv (empty cells for what it does not have)."""
    summary, c = result.summary or {}, result.compared
    actual_s = summary.get("actual_s")
    gas = summary.get("gas_used_l") or {}
    numbers = (None,) * 4 if c is None else (c.exotherm_c, c.exotherm_delta_t_c,
                                             c.yield_loaded_pct, c.yield_precursor_pct)
    return [str(result.job.index + 1), *parameter_cells(result.job, names),
            str(summary.get("sample", "")), result.outcome, result.reason,
            _cell(None if actual_s is None else float(actual_s) / 3600.0, 4),
            *(_cell(None if gas.get(g) is None else float(gas[g]), 3) for g in gases),
            *(_cell(v, 2) for v in numbers),
            _cell(result.interlock_trips, 0), _cell(result.alarms, 0),
            _cell(result.wall_s, 2), result.batch_dir or ""]


def write_csv(path: Path, names: Sequence[str], gases: Sequence[str],
              results: Sequence[VariantResult]) -> Path:
    """Write sweep.csv, one row per variant in grid order (replaced whole, through a
    temporary file, so a reader never sees half a table). Raises ``OSError``."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(csv_header(names, gases))
        writer.writerows(csv_row(r, names, gases)
                         for r in sorted(results, key=lambda r: r.job.index))
    os.replace(tmp, path)
    return path
