"""Operator commands as data: the ``Command`` value, its validation, and the queue the
scan cycle drains at the start of each cycle.

Not here: deciding what a command does (the runner), where commands come from (keys,
Ctrl-C and signals in ``controller/operator/keys.py``; ``furnace ctl`` through the control
server in ``controller/operator/control.py``). Nothing here touches a device or blocks.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal, Protocol

from controller.errors import RunStateError, StepDataError
from controller.run.runstate import Phase
from controller.text import unsafe_char
from drivers.errors import ConfigurationError

__all__ = [
    "NEEDS_REASON",
    "PROCESS_TRIGGERS",
    "SOURCES",
    "STARTING",
    "TRIGGERS",
    "Command",
    "CommandQueue",
    "CommandResult",
    "Commandable",
    "Source",
    "Status",
    "Trigger",
    "apply_command",
]

Trigger = Literal["hold", "resume", "stop", "abort", "confirm", "halt"]
Source = Literal["ctl", "keys", "ctrl-c", "signal", "opcua"]
# What an operator may send (``furnace ctl``, keys, Ctrl-C).
TRIGGERS: Final = ("hold", "resume", "stop", "abort", "confirm")
# What only the controller itself posts: ``halt`` (source ``signal``) when the process is
# told to end (SIGTERM, SIGHUP, SIGBREAK): the batch ends faulted, the heat left to the
# instrument's own fallback, through the same queue, validation and audit as the rest.
PROCESS_TRIGGERS: Final = ("halt",)
# ``opcua``: a method called on the station's OPC UA server (its audit records say so).
SOURCES: Final = ("ctl", "keys", "ctrl-c", "signal", "opcua")
# Anything that changes the recipe's course needs a reason (faults.md O3). A hold only
# pauses it and a confirmation answers the recipe's own question; both may omit one.
NEEDS_REASON: Final = frozenset({"resume", "stop", "abort", "halt"})
# The state each trigger leads to: sending it again there is a duplicate, not an error (O7).
_ALREADY: Final[dict[str, str]] = {"hold": Phase.HELD, "resume": Phase.RUNNING,
                                   "stop": Phase.STOPPING, "abort": Phase.ABORTING,
                                   "halt": Phase.FAULTED}
# What a queue reports as the run's state before a scan loop has attached to it.
STARTING: Final = "starting"

_MAX_OPERATOR = 64
_MAX_REASON = 500
_MAX_ID = 64
_MAX_DATA_FIELDS = 20
_MAX_DATA_VALUE = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """One operator command. ``id`` makes it idempotent: the same id is applied once.

    ``deferred`` (hold only) means "hold at the next checkpoint" (the first Ctrl-C).
    ``data`` (confirm only) are the operator step's values as (name, text) pairs; the
    runner checks them against the step's fields.
    """

    trigger: Trigger
    operator: str
    reason: str = ""
    source: Source = "ctl"
    deferred: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    data: tuple[tuple[str, str], ...] = ()

    def validate(self) -> Command:
        """Return self, or raise ``ConfigurationError`` with a one-line reason."""
        if self.trigger not in TRIGGERS and self.trigger not in PROCESS_TRIGGERS:
            raise ConfigurationError(f"unknown command {self.trigger!r}; expected one of "
                                     f"{', '.join(TRIGGERS)}", field="command")
        if self.source not in SOURCES:
            raise ConfigurationError(f"unknown source {self.source!r}", field="source")
        if (self.trigger == "halt") != (self.source == "signal"):
            raise ConfigurationError(
                "halt is posted only by the controller itself (on SIGTERM, SIGHUP or "
                "SIGBREAK); end a batch with stop or abort" if self.trigger == "halt"
                else "a signal only halts", field="command")
        if not (0 < len(self.id) <= _MAX_ID and self.id.isascii()
                and self.id.replace("-", "").isalnum()):
            raise ConfigurationError("must be 1-64 letters, digits or '-'", field="id")
        operator = self.operator.strip()
        if not operator:
            raise ConfigurationError("every command needs an operator name (--operator NAME)",
                                     field="operator")
        if len(operator) > _MAX_OPERATOR or unsafe_char(operator) is not None:
            raise ConfigurationError(f"at most {_MAX_OPERATOR} printable characters",
                                     field="operator")
        if self.trigger in NEEDS_REASON and not self.reason.strip():
            raise ConfigurationError(f"{self.trigger} changes the recipe's course and needs "
                                     "a reason (--reason TEXT)", field="reason")
        if len(self.reason) > _MAX_REASON or unsafe_char(self.reason) is not None:
            raise ConfigurationError(f"at most {_MAX_REASON} printable characters on one "
                                     "line", field="reason")
        if self.deferred and self.trigger != "hold":
            raise ConfigurationError("only a hold can wait for the next checkpoint",
                                     field="deferred")
        if self.data:
            self._validate_data()
        return self

    def _validate_data(self) -> None:
        if self.trigger != "confirm":
            raise ConfigurationError("step data (--set) goes only with confirm", field="data")
        if len(self.data) > _MAX_DATA_FIELDS:
            raise ConfigurationError(f"at most {_MAX_DATA_FIELDS} values", field="data")
        names = [name for name, _ in self.data]
        for name, value in self.data:
            if not (0 < len(name) <= 40 and name.isascii() and name.isidentifier()):
                raise ConfigurationError(f"{name[:40]!r} is not a field name (letters, "
                                         "digits and _)", field="data")
            if names.count(name) > 1:
                raise ConfigurationError(f"{name} is given twice", field="data")
            if len(value) > _MAX_DATA_VALUE or unsafe_char(value) is not None:
                raise ConfigurationError(f"{name}: at most {_MAX_DATA_VALUE} printable "
                                         "characters on one line", field="data")

    def audit_fields(self) -> dict[str, Any]:
        """What the audit log records about this command (who, what, why, from where)."""
        fields = {"command_id": self.id, "trigger": self.trigger, "operator": self.operator,
                  "reason": self.reason, "source": self.source, "deferred": self.deferred}
        if self.data:
            fields["data"] = dict(self.data)
        return fields


class Status(StrEnum):
    """What became of a command; the value goes on the wire."""

    QUEUED = "queued"
    APPLIED = "applied"
    SUPERSEDED = "superseded"  # a deferred hold overtaken by a hold now, stop, abort or halt
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The answer to one command: its status, the runner state after it, and why."""

    id: str
    status: Status
    state: str
    message: str
    invalid: bool = False  # refused for bad input (step data): ``furnace ctl`` exits 2

    @property
    def ok(self) -> bool:
        """False only when the command was refused."""
        return self.status is not Status.REFUSED

    def to_wire(self) -> dict[str, Any]:
        """The JSON reply object."""
        wire = {"ok": self.ok, "status": str(self.status), "state": self.state,
                "message": self.message, "id": self.id}
        if self.invalid:
            wire["invalid"] = True
        return wire


class Commandable(Protocol):
    """What ``apply_command`` needs of the runner (``RecipeRunner`` satisfies it)."""

    @property
    def phase(self) -> str: ...

    def command(self, trigger: str, *, reason: str, operator: str = "") -> None: ...

    def confirm(self, operator: str, data: Mapping[str, object] | None = None) -> None: ...

    def halt(self, *, reason: str, operator: str = "") -> None: ...


def apply_command(runner: Commandable, cmd: Command) -> CommandResult:
    """Fire ``cmd`` on ``runner`` (call from the scan cycle only). Never raises for an
    illegal command: it comes back ``refused`` with the runner's reason. A command whose
    target state is already reached (hold while held...) is ``applied`` and changes nothing.
    """
    before = str(runner.phase)
    if _ALREADY.get(cmd.trigger) == before:
        return CommandResult(cmd.id, Status.APPLIED, before, f"already {before}")
    try:
        if cmd.trigger == "confirm":
            runner.confirm(cmd.operator, dict(cmd.data))
        elif cmd.trigger == "halt":
            runner.halt(reason=cmd.reason, operator=cmd.operator)
        else:
            reason = cmd.reason or f"{cmd.trigger} requested ({cmd.source})"
            runner.command(cmd.trigger, reason=reason, operator=cmd.operator)
    except RunStateError as exc:
        return CommandResult(cmd.id, Status.REFUSED, str(runner.phase), str(exc),
                             invalid=isinstance(exc, StepDataError))
    after = str(runner.phase)
    message = "confirmed" if cmd.trigger == "confirm" else f"{before} -> {after}"
    return CommandResult(cmd.id, Status.APPLIED, after, message)


@dataclass(slots=True)
class _Entry:
    cmd: Command
    result: CommandResult
    future: asyncio.Future[CommandResult] | None = None


class CommandQueue:
    """Commands waiting for the scan cycle, which drains them at the start of each cycle.

    Producers (control server, key reader, Ctrl-C and signal handlers) run on the scan
    loop's event loop thread (threads hand over with ``call_soon_threadsafe``), so no lock
    is needed. Posting never blocks. The same ``id`` is accepted once; a repeat gets the
    first command's latest result. ``state`` tells the current runner state for replies
    (``STARTING`` until replaced); it is replaced once the runner exists
    (``queue.state = lambda: str(runner.phase)``). A halt is never refused for a full
    queue.
    """

    def __init__(self, state: Callable[[], str] = lambda: STARTING, *,
                 max_pending: int = 32, remember: int = 1024) -> None:
        self.state = state
        self.max_pending = max_pending
        self.remember = remember
        self._pending: list[Command] = []
        self._seen: OrderedDict[str, _Entry] = OrderedDict()
        self._announced: set[str] = set()
        self._superseded: list[tuple[Command, CommandResult]] = []

    def _state(self) -> str:
        return self.state()

    def __len__(self) -> int:
        return len(self._pending)

    def post(self, cmd: Command) -> CommandResult:
        """Queue ``cmd``; returns at once (``queued``, or ``refused`` with the reason)."""
        entry = self._seen.get(cmd.id)
        if entry is not None:
            return self._repeat(entry, cmd)
        try:
            cmd.validate()
        except ConfigurationError as exc:
            return CommandResult(cmd.id, Status.REFUSED, self._state(), str(exc))
        if len(self._pending) >= self.max_pending and cmd.trigger != "halt":
            return CommandResult(cmd.id, Status.REFUSED, self._state(),
                                 f"{len(self._pending)} commands already waiting")
        result = CommandResult(cmd.id, Status.QUEUED, self._state(), "queued")
        self._remember(cmd.id, _Entry(cmd, result))
        self._pending.append(cmd)
        return result

    def submit(self, cmd: Command) -> asyncio.Future[CommandResult]:
        """Queue ``cmd`` and return a future that the scan cycle resolves with the verdict.
        A refusal at posting (or a repeat already decided) resolves it at once. Call from
        the running loop. Awaiting it may take a scan period; wrap it in ``asyncio.shield``
        when you put a timeout on it."""
        first = self.post(cmd)
        entry = self._seen.get(cmd.id)
        loop = asyncio.get_running_loop()
        if first.status is Status.QUEUED and entry is not None:
            if entry.future is None:
                entry.future = loop.create_future()
            return entry.future
        fut: asyncio.Future[CommandResult] = loop.create_future()
        fut.set_result(first)
        return fut

    def take(self, *, at_checkpoint: bool) -> list[Command]:
        """Remove and return the commands due this cycle, oldest first. A deferred hold
        stays queued until ``at_checkpoint`` (or the run is no longer running); a hold
        now, stop, abort or halt supersedes it."""
        running = self._state() == Phase.RUNNING
        if any(not c.deferred and c.trigger in ("hold", "stop", "abort", "halt")
               for c in self._pending):
            for c in [c for c in self._pending if c.deferred]:
                self._pending.remove(c)
                self._announced.discard(c.id)
                result = CommandResult(c.id, Status.SUPERSEDED, self._state(),
                                       "superseded by a later command")
                self.settle(c, result)
                self._superseded.append((c, result))
        due = [c for c in self._pending if not c.deferred or at_checkpoint or not running]
        self._pending = [c for c in self._pending if c not in due]
        return due

    def settle(self, cmd: Command, result: CommandResult) -> None:
        """Record the verdict on ``cmd`` and wake whoever awaits it."""
        entry = self._seen.get(cmd.id)
        if entry is None:
            entry = _Entry(cmd, result)
            self._remember(cmd.id, entry)
        entry.result = result
        if entry.future is not None and not entry.future.done():
            entry.future.set_result(result)

    def apply_due(self, runner: Commandable, *, at_checkpoint: bool
                  ) -> list[tuple[Command, CommandResult]]:
        """``take`` the due commands, ``apply_command`` each and ``settle`` it. The scan
        cycle calls this at its start and audits the returned pairs. A deferred hold left
        waiting is returned once as ``queued``, so the request itself is on record, and
        once more as ``superseded`` or with its verdict."""
        due = self.take(at_checkpoint=at_checkpoint)
        done, self._superseded = self._superseded, []
        for cmd in self._pending:
            if cmd.deferred and cmd.id not in self._announced:
                self._announced.add(cmd.id)
                done.append((cmd, CommandResult(cmd.id, Status.QUEUED, self._state(),
                                                "waiting for the next checkpoint")))
        for cmd in due:
            self._announced.discard(cmd.id)
            result = apply_command(runner, cmd)
            self.settle(cmd, result)
            done.append((cmd, result))
        return done

    def _repeat(self, entry: _Entry, cmd: Command) -> CommandResult:
        if (entry.cmd.trigger, entry.cmd.operator, entry.cmd.reason, entry.cmd.data) != (
                cmd.trigger, cmd.operator, cmd.reason, cmd.data):
            return CommandResult(cmd.id, Status.REFUSED, self._state(),
                                 "this command id was already used for another command")
        return entry.result

    def _remember(self, key: str, entry: _Entry) -> None:
        self._seen[key] = entry
        if len(self._seen) > self.remember:  # forget the oldest decided command
            old = next((k for k, e in self._seen.items() if e.result.status is not
                        Status.QUEUED), None)
            if old is not None:
                del self._seen[old]


# --------------------------------------------------------------------- the server
