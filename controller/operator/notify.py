"""Telling the people who are not at the furnace: which audit records and moments become a
notice (``NoticeRules``, pure), and the ``Notifier`` that hands them to a delivery thread so
the scan cycle never waits on a mail server or a webhook.

Notices (``[notify] events``): an operator step coming up, ``operator_lead_min`` before it is
planned to begin, and again when it waits; a hold, and ``hold_warn_min`` before a hold
nobody lifts times out; an alarm (one per alarm kind per 10 min of process time); a fault;
the batch's end. Not here: the configuration (``controller.recipe.notify_config``) or the
channels themselves (``channels``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from controller.recipe.notify_config import NotifyConfig
from controller.recipe.steps import OperatorStep, Plan
from controller.text import hm, one_line

__all__ = ["Channel", "Notice", "NoticeRules", "Notifier"]

logger = logging.getLogger(__name__)

_ALARM_REPEAT_S: Final = 600.0  # the same alarm again within 10 min of process time: quiet


@dataclass(frozen=True, slots=True)
class Notice:
    """One message: its kind (``NOTICE_KINDS``), a subject line, a body, and the facts a
    webhook receiver may want as fields."""

    kind: str
    subject: str
    body: str
    fields: Mapping[str, Any] = field(default_factory=dict)


class Channel(Protocol):
    """Where notices go (``channels.SmtpChannel``, ``channels.WebhookChannel``)."""

    name: str

    def send(self, notice: Notice) -> None:
        """Deliver ``notice``; raise ``OSError`` (or ``ValueError``) if it did not go."""
        ...


def _utc(wall: datetime) -> str:
    return wall.strftime("%Y-%m-%d %H:%M UTC")


class NoticeRules:
    """Audit records and scan-cycle ticks in, notices out. Pure and single-threaded: the
    scan loop calls it; nothing here blocks or does I/O.

    ``step_durations_s`` are the plan's expected step durations (aligned with
    ``plan.steps``): an operator step is due at its step's start plus the planned time of
    the steps before it, re-reckoned at every step start."""

    def __init__(self, config: NotifyConfig, plan: Plan, step_durations_s: Sequence[float],
                 *, batch_id: str, station: str, hold_timeout_s: float,
                 on_timeout: str) -> None:
        self.config = config
        self.plan = plan
        self.step_durations_s = tuple(step_durations_s)
        self.base = {"batch_id": batch_id, "sample": plan.sample_name, "station": station}
        self.hold_timeout_s = hold_timeout_s
        self.on_timeout = on_timeout
        self._due: tuple[int, float, float] | None = None  # step, tell at, due at (t_s)
        self._told: set[tuple[str, int]] = set()
        self._held = False
        self._hold_real_s: float | None = None
        self._hold_warned = False
        self._alarms: dict[str, float] = {}

    def _notice(self, kind: str, subject: str, body: str, **facts: Any) -> list[Notice]:
        if kind not in self.config.events:
            return []
        prefix = f"[furnace] {self.plan.sample_name}: "
        return [Notice(kind, one_line(prefix + subject, 200), body,
                       {**self.base, "kind": kind, **facts})]

    # ------------------------------------------------------------------ audit records
    def audit(self, event: str, t_s: float, fields: Mapping[str, Any], wall: datetime
              ) -> list[Notice]:
        """The notices an audit record gives (usually none)."""
        if event == "step_started":
            return self._step_started(t_s, fields, wall)
        if event == "state_change":
            return self._state_change(t_s, fields)
        if event == "alarm":
            name = str(fields.get("alarm", "alarm"))
            last = self._alarms.get(name)
            if last is not None and t_s - last < _ALARM_REPEAT_S:
                return []
            self._alarms[name] = t_s
            detail = ", ".join(f"{k} {v}" for k, v in fields.items() if k != "alarm")
            return self._notice("alarm", f"alarm {name}", f"Alarm {name} at process time "
                                f"{hm(t_s)}: {detail}.", alarm=name, t_s=t_s)
        if event == "batch_ended":
            outcome = str(fields.get("outcome", "ended"))
            return self._notice("ended", f"batch {outcome}",
                                f"The batch ended {outcome} after {hm(t_s)}: "
                                f"{fields.get('end_reason', '')}.", outcome=outcome, t_s=t_s)
        if event == "batch_interrupted":
            return self._notice("fault", "batch interrupted",
                                f"The batch was interrupted at {hm(t_s)}: "
                                f"{fields.get('reason', '')}. {fields.get('resume', '')}",
                                t_s=t_s)
        return []

    def _step_started(self, t_s: float, fields: Mapping[str, Any], wall: datetime
                      ) -> list[Notice]:
        index = fields.get("index")
        if not isinstance(index, int) or not 0 <= index < len(self.plan.steps):
            return []
        step = self.plan.steps[index]
        out: list[Notice] = []
        if isinstance(step, OperatorStep) and ("now", index) not in self._told:
            self._told.add(("now", index))
            asks = "; ".join(f.describe() for f in step.fields)
            out += self._notice("operator_due", f"operator step waiting: {step.stage}",
                                f"{step.message}\n\nIt asks for: {asks or 'a confirmation'}."
                                "\nConfirm on the furnace PC, the web page or with furnace "
                                "ctl BATCH confirm.", step=index, stage=step.stage, t_s=t_s)
        self._due = None
        nxt = next((j for j in range(index + 1, len(self.plan.steps))
                    if isinstance(self.plan.steps[j], OperatorStep)), None)
        if nxt is not None and ("due", nxt) not in self._told:
            due_t_s = t_s + sum(self.step_durations_s[index:nxt])
            self._due = (nxt, due_t_s - self.config.operator_lead_min * 60.0, due_t_s)
            out += self.tick(t_s, None, wall)
        return out

    def _state_change(self, t_s: float, fields: Mapping[str, Any]) -> list[Notice]:
        new, reason = fields.get("new"), str(fields.get("reason", ""))
        if new == "held" and not self._held:
            self._held, self._hold_real_s, self._hold_warned = True, None, False
            return self._notice("hold", "held", f"The batch is held at {hm(t_s)}: {reason}."
                                f" If nobody resumes it, it will {self.on_timeout} after "
                                f"{self.hold_timeout_s / 60:.0f} min.", reason=reason, t_s=t_s)
        if new != "held":
            self._held = False
        if new == "faulted":
            return self._notice("fault", "fault", f"The batch faulted at {hm(t_s)}: {reason}."
                                " The furnace is left to its instrument's fallback with inert "
                                "gas on.", reason=reason, t_s=t_s)
        return []

    # --------------------------------------------------------------------- the cycle
    def tick(self, t_s: float, real_s: float | None, wall: datetime) -> list[Notice]:
        """Each scan cycle: an operator step whose lead time has come, or a hold about to
        time out (``real_s``: the clock's real seconds; the hold timeout runs on them)."""
        out: list[Notice] = []
        if self._due is not None and t_s >= self._due[1]:
            index, _, due_t_s = self._due
            self._due = None
            self._told.add(("due", index))
            step = self.plan.steps[index]
            left_s = 60.0 * round(max(due_t_s - t_s, 0.0) / 60.0)  # "about": whole minutes
            message = step.message if isinstance(step, OperatorStep) else step.label
            out += self._notice(
                "operator_due", f"operator step due in {hm(left_s)}: {step.stage}",
                f"The operator step of stage {step.stage!r} is due in about {hm(left_s)} "
                f"(at {_utc(wall + timedelta(seconds=left_s))}, as planned):\n{message}",
                step=index, stage=step.stage, due_in_s=left_s, t_s=t_s)
        if self._held and real_s is not None:
            if self._hold_real_s is None:
                self._hold_real_s = real_s
            warn_at = self.hold_timeout_s - self.config.hold_warn_min * 60.0
            if not self._hold_warned and real_s - self._hold_real_s >= warn_at:
                self._hold_warned = True
                left_s = self.hold_timeout_s - (real_s - self._hold_real_s)
                out += self._notice("hold", f"hold times out in {hm(left_s)}",
                                    f"Still held. Unless someone resumes it, the batch will "
                                    f"{self.on_timeout} in {hm(left_s)}.", t_s=t_s)
        return out


class Notifier:
    """Hands notices to a delivery thread: ``audit`` and ``observe`` (called by the scan
    loop) only put them on a queue, so a slow or dead mail server or webhook never delays
    the scan cycle. A failed delivery is tried ``retries`` more times, ``retry_wait_s``
    apart (waiting with ``wait``: the clock module's real wait), then logged and dropped:
    never fatal. ``close`` gives the last notices up to ``close_timeout_s`` to go."""

    def __init__(self, rules: NoticeRules, channels: Sequence[Channel], *,
                 wait: Callable[[threading.Event, float], bool],
                 close_timeout_s: float = 15.0) -> None:
        self.rules = rules
        self.channels = tuple(channels)
        self.wait = wait
        self.close_timeout_s = close_timeout_s
        self.sent: list[tuple[str, Notice]] = []  # (channel, notice), in delivery order
        self.failed: list[tuple[str, Notice, str]] = []
        self._queue: queue.Queue[Notice | None] = queue.Queue()
        self._closing = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="furnace-notify", daemon=True)
        self._thread.start()

    @property
    def idle(self) -> threading.Event:
        """Set while nothing waits to be delivered (tests wait on it)."""
        return self._idle

    def audit(self, event: str, t_s: float, fields: Mapping[str, Any], wall: datetime
              ) -> None:
        """An audit record was written: queue what it tells. Never blocks, never raises."""
        self._post(lambda: self.rules.audit(event, t_s, fields, wall))

    def observe(self, t_s: float, real_s: float, wall: datetime) -> None:
        """A scan cycle happened: queue what its time tells. Never blocks, never raises."""
        self._post(lambda: self.rules.tick(t_s, real_s, wall))

    def _post(self, make: Callable[[], list[Notice]]) -> None:
        try:
            notices = make()
        except Exception:  # a notice is never worth a batch
            logger.exception("notification rules failed; the batch goes on")
            return
        for notice in notices:
            self._idle.clear()
            self._queue.put_nowait(notice)

    def close(self) -> None:
        """No more notices: deliver what is queued (up to ``close_timeout_s``), then stop."""
        self._queue.put_nowait(None)
        self._thread.join(self.close_timeout_s)
        if self._thread.is_alive():
            self._closing.set()  # abandon retries; the thread is a daemon
            logger.warning("notifications still undelivered at the end were dropped")

    def _run(self) -> None:
        while True:
            notice = self._queue.get()
            if notice is None:
                self._idle.set()
                return
            for channel in self.channels:
                self._deliver(channel, notice)
            if self._queue.empty():
                self._idle.set()

    def _deliver(self, channel: Channel, notice: Notice) -> None:
        retries = self.rules.config.retries
        for attempt in range(retries + 1):
            try:
                channel.send(notice)
            except Exception as exc:  # any failure of any receiver: log, retry, never fatal
                error = f"{type(exc).__name__}: {exc}"
                logger.warning("notification %r via %s failed (try %d of %d): %s",
                               notice.subject, channel.name, attempt + 1, retries + 1, error)
                if attempt == retries or self.wait(self._closing,
                                                   self.rules.config.retry_wait_s):
                    self.failed.append((channel.name, notice, error))
                    return
                continue
            self.sent.append((channel.name, notice))
            return
