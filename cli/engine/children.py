"""A started command: its own process group, killable as a whole until the command is reaped.

Each command runs in a new session (``start_new_session``), so its process group holds the
command and everything it started. Stopping a command signals the group: SIGTERM first,
SIGKILL after a grace period. When the command exits, whatever it left running in its group
is killed too, so a step never leaves processes behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from runjournal.cli.engine.workflow import Step

STOP_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL when stopping a command."""

EXIT_NOT_FOUND = 127
EXIT_CANNOT_EXECUTE = 126


@dataclass(frozen=True, slots=True)
class Unit:
    """One command to run: a step, or one item of a fan-out step."""

    step: Step
    item: str | None = None


def exit_code_of(returncode: int) -> tuple[int, str | None]:
    """A shell-style exit code (128+N for signal N) and a message for a failure."""
    if returncode < 0:
        name = _signal_name(-returncode)
        return 128 - returncode, f"killed by {name}"
    return returncode, None if returncode == 0 else f"exit code {returncode}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Child:
    """A started command: its process group stays killable until the command is reaped."""

    def __init__(self, unit: Unit, popen: subprocess.Popen[bytes], pumps: list[threading.Thread], log_fd: int) -> None:
        self.unit = unit
        self.popen = popen
        self.pumps = pumps
        self.log_fd = log_fd
        self.timed_out = False
        self.stopped = False
        self._exited = False
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the command's whole process group (nothing once it has exited)."""
        with self._lock:
            if self._exited:
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)

    def after(self, seconds: float, action: Callable[[], None]) -> None:
        """Call ``action`` in ``seconds`` unless the command has been reaped by then."""
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def stop(self, grace: float) -> None:
        """SIGTERM the group now, SIGKILL it after ``grace`` seconds."""
        self.stopped = True
        self.signal(signal.SIGTERM)
        self.after(grace, lambda: self.signal(signal.SIGKILL))

    def expire(self, grace: float) -> None:
        """The step's timeout ran out."""
        self.timed_out = True
        self.stop(grace)

    def wait(self) -> int:
        """Wait for the command, kill what it left behind in its group, reap it; return its returncode."""
        pid = self.popen.pid
        # Wait without reaping: while the leader is a zombie its pid (the group id) cannot be
        # reused, so killing its group below can only hit the command's own leftovers.
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        with self._lock:
            self._exited = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for timer in self._timers:
            timer.cancel()
        for pump in self.pumps:
            pump.join(timeout=STOP_GRACE)
        with contextlib.suppress(OSError):
            os.close(self.log_fd)
        return self.popen.wait()


def pump(source: IO[bytes], log_fd: int, echo_to: IO[str]) -> threading.Thread:
    """Copy a child's output to its log file and to our own stream, as it arrives."""

    def copy() -> None:
        target = getattr(echo_to, "buffer", None)
        with source:
            while chunk := source.read1(65536):  # type: ignore[attr-defined]
                with contextlib.suppress(OSError):
                    os.write(log_fd, chunk)
                if target is not None:
                    with contextlib.suppress(OSError, ValueError):
                        target.write(chunk)
                        target.flush()

    thread = threading.Thread(target=copy, name="runjournal-output", daemon=True)
    thread.start()
    return thread


