"""One batch from start to summary: folder, frozen inputs, audit chain, trace, scan loop;
a new batch and a resumed one go through the same set-up and tear-down, each resource
registered on one ``AsyncExitStack`` with how it is released.

Not here: argument parsing and printing (``cli``), routing the scan loop's records to the
audit and the trace (``recorder``), device construction (``station_factory``), or what is
particular to a resume (``session_resume``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from controller import software_version
from controller.analysis.data import BatchData
from controller.batch_end import (
    anchor_batch,
    archive_if_configured,
    record_interrupted,
    summary_facts,
    summary_fields,
)
from controller.dry_run_world import WorldKeeper
from controller.operator.channels import channels_for
from controller.operator.lock import StaleTakeover, StationLock, lock_for_station
from controller.operator.notify import NoticeRules, Notifier
from controller.predict import scan_loop
from controller.recipe.notify_config import resolve_notify
from controller.recipe.plan import summarize
from controller.recipe.station import Station, describe_twin
from controller.recipe.steps import Plan
from controller.recorder import BatchRecorder
from controller.records.audit import AuditLog, RecordError
from controller.records.batch import (
    summary_digest,
    write_frozen,
    write_frozen_maps,
    write_summary,
)
from controller.records.columns import trace_columns
from controller.records.folder import (
    RECIPE_FILE,
    STATION_FILE,
    BatchFolder,
)
from controller.records.storage import (
    DiskReserve,
    check_free_space,
    required_free_bytes,
)
from controller.records.trace import TraceWriter
from controller.run.clock import (
    Clock,
    ClockSlowdown,
    ScaledClock,
    wait_real,
)
from controller.run.commands import CommandQueue
from controller.run.handle import RecipeRunner
from controller.run.runstate import Phase
from controller.run.scan import ScanLoop
from controller.run.snapshot import Snapshot
from controller.station_factory import Built, FaultInjector, build_devices, inject_faults

__all__ = ["BatchRecorder", "BatchResult", "BatchServer", "Serve", "Serving", "close_trace",
           "hold_reserve", "loop_and_finish", "make_runner", "open_station", "run_batch",
           "software_version"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Where the batch is and how it ended."""

    batch_dir: Path
    state: Phase
    summary: dict[str, Any]
    data: BatchData | None = None
    """The records as the summary read them back (trace arrays, the audit up to the end),
    for a caller that wants them without reading the folder again; None if the trace
    could not be read or the batch was interrupted."""


@dataclass(frozen=True, slots=True)
class Serving:
    """What a batch's server is given: the batch, its runner (read through published
    frames), the queue its commands go to, the clock, the trace's columns, and how long a
    command's reply waits for the scan cycle's verdict."""

    batch_dir: Path
    station: Station
    runner: RecipeRunner
    commands: CommandQueue
    clock: Clock
    columns: list[str]
    reply_timeout_s: float


class BatchServer(Protocol):
    """Serves a running batch (``controller.web.server.BatchWebServer``): entered before
    the scan loop starts (it yields the bound host and port), left when the loop ends. The
    scan loop calls ``observe`` each cycle and ``trace_row`` with each trace row; both
    must return at once. ``protocol`` names what it serves in the audit (``http``,
    ``opc.tcp``)."""

    @property
    def protocol(self) -> str: ...

    async def __aenter__(self) -> tuple[str, int]: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def observe(self, snap: Snapshot, runner: RecipeRunner) -> None: ...

    def trace_row(self, row: Sequence[object]) -> None: ...


Serve = Callable[[Serving], BatchServer]
"""Builds the server of a batch; the composition root (the CLI) chooses it."""


@contextlib.asynccontextmanager
async def _serving(servers: Sequence[BatchServer]
                   ) -> AsyncIterator[list[tuple[str, tuple[str, int]]]]:
    """Each server's protocol and bound address while they all serve (in order; left in
    reverse)."""
    async with AsyncExitStack() as stack:
        yield [(server.protocol, await stack.enter_async_context(server))
               for server in servers]


def _serves(serve: Serve | Sequence[Serve] | None) -> list[Serve]:
    if serve is None:
        return []
    return list(serve) if isinstance(serve, Sequence) else [serve]


@contextlib.contextmanager
def _locked(lock: StationLock | None) -> Iterator[StaleTakeover | None]:
    """Hold ``lock`` (if any) for the ``with`` block; yields a stale takeover, if one."""
    if lock is None:
        yield None
        return
    took_over = lock.acquire()
    try:
        yield took_over
    finally:
        lock.release()


@dataclass(slots=True)
class _Open:
    """A station opened for a batch: its lock, its devices (connected) and a takeover."""

    lock: StationLock | None
    built: Built
    took_over: StaleTakeover | None


async def open_station(stack: AsyncExitStack, station: Station, clock: Clock,
                        built: Built | None, source: str, plan: Plan, seed: int = 0
                        ) -> _Open:
    """Lock the station, build and connect its devices; ``stack`` releases them (devices
    closed before the lock is released). Raises ``ConfigurationError`` or
    ``StationBusyError`` before anything is written."""
    # One run per furnace: keyed on its endpoint; the in-process simulator takes none.
    lock = lock_for_station(station, source)
    took_over = stack.enter_context(_locked(lock))
    if built is None:
        built = build_devices(station, clock, seed=seed, material=plan.material)
    stack.push_async_callback(built.close)
    await built.connect(source)
    return _Open(lock, built, took_over)


def hold_reserve(stack: AsyncExitStack, batch_dir: Path) -> DiskReserve:
    """Hold the audit's disk reserve in ``batch_dir`` until ``stack`` closes, which is after
    summary.json is written (a crash's leftover is topped up, for a resume). Raises
    ``ConfigurationError`` if the disk cannot hold it."""
    reserve = DiskReserve(BatchFolder(batch_dir).audit_reserve)
    reserve.ensure()
    stack.callback(reserve.release)
    return reserve


def close_trace(trace: TraceWriter) -> None:
    """Close ``trace``; a trace that cannot be closed is left as it is (its rows so far are
    what the batch keeps)."""
    with contextlib.suppress(OSError, RecordError):
        trace.close()


def make_runner(plan: Plan, station: Station, auto_confirm: bool | None = None) -> RecipeRunner:
    """The batch's runner; a simulated station confirms operator steps itself unless
    ``auto_confirm`` says otherwise."""
    return RecipeRunner(plan, station, auto_confirm=station.is_simulated
                        if auto_confirm is None else auto_confirm)


async def run_batch(*, plan: Plan, station: Station, recipe_text: str, station_text: str,
                    clock: Clock, batches_dir: Path, operator: str, seed: int = 0,
                    station_source: str = "station",
                    observer: Callable[[Snapshot, RecipeRunner], None] | None = None,
                    built: Built | None = None, commands: CommandQueue | None = None,
                    faults: Sequence[str] = (), auto_confirm: bool | None = None,
                    serve: Serve | Sequence[Serve] | None = None) -> BatchResult:
    """Run ``plan`` on ``station`` as a batch under ``batches_dir``.

    The folder, frozen inputs and first audit record exist (fsync'd) before any device is
    written. ``built`` lets a caller (a test) keep hold of the devices and the simulated
    world; by default they are built from ``station``. ``auto_confirm`` False makes a
    simulated station wait for a person at operator steps, as a real one does (default:
    only a simulated station confirms them itself). ``serve`` builds the batch's server
    (the control API of ``furnace ctl`` and the dashboard), or several (and the OPC UA
    server); None: none. Device errors
    inside the loop are handled there; an unexpected error still leaves the outputs safe
    (the scan loop's ``finally``) and is re-raised after the audit records it.
    """
    planned = summarize(plan, station)
    check_free_space(batches_dir, required_free_bytes(
        planned.duration_s * 2, station.scan_period_s, len(trace_columns(station))))
    async with AsyncExitStack() as stack:
        opened = await open_station(stack, station, clock, built, station_source, plan, seed)
        injector = inject_faults(opened.built, faults)
        folder = BatchFolder.create(batches_dir, plan.sample_name, clock.wall())
        batch_dir = folder.path
        if opened.lock is not None:
            opened.lock.update(batch_dir=batch_dir)
        reserve = hold_reserve(stack, batch_dir)
        recipe_sha256 = write_frozen(batch_dir, RECIPE_FILE, recipe_text)
        station_sha256 = write_frozen(batch_dir, STATION_FILE, station_text)
        maps = station.maps
        write_frozen_maps(batch_dir, [(m.device, m.text) for m in maps.all()])
        t0_s = clock.now()
        audit = AuditLog.create(folder.audit_jsonl, software_version(),
                                recipe_sha256, station_sha256,
                                t_s=0.0, wall=clock.wall(), batch_id=batch_dir.name,
                                operator=operator, sample=plan.sample_name,
                                recipe=plan.recipe_name, station=station.name,
                                parameters=dict(plan.parameters), host=platform.node(),
                                simulated=station.is_simulated,
                                twin=describe_twin(station),
                                plan_notes=list(planned.notes), **maps.audit_fields())
        stack.callback(audit.close)
        trace = TraceWriter(folder.trace_csv, trace_columns(station))
        stack.callback(close_trace, trace)
        _record_start(audit, clock, 0.0, opened.took_over, injector)
        return await loop_and_finish(batch_dir=batch_dir, station=station,
                                      built=opened.built, audit=audit, trace=trace,
                                      runner=make_runner(plan, station, auto_confirm),
                                      clock=clock, t0_s=t0_s, observer=observer,
                                      commands=commands, reserve=reserve, serve=serve,
                                      keep_world_state=injector is None)


def _notifier(station: Station, runner: RecipeRunner, batch_dir: Path, clock: Clock,
              recorder: BatchRecorder) -> Notifier | None:
    """The batch's notifier, told of every audit record, if the station or the user's
    notify file says whom to tell (``notify_config.resolve_notify``); None otherwise."""
    config = resolve_notify(station.notify)
    if config is None:
        return None
    rules = NoticeRules(config, runner.plan, summarize(runner.plan, station).step_durations_s,
                        batch_id=batch_dir.name, station=station.name,
                        hold_timeout_s=station.hold.timeout_min * 60.0,
                        on_timeout=station.hold.on_timeout)
    notifier = Notifier(rules, channels_for(config), wait=wait_real)
    recorder.listeners.append(
        lambda event, t_s, fields: notifier.audit(event, t_s, fields, clock.wall()))
    return notifier


def _record_start(audit: AuditLog, clock: Clock, t_s: float, took_over: StaleTakeover | None,
                  injector: FaultInjector | None) -> None:
    if took_over is not None:
        audit.append("stale_lock_taken_over", t_s=t_s, wall=clock.wall(),
                     previous=took_over.describe())
    if injector is not None:
        audit.append("faults_scheduled", t_s=t_s, wall=clock.wall(),
                     faults=[str(s) for s in (*injector.active, *injector.pending)])


async def loop_and_finish(*, batch_dir: Path, station: Station, built: Built,
                           audit: AuditLog, trace: TraceWriter, runner: RecipeRunner,
                           clock: Clock, t0_s: float,
                           observer: Callable[[Snapshot, RecipeRunner], None] | None,
                           on_start: Callable[[Snapshot], None] | None = None,
                           prepare: Callable[[ScanLoop, BatchRecorder], Awaitable[None]]
                           | None = None, commands: CommandQueue | None = None,
                           mass0_g: float | None = None,
                           reserve: DiskReserve | None = None,
                           serve: Serve | Sequence[Serve] | None = None,
                           keep_world_state: bool = True) -> BatchResult:
    """Run the scan loop to the batch's end, then record the end and write the summary.

    Operator commands reach the loop through ``commands``, from the batch's server
    (``serve``: ``furnace ctl`` and the web page) and from the console. A dry run on the
    in-process simulator keeps its world's state at each checkpoint (``keep_world``) for a
    resume, unless ``keep_world_state`` is False (faults were injected: a resume would not
    inject them again). The caller's exit stack closes the records and the devices and
    releases the lock, whatever happens here."""
    recorder = BatchRecorder(audit, trace, clock, reserve)
    world_file = BatchFolder(batch_dir).sim_state_json
    if built.world is not None and keep_world_state:
        recorder.listeners.append(WorldKeeper(built.world, world_file))
    commands = commands if commands is not None else CommandQueue()

    serving = Serving(batch_dir, station, runner, commands, clock, trace_columns(station),
                      max(5.0, 3 * station.scan_period_s))
    servers = [make(serving) for make in _serves(serve)]
    if servers:

        def on_row(row: Sequence[object]) -> None:
            for server in servers:
                server.trace_row(row)

        recorder.on_row = on_row

    notifier = _notifier(station, runner, batch_dir, clock, recorder)
    try:

        def observe(snap: Snapshot, r: RecipeRunner) -> None:
            recorder.observe(snap)
            for server in servers:
                server.observe(snap, r)
            if notifier is not None:
                notifier.observe(snap.t_s, clock.real_s(), clock.wall())
            if observer is not None:
                observer(snap, r)

        # the same loop as a prediction's (``predict.scan_loop``): plan and dry run agree
        loop = scan_loop(station=station, runner=runner, built=built, clock=clock,
                         recorder=recorder, observer=observe, t0_s=t0_s, on_start=on_start,
                         commands=commands, mass0_g=mass0_g,
                         align_to_pv=on_start is not None)
        commands.state = lambda: str(loop.runner.phase)
        if isinstance(clock, ScaledClock):  # a scaled clock that slows itself says so here
            told = clock.on_slowdown

            def on_slowdown(ev: ClockSlowdown) -> None:
                recorder.audit(f"clock_{ev.kind}", ev.t_s - t0_s, {
                    "requested_speed": ev.requested_speed, "speed": ev.speed,
                    "not_simulated_s": ev.skipped_s,
                    "action": "process time waited for the scan loop, so the setpoints never "
                              "ran ahead of what the instrument could follow"})
                if told is not None:
                    told(ev)

            clock.on_slowdown = on_slowdown
        try:
            async with _serving(servers) as addresses:
                for protocol, (host, port) in addresses:
                    recorder.audit("control_server", clock.now() - t0_s, {
                        "host": host, "port": port, "protocol": protocol})
                if prepare is not None:
                    await prepare(loop, recorder)
                state = await loop.run()
        except BaseException as exc:
            with contextlib.suppress(RecordError):  # the audit itself may be what failed
                recorder.audit("supervisor_error", clock.now() - t0_s,
                               {"error": type(exc).__name__, "detail": str(exc)})
            raise
        trace_fields = recorder.sync_trace()
        close_trace(trace)
        actual_s = clock.now() - t0_s
        summary = summary_fields(batch_dir, runner.plan, summarize(runner.plan, station), runner,
                           actual_s, loop.cycles)
        facts, data = summary_facts(batch_dir, runner, station, clock)
        summary.update(facts)
        summary["outcome"] = summary["end"]["kind"]  # a stop is not an abort (issue 11)
        if runner.run.interrupted:
            record_interrupted(batch_dir, recorder, runner, summary, actual_s)
            return BatchResult(batch_dir, state, summary)
        # Every field of the summary is bound to the chain by its digest, and the whole
        # trace by its hash (furnace verify checks both).
        recorder.audit("batch_ended", actual_s, {
            "outcome": summary["outcome"], "end_reason": runner.run.end_reason,
            "summary_sha256": summary_digest(summary), **trace_fields})
        summary["audit_final_hash"] = audit.final_hash
        summary["audit_records"] = audit.count
        audit.close()
        write_summary(batch_dir, summary)
        world_file.unlink(missing_ok=True)  # the batch has ended: nothing to resume
        anchor_batch(batch_dir, station, audit, clock)
        archive_if_configured(batch_dir, station)
        logger.info("batch %s %s", batch_dir.name, summary["outcome"])
        return BatchResult(batch_dir, state, summary, data)
    finally:
        if notifier is not None:  # the last notices (the end) get their chance to go
            await asyncio.to_thread(notifier.close)
