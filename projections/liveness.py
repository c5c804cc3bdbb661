"""The liveness verdict: is the writer of a run alive, dead, or can we not tell?

A pure function of the run's state, the facts observed about its writer
(:data:`runjournal.journal.liveness.WriterFacts`) and the reader's ``now``: it never reads the clock,
``/proc`` or the filesystem itself. The decision table is in ``docs/liveness.md``.

The rules, in the order they apply (each one a row of the table):

* A held lock means "not dead", whatever the boot id or the pid say: the lock's holder is
  the writer (perhaps on another machine with the same host name, over a shared file
  system that honours ``flock``), a child that inherited it, or a reconciler at work.
* Same host and boot (boot ids compared normalised) and the same pid namespace: the pid is
  certain. Alive (or stopped) with the recorded start ticks is alive; gone, a zombie or
  another process (other start ticks, or another pid namespace) is dead.
* Same host, another boot, lock free: the host rebooted, dead.
* Same host and boot but another pid namespace, or another host: pids mean nothing here,
  so only the lock and time can tell. Lock free and silent past the lease
  (``lease_intervals`` heartbeat intervals, on the reader's clock) is dead; otherwise
  ``unknown``, never dead.
* A database store: the server's session lock and clock. Dead only when the lock is free
  *and* the run has been silent past its lease on the server's clock: a writer whose
  session was cut (a server restart) reconnects and takes its lock again within its lease.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from runjournal.journal.events import AbandonReason
from runjournal.journal.liveness import DEFAULT_LEASE_INTERVALS, HostFacts, ServerFacts, WriterFacts
from runjournal.journal.procfacts import normalise_boot_id
from runjournal.projections.state import RunState
from runjournal.projections.verdict_text import explain

__all__ = ["DEFAULT_LEASE_INTERVALS", "Liveness", "Verdict", "explain", "judge", "no_writer_verdict", "operator_verdict"]

Liveness = Literal["alive", "dead", "unknown"]



@dataclass(frozen=True, slots=True)
class Verdict:
    """The verdict on a run's writer: ``reason`` is set exactly when ``liveness`` is ``dead``."""

    liveness: Liveness
    reason: AbandonReason | None
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def dead(self) -> bool:
        """Whether the writer is certainly (same host) or presumably (lease expired) gone."""
        return self.liveness == "dead"

    def explain(self) -> str:
        """One line saying what was observed (for human-readable output)."""
        return explain(self)


def judge(
    state: RunState, facts: WriterFacts, now: datetime, lease_intervals: float = DEFAULT_LEASE_INTERVALS
) -> Verdict:
    """Decide whether the writer recorded in ``state.started`` is alive, from ``facts`` at ``now``.

    ``now`` is the reader's own clock (timezone-aware); it matters only where pids cannot
    tell (another host, another pid namespace), where a run is dead after ``lease_intervals``
    heartbeat intervals of silence with its lock free.
    """
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime (the reader's clock, e.g. datetime.now(UTC))")
    started = state.started
    if started is None:
        return no_writer_verdict()
    writer = started.writer
    evidence: dict[str, Any] = {"checked": ["host"], "host": writer.host, "host_now": facts.host_now}
    if isinstance(facts, ServerFacts):
        return _judge_on_server(state, facts, lease_intervals, evidence)
    if not facts.same_host:
        return _by_lease(state, facts, now, lease_intervals, evidence, _OTHER_HOST)
    evidence["checked"].append("boot_id")
    evidence |= {"boot_id_recorded": writer.boot_id, "boot_id_now": facts.boot_id_now}
    if normalise_boot_id(writer.boot_id) != facts.boot_id_now:
        return _other_boot(facts, evidence)
    evidence["checked"].append("pid_ns")
    evidence |= {"pid_ns_recorded": writer.pid_ns, "pid_ns_now": facts.pid_ns_now}
    if None not in (writer.pid_ns, facts.pid_ns_now) and writer.pid_ns != facts.pid_ns_now:
        return _by_lease(state, facts, now, lease_intervals, evidence, _OTHER_NAMESPACE)
    return _by_pid(state, facts, evidence)


def no_writer_verdict() -> Verdict:
    """The verdict on a run without a ``started`` event: there is no writer to judge."""
    return Verdict("unknown", None, {"checked": [], "note": "no 'started' event: no writer recorded"})


_OTHER_HOST = "written on another host and its lease has not expired: cannot tell from here"
_OTHER_NAMESPACE = ("written in another pid namespace (its pid means another process here) and its lease "
                    "has not expired: cannot tell from here")


def _other_boot(facts: HostFacts, evidence: dict[str, Any]) -> Verdict:
    """Same host name, another boot id: rebooted, unless the run's lock says someone holds it."""
    _note_lock(facts, evidence)
    if facts.lock_held is False:
        return Verdict("dead", AbandonReason.HOST_REBOOTED, evidence)
    evidence["note"] = (
        "the boot id differs, but the run's lock is held: a writer on another machine with this host name, "
        "over a shared file system that honours flock (or a reconciler)" if facts.lock_held else
        "the boot id differs, but the run's lock could not be probed"
    )
    return Verdict("unknown", None, evidence)


def _by_pid(state: RunState, facts: HostFacts, evidence: dict[str, Any]) -> Verdict:
    """Same host, boot and pid namespace: the recorded process is certain."""
    writer = state.started.writer  # type: ignore[union-attr]
    evidence["checked"] += ["pid", "start_ticks"]
    evidence |= {"pid": writer.pid, "start_ticks_recorded": writer.start_ticks}
    process = facts.process
    evidence["start_ticks_now"] = process.start_ticks if process else None
    pid_state = _pid_state(writer.start_ticks, writer.pid_ns, facts)
    evidence["pid_state"] = pid_state
    _note_lock(facts, evidence)
    if pid_state in ("alive", "stopped"):
        return Verdict("alive", None, evidence)
    if facts.lock_held:
        evidence["note"] = "the recorded process is gone but the run's lock is held (an inheriting child or a reconciler)"
        return Verdict("unknown", None, evidence)
    return Verdict("dead", AbandonReason.ORIGINATING_PROCESS_NOT_ALIVE, evidence)


def _pid_state(start_ticks: int, pid_ns: int | None, facts: HostFacts) -> str:
    process = facts.process
    if process is None:
        return "gone"
    if process.state == "zombie":
        return "zombie"
    if process.start_ticks != start_ticks or None not in (pid_ns, process.pid_ns) and process.pid_ns != pid_ns:
        return "reused"
    return "stopped" if process.state == "stopped" else "alive"


def _note_lock(facts: WriterFacts, evidence: dict[str, Any]) -> None:
    evidence["checked"].append("lock")
    evidence["lock"] = {True: "held", False: "free", None: "unknown"}[facts.lock_held]


def _by_lease(
    state: RunState, facts: HostFacts, now: datetime, lease_intervals: float, evidence: dict[str, Any], note: str
) -> Verdict:
    """Pids cannot tell (another host, another pid namespace): the lock, then the lease, decide."""
    interval = state.started.heartbeat_interval  # type: ignore[union-attr]
    lease = lease_intervals * interval
    last = state.last_event_at
    age = (now - last).total_seconds() if last is not None else None
    evidence["checked"] += ["last_event_age"]
    evidence |= {
        "last_seq": state.last_seq,
        "last_event_at": _iso(last),
        "now": _iso(now),
        "age_seconds": age,
        "heartbeat_interval": interval,
        "lease_intervals": lease_intervals,
        "lease_seconds": lease,
    }
    _note_lock(facts, evidence)
    if facts.lock_held:
        evidence["note"] = "the run's lock is held (by its writer, perhaps over a shared file system, or by a reconciler)"
        return Verdict("unknown", None, evidence)
    if age is not None and age > lease:
        return Verdict("dead", AbandonReason.HEARTBEAT_EXPIRED, evidence)
    evidence["note"] = note
    return Verdict("unknown", None, evidence)


def _judge_on_server(state: RunState, facts: ServerFacts, lease_intervals: float, evidence: dict[str, Any]) -> Verdict:
    """A database store: the writer's session lock is certain for every host; the clock is the server's.

    A free lock means the writer's session is gone (the server released it), but a writer
    cut off by a server restart or a dropped connection reconnects and takes its lock again:
    it is dead only once the run has also been silent, on the server's clock, for longer
    than the lease. A held lock is never dead: silent past the lease it is a stopped or
    cut-off writer, ``unknown`` until the server drops its session (TCP keepalive).
    """
    interval = state.started.heartbeat_interval  # type: ignore[union-attr]
    lease = lease_intervals * interval
    last, now = facts.last_received_at, facts.server_now
    age = (now - last).total_seconds() if last is not None and now is not None else None
    evidence["checked"] += ["server_lock", "server_clock"]
    evidence |= {
        "lock_scope": "server",
        "lock": {True: "held", False: "free", None: "unknown"}[facts.lock_held],
        "lock_holder": facts.lock_holder,
        "server_now": _iso(now),
        "last_received_at": _iso(last),
        "silence_seconds": age,
        "heartbeat_interval": interval,
        "lease_seconds": lease,
        "last_seq": state.last_seq,
    }
    silent = age is not None and age > lease
    if facts.lock_held is False and silent:
        return Verdict("dead", AbandonReason.WRITER_SESSION_ENDED, evidence)
    if facts.lock_held is False:
        evidence["note"] = "the writer's session ended, but its lease has not run out: it may be reconnecting"
        return Verdict("unknown", None, evidence)
    if facts.lock_held is None:
        evidence["note"] = "the run's lock on the server could not be probed"
        return Verdict("unknown", None, evidence)
    if silent:
        evidence["note"] = "the writer's session holds the lock but has been silent past its lease (stopped or cut off?)"
        return Verdict("unknown", None, evidence)
    return Verdict("alive", None, evidence)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def operator_verdict(verdict: Verdict, reason_text: str, by: str) -> Verdict:
    """The verdict when an operator forces an ``unknown`` run to be recorded abandoned.

    The observed evidence is kept, with what the liveness check said and who forced it.
    """
    evidence = dict(verdict.evidence)
    evidence |= {"liveness_observed": verdict.liveness, "operator": by, "operator_reason": reason_text}
    evidence["checked"] = [*verdict.evidence.get("checked", []), "operator"]
    return Verdict("dead", AbandonReason.OPERATOR, evidence)
