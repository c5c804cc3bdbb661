"""The processes a run started: who they are, whether they still run, and stopping them safely.

The workflow runner starts every step and item command in a process group of its own and
records the group's identity in the journal (the ``process`` of the ``step-progress`` event
that starts the unit): the leader's pid and group id as ``/proc`` numbers them, its start
ticks (``/proc/<pid>/stat`` field 22), the boot id and the inode of its pid namespace.

Nothing here ever signals a process whose identity does not match such a record: the boot
id must be this boot's, the leader (while it exists) must have the recorded start ticks and
pid namespace, and a group whose leader is gone is reached member by member, each checked
(start ticks not before the leader's, same pid namespace) through a pidfd, so a pid reused
meanwhile is never hit. A process that left its group on purpose (``setsid`` after a double
fork) is out of reach by design; it is found, not stopped, by the run's marker in its
environment (``RUNJOURNAL_RUN_ID``, which every step inherits), see :func:`marked_processes`.

This module imports only the standard library and :mod:`journal.procfacts`: the step
watchdog, a process of its own, starts with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from runjournal.journal.procfacts import boot_id, normalise_boot_id, own_pid, pid_namespace

RUN_MARKER = "RUNJOURNAL_RUN_ID"
"""Environment variable every step inherits: the run id, so a run's processes can be found."""
STEP_MARKER = "RUNJOURNAL_STEP"
ITEM_MARKER = "RUNJOURNAL_ITEM"

POLL_SECONDS = 0.02
SETTLE_SECONDS = 2.0
"""How long to wait, after SIGKILL, for the killed processes to be gone before reporting."""

_LINUX = sys.platform.startswith("linux")


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` this module needs."""

    pid: int
    state: str
    ppid: int
    pgid: int
    sid: int
    start_ticks: int

    @property
    def exited(self) -> bool:
        """A zombie (or dead) process: it runs nothing any more."""
        return self.state in ("Z", "X")


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """A recorded process group: the fields of a ``step-progress`` event's ``process``."""

    pid: int
    pgid: int
    start_ticks: int
    boot_id: str
    pid_ns: int | None = None

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> GroupRecord:
        """From the JSON object the journal holds."""
        return cls(int(data["pid"]), int(data["pgid"]), int(data["start_ticks"]), str(data["boot_id"]),
                   None if data.get("pid_ns") is None else int(data["pid_ns"]))

    def to_data(self) -> dict[str, Any]:
        """The JSON object the journal holds."""
        return {"pid": self.pid, "pgid": self.pgid, "start_ticks": self.start_ticks, "boot_id": self.boot_id,
                "pid_ns": self.pid_ns}


def parse_stat_line(text: str) -> ProcStat:
    """Parse ``/proc/<pid>/stat``; the command name may hold spaces and ``)``, so split after the last ``)``."""
    pid = int(text[: text.index(" ")])
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); ppid, pgrp, session are fields 4-6; starttime is field 22.
    return ProcStat(pid, rest[0], int(rest[1]), int(rest[2]), int(rest[3]), int(rest[19]))


def read_stat(pid: int | str) -> ProcStat | None:
    """``/proc/<pid>/stat`` of ``pid`` (or ``"self"``), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            return parse_stat_line(f.read())
    except (OSError, ValueError, IndexError):
        return None


def view_consistent() -> bool:
    """Whether ``/proc`` numbers processes as this process's own pid namespace does.

    Only then may a pid read from ``/proc`` be passed to ``kill``; otherwise this process
    reports what it cannot check instead of signalling.
    """
    return not _LINUX or own_pid() == os.getpid()


def child_proc_pid(pid: int) -> int | None:
    """``/proc``'s number for our child ``pid`` (our namespace's number); None if it cannot be found."""
    if view_consistent():
        return pid
    me = own_pid()
    for task in _listdir(f"/proc/{me}/task"):
        with contextlib.suppress(OSError, ValueError):
            for candidate in open(f"/proc/{me}/task/{task}/children").read().split():
                if _innermost_pid(int(candidate)) == pid:
                    return int(candidate)
    return None


def _innermost_pid(pid: int) -> int | None:
    """The last ``NSpid`` entry of ``pid``: its number in its own pid namespace."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return None


def group_record(child_pid: int) -> GroupRecord | None:
    """The identity of the process group our child ``child_pid`` leads (started with ``setsid``).

    None off Linux or when ``/proc`` does not show the child (it is recorded without identity).
    """
    if not _LINUX:
        return None
    proc_pid = child_proc_pid(child_pid)
    stat = read_stat(proc_pid) if proc_pid is not None else None
    if stat is None:
        return None
    return GroupRecord(stat.pid, stat.pgid, stat.start_ticks, normalise_boot_id(boot_id()), pid_namespace(stat.pid))


def all_stats() -> Iterator[ProcStat]:
    """Every process ``/proc`` shows."""
    for name in _listdir("/proc"):
        if name.isdigit():
            stat = read_stat(name)
            if stat is not None:
                yield stat


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


GroupState = Literal["alive", "gone", "unchecked"]


@dataclass(frozen=True, slots=True)
class GroupFacts:
    """What was observed about a recorded group: ``members`` are its live processes (``/proc`` pids).

    ``leader_verified`` means the leader still exists with the recorded identity, so the
    whole group can be signalled at once (``killpg``).
    """

    record: GroupRecord
    state: GroupState
    members: tuple[ProcStat, ...] = ()
    leader_verified: bool = False
    note: str | None = None


def observe_group(record: GroupRecord, stats: list[ProcStat] | None = None) -> GroupFacts:
    """Look for the live processes of ``record``'s group (``stats``: a /proc scan to reuse).

    A group recorded in this process's own pid namespace is judged with certainty. One
    recorded in another namespace is ``alive`` when its processes are found with the recorded
    identity, and ``unchecked`` otherwise: its pids may be numbered differently from here.
    """
    if normalise_boot_id(record.boot_id) != normalise_boot_id(boot_id()):
        return GroupFacts(record, "gone", note="recorded in an earlier boot: nothing of it can run")
    if not _LINUX:
        return GroupFacts(record, "unchecked", note="process groups are only checked on Linux")
    own_ns = pid_namespace("self")
    foreign = None not in (record.pid_ns, own_ns) and record.pid_ns != own_ns
    leader = read_stat(record.pid)
    if leader is not None and not _same_leader(leader, record):
        if foreign:
            return GroupFacts(record, "unchecked", note=_FOREIGN_NOTE)
        return GroupFacts(record, "gone", note=f"pid {record.pid} now belongs to another process")
    scan = stats if stats is not None else list(all_stats())
    verified = leader is not None
    members = tuple(s for s in scan if s.pgid == record.pgid and not s.exited and _member_of(s, record, verified))
    if not members and foreign:
        return GroupFacts(record, "unchecked", note=_FOREIGN_NOTE)
    return GroupFacts(record, "alive" if members else "gone", members, verified and bool(members))


_FOREIGN_NOTE = "recorded in another pid namespace and not found from here"


def _same_leader(stat: ProcStat, record: GroupRecord) -> bool:
    if stat.start_ticks != record.start_ticks or stat.pgid != record.pgid:
        return False
    return record.pid_ns is None or pid_namespace(stat.pid) in (record.pid_ns, None)


def _member_of(stat: ProcStat, record: GroupRecord, leader_verified: bool) -> bool:
    """A process in the group's id is ours: for sure while the verified leader holds the id, else if
    it started after the leader, in the leader's pid namespace."""
    if leader_verified:
        return True
    if stat.start_ticks < record.start_ticks:
        return False
    return record.pid_ns is None or pid_namespace(stat.pid) == record.pid_ns


StopOutcome = Literal["killed", "gone", "not-permitted", "survived", "unchecked"]


@dataclass(slots=True)
class GroupStop:
    """What stopping one recorded group did: ``outcome``, the pids found alive, the signals sent."""

    record: GroupRecord
    outcome: StopOutcome
    pids: list[int] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)
    note: str | None = None

    def to_data(self) -> dict[str, Any]:
        """As evidence in the journal."""
        data: dict[str, Any] = {"outcome": self.outcome, "pgid": self.record.pgid, "pids": sorted(self.pids),
                                "signals": self.signals}
        if self.note:
            data["note"] = self.note
        return data


def stop_groups(records: Iterable[GroupRecord], grace: float, *, settle: float = SETTLE_SECONDS) -> list[GroupStop]:
    """Stop every live process of ``records``: SIGTERM, then SIGKILL after ``grace`` seconds.

    All groups are signalled together, so stopping many costs one grace period. Each
    result says whether its processes were found alive and killed, were already gone, could
    not be signalled (another user's), survived, or could not be checked from here.
    """
    stops = [GroupStop(r, "gone") for r in records]
    if not stops:
        return stops
    for stop, facts in zip(stops, _observe_all([s.record for s in stops]), strict=True):
        _first_look(stop, facts)
    live = [s for s in stops if s.outcome == "killed"]
    _signal_all(live, signal.SIGTERM)
    live = _wait_gone(live, grace)
    _signal_all(live, signal.SIGKILL)
    for stop in _wait_gone(live, settle):
        stop.outcome = "survived" if stop.outcome == "killed" else stop.outcome
    return stops


def _observe_all(records: list[GroupRecord]) -> list[GroupFacts]:
    """Observe every record with one /proc scan, made only if some record is of this boot."""
    this_boot = normalise_boot_id(boot_id())
    needed = _LINUX and any(normalise_boot_id(r.boot_id) == this_boot for r in records)
    scan = list(all_stats()) if needed else []
    return [observe_group(r, scan) for r in records]


def _first_look(stop: GroupStop, facts: GroupFacts) -> None:
    if facts.state == "unchecked":
        stop.outcome, stop.note = "unchecked", facts.note
    elif facts.state == "alive" and not view_consistent():
        stop.outcome, stop.pids = "unchecked", [m.pid for m in facts.members]
        stop.note = "found alive, but this process's pid namespace numbers processes unlike /proc: not signalled"
    elif facts.state == "alive":
        stop.outcome = "killed"
        stop.pids = [m.pid for m in facts.members]
    else:
        stop.note = facts.note


def _signal_all(stops: list[GroupStop], sig: int) -> None:
    for stop in stops:
        facts = observe_group(stop.record)
        if facts.state != "alive":
            continue
        stop.pids = sorted(set(stop.pids) | {m.pid for m in facts.members})
        if _signal_group(facts, sig) == "not-permitted":
            stop.outcome = "not-permitted"
            stop.note = "permission denied: the processes belong to another user"
        elif signal.Signals(sig).name not in stop.signals:
            stop.signals.append(signal.Signals(sig).name)


def _wait_gone(stops: list[GroupStop], seconds: float) -> list[GroupStop]:
    """Poll until every group of ``stops`` is gone or ``seconds`` pass; return those still alive."""
    deadline = time.monotonic() + seconds
    live = [s for s in stops if s.outcome == "killed"]
    while live:
        live = [s for s in live if observe_group(s.record).state == "alive"]
        if not live or time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    return live


def _signal_group(facts: GroupFacts, sig: int) -> str:
    """Signal the group: at once through ``killpg`` while its verified leader holds the id, else each checked member."""
    try:
        if facts.leader_verified:
            os.killpg(facts.record.pgid, sig)
        else:
            for member in facts.members:
                signal_checked(member, sig)
    except PermissionError:
        return "not-permitted"
    except ProcessLookupError:
        pass
    return "sent"


def signal_checked(expected: ProcStat, sig: int) -> bool:
    """Send ``sig`` to ``expected.pid`` only if it is still that process (same start ticks and group).

    Through a pidfd where the kernel has them: the check and the signal then address one
    process, even if the pid is reused in between. Returns whether a signal was sent.
    """
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        now = read_stat(expected.pid)
        if now is None or (now.start_ticks, now.pgid) != (expected.start_ticks, expected.pgid):
            return False
        os.kill(expected.pid, sig)
        return True
    try:
        fd = opener(expected.pid)
    except ProcessLookupError:
        return False
    try:
        now = read_stat(expected.pid)
        if now is None or (now.start_ticks, now.pgid) != (expected.start_ticks, expected.pgid):
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class MarkedProcess:
    """A live process carrying a run's marker in its environment: which unit started it, and its group."""

    stat: ProcStat
    step: str | None
    item: str | None


def marked_processes(run_id: str, *, not_before: int = 0) -> tuple[list[MarkedProcess], int]:
    """Live processes whose environment names ``run_id`` (started at or after tick ``not_before``).

    Returns them and the number of processes whose environment could not be read (another
    user's, without the privilege to look). Linux only (elsewhere: nothing found).
    """
    if not _LINUX or not view_consistent():
        return [], 0
    found: list[MarkedProcess] = []
    unreadable = 0
    needle = f"{RUN_MARKER}={run_id}".encode()
    for stat in all_stats():
        if stat.exited or stat.start_ticks < not_before or stat.pid == os.getpid():
            continue
        try:
            with open(f"/proc/{stat.pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except PermissionError:
            unreadable += 1
            continue
        except OSError:
            continue
        if needle in env:
            found.append(MarkedProcess(stat, _env_value(env, STEP_MARKER), _env_value(env, ITEM_MARKER)))
    return found, unreadable


def _env_value(env: list[bytes], key: str) -> str | None:
    prefix = f"{key}=".encode()
    for entry in env:
        if entry.startswith(prefix):
            return entry[len(prefix):].decode("utf-8", "replace")
    return None
