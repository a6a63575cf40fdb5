"""A dry run's simulated world kept beside its checkpoints and put back on resume
(decision 0018): the world's state as JSON in the batch folder's ``sim_state.json``, and
the checks a kept state passes before a resumed dry run goes on with it.

Part of the composition root (it picks the simulator, as ``station_factory`` does). Not here:
the state's contents (``simulator.state``) or when a resume happens (``session``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from dataclasses import fields
from pathlib import Path
from typing import Final

from controller.recipe.station import Station
from controller.recipe.steps import Material
from controller.station_factory import sim_spec
from simulator import SimWorld
from simulator.state import StateError, capture, restore

__all__ = ["WorldKeeper", "keep_world", "kept_world"]

logger = logging.getLogger(__name__)


def keep_world(world: SimWorld, t_s: float, path: Path) -> None:
    """Write ``world``'s state at process time ``t_s`` to ``path`` for a resume, replacing
    it whole (written beside it, then renamed). Not fsync'd: it is no record, and a state
    lost with the machine's power only makes the resumed world start afresh. Raises
    ``OSError`` if it cannot be written (nothing is left beside it then)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(capture(world, t_s), separators=(",", ":")),
                       encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


class WorldKeeper:
    """An audit listener (``BatchRecorder.listeners``) that keeps a dry run's world in
    ``path`` at each checkpoint (``keep_world``). A write that fails (a full disk, a
    folder it may not write in) costs only the resume's world: it is said once, in one
    line, and tried again at the next checkpoint; the batch goes on."""

    def __init__(self, world: SimWorld, path: Path) -> None:
        self.world = world
        self.path = path
        self.failed = ""  # why the last write failed ("" once one succeeds)

    def __call__(self, event: str, t_s: float, fields: object) -> None:
        if event != "checkpoint":
            return
        try:
            keep_world(self.world, t_s, self.path)
        except OSError as exc:
            if not self.failed:
                logger.warning("%s not written (%s): a resume would start the simulated "
                               "world afresh", self.path, exc.strerror or exc)
            self.failed = str(exc)
            return
        self.failed = ""


_TRIAL_S: Final = 60.0  # how long a kept world is tried alone before it is used


def kept_world(station: Station, material: Material | None, path: Path,
               not_after_s: float = math.inf) -> tuple[SimWorld | None, str]:
    """The in-process simulated world a dry run kept in ``path`` (``keep_world``), rebuilt
    for ``station`` and ``material`` and put back as it was, and one line saying what was
    done; ``None`` (the world then starts afresh, as a real furnace left alone would not)
    if there is none or it does not fit: unreadable, of another software or station, kept
    after ``not_after_s`` (the batch's last record: another batch's), or a world that
    cannot go on (a copy of it is first left alone for a minute: a hand-edited value that
    would break the physics mid-batch is found here). Never raises: the file is no record,
    and no file is worth the batch."""
    if not path.is_file():
        return None, f"no {path.name}: the simulated world starts afresh (cold, in air)"
    spec = sim_spec(station, material)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        world = SimWorld(spec)
        t_s = restore(world, state)
        if t_s > not_after_s:
            raise StateError(f"kept at {t_s:.0f} s, after the batch's last record at "
                             f"{not_after_s:.0f} s: another batch's")
        trial = SimWorld(spec)
        restore(trial, state)
        trial.advance_to(t_s + _TRIAL_S)
        truth = trial.truth()
        values = [getattr(truth, f.name) for f in fields(truth)]
        if not all(math.isfinite(v) for v in (*values, *truth.flows_sccm.values())
                   if isinstance(v, float)):
            raise StateError("the world it holds does not go on (a value is not a number)")
    except Exception as exc:  # noqa: BLE001 - the file is no record: start afresh
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        logger.warning("%s cannot be used (%s): the simulated world starts afresh", path,
                       reason)
        return None, f"{path.name} not used ({reason}): the simulated world starts afresh"
    return world, f"the simulated world as it was at {t_s:.0f} s ({path.name})"
