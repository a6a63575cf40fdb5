"""The live ETA of a running batch: re-predicted from the batch's present state, at every
stage boundary and every few minutes, in a separate low-priority process, never counted
down from the plan. ``EtaForecaster`` is a scan-loop observer whose work in the loop is a
non-blocking poll of a pipe; ``latest()`` is what the console and the web page read.

The child process (``multiprocessing`` spawn, ``os.nice`` 10 on POSIX, below-normal
priority on Windows) compiles the batch's frozen recipe once, then for each request runs
``predict.predict`` from the request's run state (``runstate.to_record``, the checkpoint
format) on a simulated twin whose furnace starts at the measured temperature, as
``furnace resume`` onto a simulator would, and sends back the prediction. One request is
in flight at a time; a request due while one runs waits for it and then takes the newest
state. A failed, dead or slow child never reaches the scan loop: the last forecast stays,
or, before the first, the nominal plan counted down.

Not here: the prediction itself (``predict``) or how the ETA is shown (``operator.console``;
the web page reads ``latest().to_dict()``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import sys
from collections.abc import Callable
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any, Protocol

from controller.predict import Present, predict_plan
from controller.recipe.parameters import resolve
from controller.recipe.plan import compile_plan
from controller.recipe.station import Station, load_station_text
from controller.recipe.steps import Plan
from controller.recipe.summary import PlanSummary
from controller.run.forecast import Forecast, Prediction, plan_forecast
from controller.run.handle import RecipeRunner
from controller.run.runstate import RunState, from_record, to_record
from controller.run.snapshot import Snapshot

__all__ = ["ETA_EVERY_S", "EtaForecaster", "ProcessWorker", "Worker", "fan_out",
           "predict_request"]

logger = logging.getLogger(__name__)

# Re-predict at least this often (process time), and at every stage boundary.
ETA_EVERY_S = 300.0
_NICE = 10  # POSIX niceness added in the child: the scan loop's process always comes first
_BELOW_NORMAL_PRIORITY_CLASS = 0x00004000  # Windows SetPriorityClass


class Worker(Protocol):
    """Where predictions are made: a request goes in, an answer comes out later. None of
    these calls may block (``ProcessWorker``; tests fake it)."""

    def send(self, request: dict[str, Any]) -> None:
        """Hand over one request (``predict_request``'s argument)."""

    def poll(self) -> bool:
        """True if an answer is waiting."""

    def recv(self) -> dict[str, Any]:
        """The waiting answer: ``{"ok": Prediction.to_dict()}`` or ``{"error": text}``."""

    def alive(self) -> bool:
        """False once the worker can answer no more."""

    def close(self) -> None:
        """Stop the worker now (a prediction in progress is dropped)."""


# ----------------------------------------------------------------------- the child
def _lower_priority() -> None:
    """Make this process yield the CPU to the scan loop's (best effort)."""
    try:
        if sys.platform == "win32":
            import ctypes

            kernel32 = ctypes.windll.kernel32
            kernel32.SetPriorityClass(kernel32.GetCurrentProcess(),
                                      _BELOW_NORMAL_PRIORITY_CLASS)
        elif hasattr(os, "nice"):
            os.nice(_NICE)
    except (OSError, AttributeError) as exc:  # still correct, only less polite
        logger.warning("the ETA process keeps normal priority (%s)", exc)


def compile_frozen(recipe_text: str, station_text: str) -> tuple[Plan, Station]:
    """The batch's plan and station from its frozen files' text. Raises
    ``ConfigurationError`` (cannot happen for texts a batch was started with)."""
    station = load_station_text(station_text, "station.toml")
    plan = compile_plan(resolve(recipe_text, "recipe.toml", {}), station, "recipe.toml")
    return plan, station


def predict_request(plan: Plan, station: Station, request: dict[str, Any]) -> dict[str, Any]:
    """One prediction from ``request`` (``state``: a ``to_record`` run state, ``t_s``: its
    process time, ``furnace_c``: the measured furnace temperature, ``o2_ppm``: the tube's
    O2 or None); its ``to_dict``.
    Raises whatever the prediction raises (the child turns it into an error answer)."""
    state = from_record(request["state"], plan)
    o2 = request.get("o2_ppm")
    present = Present(state, float(request["t_s"]), float(request["furnace_c"]),
                      None if o2 is None else float(o2))
    return predict_plan(plan, station, present=present).to_dict()


def _child_main(conn: Connection, recipe_text: str, station_text: str) -> None:
    """The child process: lower its priority, compile once, answer requests until the
    pipe closes or a None request arrives."""
    _lower_priority()
    plan, station = compile_frozen(recipe_text, station_text)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        try:
            answer: dict[str, Any] = {"ok": predict_request(plan, station, request)}
        except Exception as exc:  # noqa: BLE001 - an answer, never a dead child
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            conn.send(answer)
        except (OSError, BrokenPipeError):
            return


class ProcessWorker:
    """A spawned low-priority child process that makes predictions (``_child_main``).
    Started at once (spawning takes the parent milliseconds; the child's imports and
    compile happen in the child)."""

    def __init__(self, recipe_text: str, station_text: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._process = ctx.Process(target=_child_main, name="furnace-eta", daemon=True,
                                    args=(child_conn, recipe_text, station_text))
        self._process.start()
        child_conn.close()

    def send(self, request: dict[str, Any]) -> None:
        """Write the request (a few kB) to the pipe, which is empty: one request at a
        time, so this never waits for the child."""
        self._conn.send(request)

    def poll(self) -> bool:
        """True if an answer is waiting (never waits)."""
        return self._conn.poll()

    def recv(self) -> dict[str, Any]:
        """The waiting answer. Raises ``EOFError`` if the child died."""
        answer: dict[str, Any] = self._conn.recv()
        return answer

    def alive(self) -> bool:
        """True while the child runs."""
        return self._process.is_alive()

    def close(self) -> None:
        """Terminate the child (a prediction in progress is not waited for)."""
        with contextlib.suppress(OSError):
            self._conn.close()
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(timeout=2.0)


# ----------------------------------------------------------------------- the parent
class EtaForecaster:
    """Observer of a batch's scan loop that keeps its live ETA (``latest``).

    ``wall`` is the clock's wall time (real UTC on a station, a dry run's simulated time);
    ``summary`` the nominal plan, the fallback. ``worker`` makes the predictions (default:
    a ``ProcessWorker`` on the batch's frozen ``recipe_text`` and ``station_text``).
    Calling it never raises and never waits.
    """

    def __init__(self, *, summary: PlanSummary, wall: Callable[[], datetime],
                 recipe_text: str = "", station_text: str = "",
                 worker: Worker | None = None, every_s: float = ETA_EVERY_S) -> None:
        self.summary = summary
        self._wall = wall
        self.every_s = every_s
        self._worker = worker if worker is not None else ProcessWorker(recipe_text,
                                                                       station_text)
        self._forecast: Forecast | None = None
        self.prediction: Prediction | None = None
        """The last prediction that arrived (process times), or None."""
        self._asked: tuple[float, datetime] | None = None  # the request in flight
        self._last_asked_s: float | None = None
        self._stage = ""
        self._seen: tuple[RunState, str, float] | None = None
        self.failures = 0
        self._dead = False

    # -------------------------------------------------------------- read side
    def latest(self) -> Forecast:
        """The ETA now: the last prediction's, else the nominal plan counted down from the
        last scan (``Forecast.source`` says which)."""
        if self._forecast is not None:
            return self._forecast
        wall = self._wall()
        if self._seen is None:
            return plan_forecast(self.summary, RunState(), "", 0.0, wall)
        state, stage, t_s = self._seen
        return plan_forecast(self.summary, state, stage, t_s, wall)

    # ------------------------------------------------------------- the observer
    def __call__(self, snap: Snapshot, runner: RecipeRunner) -> None:
        """Per scan: take an answer if one is waiting; ask for a prediction at a stage
        boundary or when ``every_s`` has passed. Never raises into the scan loop."""
        try:
            self._observe(snap, runner)
        except Exception:  # the ETA is a convenience: the batch goes on without it
            self.failures += 1
            if self.failures == 1:
                logger.exception("ETA prediction failed; the last ETA stays")

    def _observe(self, snap: Snapshot, runner: RecipeRunner) -> None:
        self._seen = (runner.run, runner.stage_name, snap.t_s)
        if self._dead:
            return
        if self._asked is not None and self._worker.poll():
            self._take(self._worker.recv())
        if self._asked is None and not self._worker.alive():
            self._dead = True
            logger.warning("the ETA process has stopped; the last ETA stays")
            return
        if runner.is_final or snap.furnace is None:
            return
        stage = runner.stage_name
        due = (stage != self._stage or self._last_asked_s is None
               or snap.t_s - self._last_asked_s >= self.every_s)
        if due and self._asked is None:
            self._stage = stage
            self._last_asked_s = snap.t_s
            self._asked = (snap.t_s, self._wall())
            self._worker.send({"state": to_record(runner.run), "t_s": snap.t_s,
                               "furnace_c": snap.furnace_c, "o2_ppm": snap.o2_ppm})

    def _take(self, answer: dict[str, Any]) -> None:
        asked = self._asked
        self._asked = None
        if asked is None:
            return
        if "ok" not in answer:
            self.failures += 1
            logger.warning("ETA prediction failed (%s); the last ETA stays",
                           answer.get("error"))
            return
        prediction = Prediction.from_dict(answer["ok"])
        self.prediction = prediction
        self._forecast = Forecast.from_prediction(prediction, as_of_s=asked[0],
                                                  wall=asked[1])

    def close(self) -> None:
        """Stop the worker. Idempotent."""
        self._dead = True
        self._worker.close()


def fan_out(*observers: Callable[[Snapshot, RecipeRunner], None]
            ) -> Callable[[Snapshot, RecipeRunner], None]:
    """One scan-loop observer that calls each of ``observers`` in turn."""

    def observe(snap: Snapshot, runner: RecipeRunner) -> None:
        for observer in observers:
            observer(snap, runner)

    return observe
