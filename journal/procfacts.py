"""Facts about processes and this host, as a reader can observe them (no verdicts here).

On Linux everything comes from ``/proc``; elsewhere from psutil. A process's start time is
its kernel start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), which,
unlike a wall-clock time, cannot drift or be faked by a clock change, and tells a reused pid
from the original process.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from functools import cache
from typing import Literal

ProcState = Literal["running", "zombie", "stopped", "other"]


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """What the kernel says about one live pid."""

    pid: int
    start_ticks: int
    state: ProcState


@cache
def host_name() -> str:
    """This host's name as recorded in ``started``."""
    return socket.gethostname()


@cache
def boot_id() -> str:
    """An id that changes at every boot of this host."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        import psutil  # off Linux only; not a Linux dependency

        return f"boot-time:{int(psutil.boot_time())}"


def parse_stat(text: str) -> tuple[str, int]:
    """Return ``(state letter, start ticks)`` from the text of ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may itself contain spaces and ``)``,
    so the fields are split after the *last* ``)``.
    """
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); field 22 (starttime) is rest[19].
    return rest[0], int(rest[19])


_STATES: dict[str, ProcState] = {"Z": "zombie", "X": "zombie", "T": "stopped", "t": "stopped"}


def process_info(pid: int) -> ProcessInfo | None:
    """Return the kernel's facts about ``pid``, or None if no such process exists."""
    if pid <= 0:
        return None
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
                letter, ticks = parse_stat(f.read())
        except (FileNotFoundError, ProcessLookupError):
            return None
        return ProcessInfo(pid, ticks, _STATES.get(letter, "running" if letter in "RSD" else "other"))
    return _process_info_psutil(pid)


def _process_info_psutil(pid: int) -> ProcessInfo | None:  # pragma: no cover - non-Linux
    import psutil

    try:
        proc = psutil.Process(pid)
        status = proc.status()
        ticks = int(proc.create_time() * 100)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    state: ProcState = "zombie" if status == psutil.STATUS_ZOMBIE else (
        "stopped" if status == psutil.STATUS_STOPPED else "running")
    return ProcessInfo(pid, ticks, state)


def own_start_ticks() -> int:
    """This process's start time in ticks."""
    info = process_info(os.getpid())
    return info.start_ticks if info else 0
