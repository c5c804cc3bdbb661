"""A started command: its own process group, killable as a whole until the command is reaped.

Each command runs in a new session (``start_new_session``), so its process group holds the
command and everything it started. Stopping a command signals the group: SIGTERM first,
SIGKILL after a grace period. When the command exits, whatever it left running in its group
is killed too, so a step never leaves processes behind. (A process that leaves the group on
purpose, with ``setsid``, is beyond this; see :mod:`runjournal.cli.engine.watchdog`.)
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from runjournal.cli.engine.workflow import Step
from runjournal.journal.processes import GroupRecord

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

    def __init__(
        self,
        unit: Unit,
        popen: subprocess.Popen[bytes],
        pumps: list[threading.Thread],
        log_fd: int,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self.unit = unit
        self.popen = popen
        self.pumps = pumps
        self.log_fd = log_fd
        self.on_exit = on_exit
        self.record: GroupRecord | None = None
        """The identity of the command's process group, as recorded in the journal."""
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
        if self.on_exit is not None:
            self.on_exit()  # before reaping: until then the group id cannot name anyone else
        for timer in self._timers:
            timer.cancel()
        for pump in self.pumps:
            pump.join(timeout=STOP_GRACE)
        with contextlib.suppress(OSError):
            os.close(self.log_fd)
        return self.popen.wait()


_GATE = 'IFS= read -r go && [ "$go" = go ] && exec "$@" </dev/null; exit 125'
"""The shell a command starts in, holding it until the runner says ``go`` on its stdin (a pipe);
then it execs the command (same pid, same group) with stdin from ``/dev/null``. End of file
instead means the runner died first: the command never runs."""


def spawn_gated(
    argv: list[str], *, env: dict[str, str], out: int
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``argv`` in a new session, held at a gate; return it and the gate's fd (write ``go`` to release it).

    So a command can be journaled as started, with its pid, before it runs: a runner killed
    in between leaves a command that never ran, never one that ran unrecorded. Raises
    OSError (FileNotFoundError, PermissionError) for a command that cannot be executed, as
    starting it directly would.
    """
    check_runnable(argv[0], env.get("PATH", os.defpath))
    gate_r, gate_w = os.pipe()
    try:
        popen = subprocess.Popen(  # noqa: S603 - running the user's own commands is the point
            ["/bin/sh", "-c", _GATE, "runjournal-gate", *argv],
            stdin=gate_r, stdout=out, stderr=out, env=env, start_new_session=True, close_fds=True,
        )
    except BaseException:
        os.close(gate_w)
        raise
    finally:
        os.close(gate_r)
    return popen, gate_w


def check_runnable(command: str, path: str) -> None:
    """Raise what ``execvp`` would for ``command`` (not found, or not executable), before starting it."""
    if "/" in command:
        if not os.path.exists(command):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)
        if os.path.isdir(command) or not os.access(command, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), command)
        return
    if shutil.which(command, path=path) is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)


def release(gate: int) -> None:
    """Let a gated command run (and close the gate)."""
    try:
        os.write(gate, b"go\n")
    finally:
        os.close(gate)


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


