"""Facts about processes and this host, as a reader can observe them (no verdicts here).

On Linux everything comes from ``/proc``; elsewhere from psutil. A process's start time is
its kernel start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), which,
unlike a wall-clock time, cannot drift or be faked by a clock change, and tells a reused pid
from the original process.

A process in a pid namespace of its own that still sees the host's ``/proc`` (``unshare
--pid --fork`` without a new mount of ``/proc``) has two pids: ``os.getpid()`` is its
namespace's number, and ``/proc/<that>`` is somebody else. Every fact here is therefore
read through ``/proc/self`` and recorded as ``/proc`` numbers it, with the inode of the
pid namespace (``/proc/<pid>/ns/pid``) so a reader can tell whether its own numbers mean
the same processes (:func:`own_pid`, :func:`pid_namespace`).

Off Linux (psutil): the boot id is ``boot-time:<seconds since the epoch>`` (the boot time,
whole seconds) and ``start_ticks`` is the process creation time in hundredths of a second
since the epoch; both are only ever compared with values from the same host.
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
    pid_ns: int | None = None
    """Inode of its pid namespace (None where it cannot be read, or off Linux)."""


@cache
def host_name() -> str:
    """This host's name as recorded in ``started``."""
    return socket.gethostname()


@cache
def boot_id() -> str:
    """An id that changes at every boot of this host, normalised (:func:`normalise_boot_id`)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return normalise_boot_id(f.read())
    except OSError:
        import psutil  # off Linux only; not a Linux dependency

        return f"boot-time:{int(psutil.boot_time())}"


def normalise_boot_id(text: str | None) -> str:
    """A boot id as written and compared: surrounding whitespace (the file's newline) removed, lowercase."""
    return (text or "").strip().lower()


def pid_namespace(pid: int | str = "self") -> int | None:
    """The inode of ``pid``'s pid namespace (``/proc/<pid>/ns/pid``); None off Linux or if it cannot be read."""
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def own_pid() -> int:
    """This process's pid as ``/proc`` numbers it (see the module docstring), else ``os.getpid()``."""
    try:
        return int(os.readlink("/proc/self"))
    except (OSError, ValueError):
        return os.getpid()


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
        state = _STATES.get(letter, "running" if letter in "RSD" else "other")
        return ProcessInfo(pid, ticks, state, pid_namespace(pid))
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
    """This process's start time in ticks, read through ``/proc/self`` (consistent with :func:`own_pid`)."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/stat", encoding="utf-8", errors="replace") as f:
                return parse_stat(f.read())[1]
        except OSError:
            return 0
    info = process_info(os.getpid())
    return info.start_ticks if info else 0
