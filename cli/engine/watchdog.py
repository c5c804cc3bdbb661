"""The step watchdog: no step process outlives the process that owns the run.

The owner (the attached runner, or the detached supervisor) starts this helper before its
first step and keeps the write end of a pipe whose read end only the helper holds. For
every command it starts, the owner sends the group's identity (see
:mod:`runjournal.journal.processes`); when the command has been waited for, it sends a
release. The helper blocks reading the pipe. End of file means the owner is gone, however
it went (SIGKILL, OOM kill, a crash) or that it finished: the helper then stops every group
not released, SIGTERM first and SIGKILL after :data:`GRACE` seconds, identity-checked,
and exits. No polling is needed to notice the owner's death and no pid can be mistaken.

The helper runs in a session of its own, so a harness's ``kill -9 -PGID`` of the owner's
process group (or a closed terminal) does not take it along before it has done its job;
it never outlives that job, because the owner's death is exactly what ends it. Should the
write end leak to another process (a library forking behind the owner's back), it also
checks every :data:`OWNER_CHECK_SECONDS` that the owner still exists.

What it cannot cover: a process that leaves its group on purpose (``setsid`` after a
double fork) is not in any recorded group. It is found by the run's marker in its
environment and reported (``docs/liveness.md``), not killed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from runjournal.cli.engine.selfexec import module_argv
from runjournal.journal.processes import GroupRecord, read_stat, stop_groups, view_consistent
from runjournal.journal.procfacts import own_pid

GRACE = 0.5
"""Seconds between SIGTERM and SIGKILL when the owner is gone (short: nobody is waiting for the steps)."""

OWNER_CHECK_SECONDS = 2.0


class Watchdog:
    """The owner's handle on its watchdog process: tell it about groups, then close it."""

    def __init__(self, process: subprocess.Popen[bytes], fd: int) -> None:
        self.process = process
        self._fd = fd
        self._lock = threading.Lock()
        self.broken: str | None = None

    @classmethod
    def start(cls, output: Path) -> Watchdog:
        """Start the watchdog of this process, its output appended to ``output``; raise OSError if it cannot start."""
        from runjournal.journal.fsio import open_regular

        read_end, write_end = os.pipe()  # both close-on-exec: no step ever holds the write end
        me = read_stat("self")
        argv = module_argv("runjournal.cli.engine.watchdog", "--fd", str(read_end), "--owner", str(own_pid()),
                           "--owner-ticks", str(me.start_ticks if me else -1))
        try:
            out = open_regular(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, pass_fds=(read_end,),
                    start_new_session=True, close_fds=True,
                )
            finally:
                os.close(out)
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        return cls(process, write_end)

    def watch(self, record: GroupRecord | None, local_pgid: int) -> None:
        """A command started: ``record`` is its group's identity, ``local_pgid`` its group as this process numbers it."""
        self._send({"add": None if record is None else record.to_data(), "local_pgid": local_pgid})

    def release(self, local_pgid: int) -> None:
        """The command leading ``local_pgid`` exited and its group was stopped (called before it is reaped)."""
        self._send({"drop": local_pgid})

    def _send(self, message: dict[str, object]) -> None:
        data = json.dumps(message).encode() + b"\n"
        with self._lock:
            if self.broken is not None or self._fd < 0:
                return
            try:
                os.write(self._fd, data)  # one line, far below PIPE_BUF: written whole
            except OSError as exc:
                self.broken = exc.strerror or str(exc)
                print(f"runjournal: warning: the step watchdog (pid {self.process.pid}) is gone ({self.broken}); "
                      "steps still running if this process dies will not be stopped", file=sys.stderr)

    def close(self, timeout: float = 5.0) -> None:
        """The run is over: close the pipe (the watchdog stops what was not released) and reap the watchdog."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)


def _owner_gone(pid: int, ticks: int) -> bool:
    stat = read_stat(pid)
    return stat is None or stat.exited or (ticks >= 0 and stat.start_ticks != ticks)


def watch_pipe(fd: int, owner: int, owner_ticks: int) -> dict[int, GroupRecord | None]:
    """Read the owner's messages until end of file (or the owner is gone); return the groups not released."""
    groups: dict[int, GroupRecord | None] = {}
    pending = b""
    while True:
        if not select.select([fd], [], [], OWNER_CHECK_SECONDS)[0]:
            if _owner_gone(owner, owner_ticks):
                return groups
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return groups
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            _apply(groups, line)


def _apply(groups: dict[int, GroupRecord | None], line: bytes) -> None:
    try:
        message = json.loads(line)
        if "drop" in message:
            groups.pop(int(message["drop"]), None)
        else:
            record = message.get("add")
            groups[int(message["local_pgid"])] = None if record is None else GroupRecord.from_data(record)
    except (ValueError, KeyError, TypeError) as exc:
        print(f"watchdog: ignoring a malformed message ({exc})", flush=True)


def stop_leftovers(groups: dict[int, GroupRecord | None], grace: float = GRACE) -> None:
    """Stop the groups the owner left: identity-checked where /proc allows, else by the owner's own numbers."""
    if not groups:
        return
    print(f"watchdog: the owner is gone; stopping {len(groups)} process group(s)", flush=True)
    checked = {pgid: r for pgid, r in groups.items() if r is not None and view_consistent()}
    for stop in stop_groups(checked.values(), grace):
        print(f"watchdog: group {stop.record.pgid}: {stop.outcome} {stop.pids} {stop.signals} {stop.note or ''}",
              flush=True)
    _stop_unchecked([pgid for pgid in groups if pgid not in checked], grace)


def _stop_unchecked(pgids: list[int], grace: float) -> None:
    """Groups without a usable identity (no /proc view of them): the owner released every group it
    reaped before reaping it, so each of these ids still names the owner's group."""
    if not pgids:
        return
    _killpgs(pgids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _any_group(pgids):
        time.sleep(0.02)
    _killpgs(pgids, signal.SIGKILL)
    print(f"watchdog: groups {pgids} signalled by number", flush=True)


def _killpgs(pgids: list[int], sig: int) -> None:
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


def _any_group(pgids: list[int]) -> bool:
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, 0)
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    """Entry point of the watchdog process (started by :meth:`Watchdog.start`, not by users)."""
    parser = argparse.ArgumentParser(prog="runjournal-watchdog")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--owner", type=int, required=True)
    parser.add_argument("--owner-ticks", type=int, default=-1)
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    stop_leftovers(watch_pipe(args.fd, args.owner, args.owner_ticks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
