"""Operator input at the console: single keys under the live view, Ctrl-C, and the signals
that tell the process to end (SIGTERM, SIGHUP, SIGBREAK).

Turns keys, interrupts and signals into ``Command``s; never touches a device or the runner. Key
reading runs in a background thread that hands each key to the event loop with
``call_soon_threadsafe``; Ctrl-C is a loop callback, so no ``KeyboardInterrupt`` is ever
raised inside the scan loop (outputs are never left undefined).

Key bindings (case-insensitive)::

    h        hold now (safe, so a single key)
    r then y resume          s then y stop (normal cool-down, batch not completed)
    a then y abort (controlled cool-down under inert gas)
    c then y confirm the operator step shown (e.g. "tube reloaded and closed"); a step
             that asks for values (masses, pH, a note) takes each typed in, Enter after
             each, before the y
    any other key (Esc, arrows...) cancels a pending r/s/a/c

Ctrl-C (``InterruptPolicy``): 1st = hold at the next checkpoint; 2nd = hold now; 3rd within
``window_s`` (10 s) of the 1st = abort with a controlled cool-down; 5th within the window =
halt: ``halt_requested`` turns True and the caller cancels the scan task, whose supervisor
hands the furnace to its local fallback with inert gas on (the way out during a long
cool-down). A press after the window starts the count again, so a stray Ctrl-C long after
a hold cannot abort.

SIGTERM (``systemctl stop``, an OS shutdown, ``kill``), SIGHUP (the terminal or SSH session
closed) and SIGBREAK (Windows: Ctrl-Break, or a process manager's CTRL_BREAK_EVENT)
(``TerminationPolicy``): the first posts ``halt`` from operator ``system``: at the start of
the next scan cycle the batch ends faulted, the heat left to the instrument's own fallback
(its local setpoint at its rate limit), inert gas on, the summary written. Later ones are
logged and ignored, so nothing cuts the safe shutdown short. A signal the process inherited
as ignored (``nohup`` ignores SIGHUP) stays ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, Final, TextIO

from controller.recipe.steps import StepField
from controller.run.commands import Command, Trigger

if sys.platform == "win32":
    import msvcrt
else:
    import select
    import termios
    import tty

__all__ = ["BINDINGS", "HALT_PRESSES", "HELP_LINE", "SYSTEM_OPERATOR", "TERMINATION_SIGNALS",
           "InterruptPolicy", "KeyCommands", "KeyReader", "TerminationPolicy",
           "install_interrupt_handler", "install_termination_handlers"]

logger = logging.getLogger(__name__)

BINDINGS: Final[dict[str, Trigger]] = {"h": "hold", "r": "resume", "s": "stop",
                                       "a": "abort", "c": "confirm"}
CONFIRM_KEY: Final = "y"
# Everything but hold changes the recipe's course: a second key confirms it.
NEEDS_CONFIRMATION: Final = frozenset({"resume", "stop", "abort", "confirm"})
ESCAPE: Final = "\x1b"  # one key for a whole escape sequence (arrows, function keys)
HELP_LINE: Final = ("keys: h hold · r resume · s stop · a abort · c confirm step "
                    "(r/s/a/c then y) · Ctrl-C: 1× hold at next checkpoint, 2× hold now, "
                    "3× within 10 s abort (cool under inert gas), 5× quit to the "
                    "instrument's fallback")
HALT_PRESSES: Final = 5
# The signals that end the process, by name; each platform has some of them (POSIX: SIGTERM,
# SIGHUP; Windows: SIGTERM, SIGBREAK), and what each means to whoever reads the audit.
TERMINATION_SIGNALS: Final[dict[str, str]] = {
    "SIGTERM": "the process was told to end (systemctl stop, OS shutdown, kill)",
    "SIGHUP": "the terminal or SSH session running it closed",
    "SIGBREAK": "Ctrl-Break, or the console or a process manager ended it",
}
# ...and why a halt names a signal that is not one of them (a sweep's workers halt on Ctrl-C)
_HALT_REASONS: Final = {**TERMINATION_SIGNALS, "SIGINT": "Ctrl-C: an interrupt asked it to stop"}
SYSTEM_OPERATOR: Final = "system"  # who the audit names for what the process did itself


class KeyCommands:
    """Maps console keys to commands by the scheme in the module docstring. Pure.

    ``prompt`` is the line the live view shows while a confirmation or an entry is pending.
    ``asks`` tells the fields the operator step now waiting asks for (the live view's
    ``LiveView.asks``): after ``c`` each is typed in turn (Enter takes it, an empty Enter
    skips it, Backspace deletes, Esc cancels the lot), then ``y`` confirms with the values;
    the runner checks them as it checks ``furnace ctl confirm --set``.
    """

    def __init__(self, operator: str, reason: str = "from the console", *,
                 asks: Callable[[], tuple[StepField, ...]] = tuple) -> None:
        self.operator = operator
        self.reason = reason
        self.asks = asks
        self._pending: Trigger | None = None
        self._fields: tuple[StepField, ...] = ()  # still to type, the current one first
        self._typed = ""
        self._data: list[tuple[str, str]] = []

    @property
    def prompt(self) -> str:
        """Empty, the field being typed, or the question awaiting ``y``."""
        if self._fields:
            return (f"{self._fields[0].describe()}: {self._typed}_   "
                    "(Enter takes it, Esc cancels)")
        if self._pending is None:
            return ""
        values = ", ".join(f"{k}={v}" for k, v in self._data)
        with_values = f" with {values}" if values else ""
        return f"press y to {self._pending}{with_values}, any other key cancels"

    def feed(self, key: str) -> Command | None:
        """One key in; a command out when one is complete, else None."""
        if self._fields:
            self._type(key)
            return None
        pending, self._pending = self._pending, None
        key = key.lower()
        if pending is not None:
            command = self._command(pending) if key == CONFIRM_KEY else None
            self._data = []
            return command
        trigger = BINDINGS.get(key)
        if trigger is None:
            return None
        if trigger == "confirm":
            self._fields, self._typed, self._data = self.asks(), "", []
        if trigger in NEEDS_CONFIRMATION:
            self._pending = trigger
            return None
        return self._command(trigger)

    def _type(self, key: str) -> None:
        if key == ESCAPE:
            self._fields, self._typed, self._data, self._pending = (), "", [], None
        elif key in ("\r", "\n"):
            if self._typed.strip():
                self._data.append((self._fields[0].name, self._typed.strip()))
            self._fields, self._typed = self._fields[1:], ""
        elif key in ("\x7f", "\b"):
            self._typed = self._typed[:-1]
        elif key.isprintable() and len(self._typed) < 200:
            self._typed += key

    def _command(self, trigger: Trigger) -> Command:
        return Command(trigger=trigger, operator=self.operator, reason=self.reason,
                       source="keys", data=tuple(self._data) if trigger == "confirm" else ())


class InterruptPolicy:
    """What each Ctrl-C means (faults.md O1, Bluesky's SIGINT semantics). Pure: the
    caller passes the time of each press in seconds of a *real-time* clock (a human's
    double press is not measured in virtual process time; use ``WallClock().now()``)."""

    def __init__(self, operator: str, *, window_s: float = 10.0) -> None:
        self.operator = operator
        self.window_s = window_s
        self.presses = 0
        self._first_s = 0.0

    @property
    def halt_requested(self) -> bool:
        """True once Ctrl-C was pressed ``HALT_PRESSES`` times within the window: the
        caller should cancel the scan task (its supervisor makes the outputs safe)."""
        return self.presses >= HALT_PRESSES

    def on_interrupt(self, now_s: float) -> Command:
        """The command for a Ctrl-C pressed at ``now_s``."""
        if self.presses == 0 or now_s - self._first_s > self.window_s:
            self.presses, self._first_s = 0, now_s
        self.presses += 1
        if self.presses == 1:
            return Command(trigger="hold", operator=self.operator, deferred=True,
                           reason="Ctrl-C: hold at the next checkpoint", source="ctrl-c")
        if self.presses == 2:
            return Command(trigger="hold", operator=self.operator,
                           reason="Ctrl-C twice: hold now", source="ctrl-c")
        return Command(trigger="abort", operator=self.operator, source="ctrl-c",
                       reason=f"Ctrl-C {self.presses} times within {self.window_s:g} s: "
                              "abort with controlled cool-down")


class TerminationPolicy:
    """What a termination signal means: the first halts, later ones change nothing. Pure.

    ``halting`` names the signal that started the halt ("" before any)."""

    def __init__(self) -> None:
        self.halting = ""

    def on_signal(self, name: str) -> Command | None:
        """The ``halt`` command for the first signal ``name`` (e.g. "SIGTERM"); None for
        any signal after it (the halt is already on its way)."""
        if self.halting:
            return None
        self.halting = name
        why = _HALT_REASONS.get(name, "the process was told to end")
        return Command(trigger="halt", operator=SYSTEM_OPERATOR, source="signal",
                       reason=f"{name}: {why}; halted to the instrument's fallback")


def install_termination_handlers(loop: asyncio.AbstractEventLoop,
                                 on_signal: Callable[[str], None], *,
                                 module: ModuleType = signal) -> Callable[[], None]:
    """Route SIGTERM, SIGHUP and SIGBREAK (those ``module`` has) to ``on_signal(name)``,
    called on ``loop`` as a plain callback, instead of ending the process. Returns the
    function that uninstalls them and restores the previous handlers. Call from the main
    thread. A signal whose previous disposition is ``SIG_IGN`` (``nohup``) is left ignored.

    POSIX: ``loop.add_signal_handler``. Windows (no ``add_signal_handler``): a
    ``module.signal`` handler that only schedules the callback with
    ``call_soon_threadsafe``. ``module`` is the ``signal`` module (a test passes a stand-in
    to exercise the Windows branch anywhere).
    """
    restore: list[Callable[[], None]] = []
    for name in TERMINATION_SIGNALS:
        signum = getattr(module, name, None)
        if signum is None:
            continue  # not on this platform
        previous = module.getsignal(signum)
        if previous is None:  # set outside Python: put back the default, not None
            previous = module.SIG_DFL
        if previous == module.SIG_IGN:
            logger.info("%s is ignored by whoever started the process (nohup?); it will "
                        "not halt the run", name)
            continue
        try:
            loop.add_signal_handler(signum, on_signal, name)
        except NotImplementedError:  # Windows event loops
            module.signal(signum, _threadsafe_handler(loop, on_signal, name))
            restore.append(functools.partial(module.signal, signum, previous))
            continue
        restore.append(functools.partial(_remove_loop_handler, loop, module, signum, previous))

    def uninstall() -> None:
        for undo in reversed(restore):
            undo()
        restore.clear()

    return uninstall


def _remove_loop_handler(loop: asyncio.AbstractEventLoop, module: ModuleType, signum: int,
                         previous: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is already closed
        loop.remove_signal_handler(signum)
    module.signal(signum, previous)


def _threadsafe_handler(loop: asyncio.AbstractEventLoop, on_signal: Callable[[str], None],
                        name: str) -> Callable[[int, object], None]:
    """A ``signal.signal`` handler that hands ``name`` to ``loop``; it does nothing else,
    since it runs between two bytecodes of whatever the main thread was doing."""

    def handler(signum: int, frame: object) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed: the run has ended already
            loop.call_soon_threadsafe(on_signal, name)

    return handler


def install_interrupt_handler(loop: asyncio.AbstractEventLoop,
                              on_interrupt: Callable[[], None]) -> Callable[[], None]:
    """Route SIGINT (Ctrl-C) to ``on_interrupt``, called on ``loop`` as a plain callback,
    instead of raising ``KeyboardInterrupt``. Returns the function that uninstalls it and
    restores the previous handler. Call from the main thread (signals live there).

    POSIX: ``loop.add_signal_handler``. Windows (no ``add_signal_handler``): a
    ``signal.signal`` handler that only schedules the callback with
    ``call_soon_threadsafe``; the proactor loop wakes up for Ctrl-C by itself.
    """
    previous = signal.getsignal(signal.SIGINT)
    try:
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
    except NotImplementedError:  # Windows event loops
        return _install_with_signal(loop, on_interrupt)

    def uninstall() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, previous)

    return uninstall


def _install_with_signal(loop: asyncio.AbstractEventLoop,
                         on_interrupt: Callable[[], None]) -> Callable[[], None]:
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: object) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed: nothing left to hold
            loop.call_soon_threadsafe(on_interrupt)

    signal.signal(signal.SIGINT, handler)

    def uninstall() -> None:
        signal.signal(signal.SIGINT, previous)

    return uninstall


class KeyReader:
    """Reads single keys from ``stream`` (default stdin) while the live view runs and
    calls ``on_key(key)`` on the event loop. Does nothing unless ``stream`` is a TTY (CI,
    services, pipes). POSIX: cbreak mode (no echo, no line buffering; Ctrl-C still
    signals), restored by ``stop()`` and if the reader fails. Windows: ``msvcrt``.

    ``start()`` must be called on the running loop; ``stop()`` returns promptly (the
    thread is woken through a pipe on POSIX, polls every 50 ms on Windows).
    """

    def __init__(self, on_key: Callable[[str], None], *, stream: TextIO | None = None
                 ) -> None:
        self.on_key = on_key
        self.stream = stream if stream is not None else sys.stdin
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._saved: list[Any] | None = None
        self._fd = -1
        self._wake: tuple[int, int] | None = None

    def __enter__(self) -> KeyReader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def active(self) -> bool:
        """True while a reader thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def _is_tty(self) -> bool:
        try:
            return self.stream is not None and self.stream.isatty()
        except (OSError, ValueError):  # closed or detached stream
            return False

    def start(self) -> bool:
        """Start reading if ``stream`` is a TTY. Returns whether it did."""
        if self._thread is not None or not self._is_tty():
            return False
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        if sys.platform == "win32":
            target: Callable[[], None] = self._run_windows
        else:
            self._fd = self.stream.fileno()
            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd, termios.TCSANOW)
            self._wake = os.pipe()
            wake_r = self._wake[0]

            def target() -> None:
                self._run_posix(wake_r)
        self._thread = threading.Thread(target=target, name="furnace-keys", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        """Stop reading and restore the terminal. Safe to call more than once."""
        self._stop.set()
        if self._wake is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake[1], b"x")
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self._restore()
        if self._wake is not None:
            for fd in self._wake:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._wake = None

    def _restore(self) -> None:
        saved, self._saved = self._saved, None
        if saved is not None and sys.platform != "win32":
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self._fd, termios.TCSADRAIN, saved)

    def _deliver(self, key: str) -> bool:
        """Hand ``key`` to the loop; False once the loop is gone."""
        if self._loop is None:
            return False
        try:
            self._loop.call_soon_threadsafe(self.on_key, key)
        except RuntimeError:  # loop closed
            return False
        return True

    if sys.platform != "win32":
        def _run_posix(self, wake: int) -> None:
            try:
                while not self._stop.is_set():
                    ready, _, _ = select.select([self._fd, wake], [], [])
                    if wake in ready:
                        return
                    data = os.read(self._fd, 64)
                    if not data:
                        return  # end of input
                    for key in _split_keys(data.decode("utf-8", "replace")):
                        if not self._deliver(key):
                            return
            except OSError as exc:
                logger.warning("console keys stopped: %s", exc)
                self._restore()

    if sys.platform == "win32":
        def _run_windows(self) -> None:
            while not self._stop.wait(0.05):
                while msvcrt.kbhit():
                    key = msvcrt.getwch()
                    if key in ("\x00", "\xe0"):  # arrow or function key: two codes
                        msvcrt.getwch()
                        key = ESCAPE
                    if not self._deliver(key):
                        return


def _split_keys(text: str) -> list[str]:
    """Single keys from one read; an escape sequence (arrow keys...) is one ``ESCAPE``."""
    head, esc, _ = text.partition(ESCAPE)
    return list(head) + ([ESCAPE] if esc else [])
