"""Finished (and running) batches under a folder, for the web pages: the list, one batch's
summary and report figure, and the overlay of several batches' TGA curves (mass % against
temperature) as JSON for the page and as CSV to download.

Reads batch folders only (``controller.records``, ``controller.analysis``); blocking file
I/O, so the web app calls it from its worker threads. Not here: the routes (``app``).
"""

from __future__ import annotations

import csv
import io
import logging
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from controller.analysis.data import BatchData, load_batch
from controller.records.folder import AUDIT_FILE, BatchFolder
from drivers.errors import ConfigurationError

__all__ = ["BatchShelf", "OVERLAY_POINTS"]

logger = logging.getLogger(__name__)

OVERLAY_POINTS = 1500  # per batch on the page; the CSV has every row
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,120}$")


class BatchShelf:
    """The batch folders directly under ``root``, and with ``archive`` (a database URL,
    ``furnace web --db``) the archived batches too: those whose folder is not here are
    listed from the archive, and their summary is the archived one."""

    def __init__(self, root: Path, cache_dir: Path, archive: str | None = None) -> None:
        self.root = root
        self.cache_dir = cache_dir
        self.archive = archive
        self._engine: Any = None
        self._report_lock = threading.Lock()  # matplotlib figures one at a time

    def _archive_engine(self) -> Any:
        if self._engine is None:
            from controller.archive.db import connect  # SQLAlchemy only with --db

            self._engine = connect(self.archive)
        return self._engine

    def _archived(self) -> list[dict[str, Any]]:
        """The archive's batches, as ``batches`` lists them (newest first)."""
        from controller.archive.query import list_batches

        with self._archive_engine().connect() as connection:
            rows = list_batches(connection)
        return [{"id": r["batch_id"], "sample": r["sample"], "recipe": r["recipe"],
                 "outcome": r["outcome"], "planned_s": None, "actual_s": r["actual_s"],
                 "running": False, "archived": True, "station": r["station"],
                 "yield_loaded_pct": r["yield_loaded_pct"],
                 "yield_precursor_pct": r["yield_precursor_pct"]} for r in rows]

    def _archived_summary(self, batch_id: str) -> dict[str, Any]:
        from controller.archive.query import find_batch

        with self._archive_engine().connect() as connection:
            row = find_batch(connection, batch_id)
        if row is None or row["batch_id"] != batch_id:
            raise KeyError(batch_id)
        summary: dict[str, Any] = row["summary"]
        return summary

    def folder(self, batch_id: str) -> Path:
        """The folder of ``batch_id``. Raises ``KeyError`` for anything but the name of a
        batch folder directly under the root (no paths, no ``..``)."""
        if not _ID.match(batch_id) or ".." in batch_id:
            raise KeyError(batch_id)
        path = self.root / batch_id
        if not (path / AUDIT_FILE).is_file():
            raise KeyError(batch_id)
        return path

    def batches(self) -> list[dict[str, Any]]:
        """Every batch under the root, newest first: id, sample, recipe, outcome, start,
        planned and actual seconds (None while running or interrupted)."""
        rows: list[dict[str, Any]] = []
        folders = sorted(self.root.iterdir(), reverse=True) if self.root.is_dir() else []
        for path in folders:
            if not (path / AUDIT_FILE).is_file():
                continue
            try:
                summary = BatchFolder.open(path, needs=()).read_summary() or {}
            except ConfigurationError:
                summary = {}
            rows.append({"id": path.name, "sample": summary.get("sample", ""),
                         "recipe": summary.get("recipe", ""),
                         "outcome": summary.get("outcome", "running or interrupted"),
                         "planned_s": summary.get("planned_s"),
                         "actual_s": summary.get("actual_s"),
                         "running": (path / "control.json").exists()})
        if self.archive is not None:
            here = {r["id"] for r in rows}
            rows += [r for r in self._archived() if r["id"] not in here]
        return rows

    def summary(self, batch_id: str) -> dict[str, Any] | None:
        """summary.json of ``batch_id`` (None while it runs); an archived batch whose folder
        is not here: its archived summary. Raises ``KeyError``."""
        try:
            folder = self.folder(batch_id)
        except KeyError:
            if self.archive is None or not _ID.match(batch_id):
                raise
            return self._archived_summary(batch_id)
        return BatchFolder.open(folder, needs=()).read_summary()

    def report_png(self, batch_id: str) -> Path:
        """report.png of ``batch_id``, drawn into the server's cache (never into the batch
        folder) and redrawn when the trace has grown. Raises ``KeyError``,
        ``ConfigurationError`` for a batch that cannot be read."""
        folder = self.folder(batch_id)
        trace = folder / "trace.csv"
        stamp = trace.stat().st_mtime_ns if trace.exists() else 0
        path = self.cache_dir / f"{batch_id}-{stamp}.png"
        with self._report_lock:
            if not path.exists():
                from controller.analysis.events import analyse
                from controller.analysis.report import write_report_png

                data = load_batch(folder)
                write_report_png(data, analyse(data), path)
        return path

    # ------------------------------------------------------------------ overlay
    def _tga(self, batch_id: str
             ) -> tuple[BatchData, NDArray[np.float64], NDArray[np.float64], str]:
        data = load_batch(self.folder(batch_id))
        mass = data.channel("mass_pct")
        if mass is None:
            raise ConfigurationError("has no mass % (no balance on its station)",
                                     source=batch_id)
        temp_name = "sample_c" if data.channel("sample_c") is not None else "furnace_c"
        temp = data.trace[temp_name]
        ok = np.isfinite(mass) & np.isfinite(temp)
        return data, temp[ok], mass[ok], temp_name

    def overlay(self, batch_ids: list[str]) -> dict[str, Any]:
        """Each batch's mass % against temperature, thinned to ``OVERLAY_POINTS``. A batch
        that cannot be drawn is listed under ``skipped`` with the reason."""
        series: list[dict[str, Any]] = []
        skipped: list[dict[str, str]] = []
        for batch_id in batch_ids:
            try:
                data, temp, mass, temp_name = self._tga(batch_id)
            except (KeyError, ConfigurationError) as exc:
                skipped.append({"id": batch_id, "reason": str(exc).strip("'")})
                continue
            step = max(len(temp) // OVERLAY_POINTS, 1)
            series.append({"id": batch_id, "sample": data.sample, "temperature": temp_name,
                           "temperature_c": [round(float(x), 2) for x in temp[::step]],
                           "mass_pct": [round(float(y), 3) for y in mass[::step]]})
        return {"series": series, "skipped": skipped}

    def overlay_csv(self, batch_ids: list[str]) -> str:
        """Every row of each batch: batch_id, sample, elapsed_s, temperature_c,
        temperature_channel, mass_pct (the overlay's data, for Excel or Origin)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["batch_id", "sample", "elapsed_s", "temperature_c",
                         "temperature_channel", "mass_pct"])
        for batch_id in batch_ids:
            try:
                data = load_batch(self.folder(batch_id))
            except (KeyError, ConfigurationError):
                continue
            mass = data.channel("mass_pct")
            if mass is None:
                continue
            temp_name = "sample_c" if data.channel("sample_c") is not None else "furnace_c"
            temp, t_s = data.trace[temp_name], data.trace["elapsed_s"]
            for t, x, y in zip(t_s, temp, mass, strict=True):
                if np.isfinite(x) and np.isfinite(y):
                    writer.writerow([batch_id, data.sample, f"{t:g}", f"{x:.3f}", temp_name,
                                     f"{y:.4f}"])
        return out.getvalue()
