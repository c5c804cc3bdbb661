"""The liveness verdict: is the writer of a run alive, dead, or can we not tell?

A pure function of the run's state, the facts observed about its writer
(:data:`runjournal.journal.liveness.WriterFacts`) and the reader's ``now``: it never reads the clock,
``/proc`` or the filesystem itself. The decision table is in ``docs/liveness.md``.

Same host, the answer is certain: a different boot id, or a pid that is gone, a zombie or
a different process (other start ticks) means the writer is dead, unless some process
still holds the run's lock. Across hosts only time can tell: a run whose last event is
older than the lease (``lease_intervals`` heartbeat intervals, on the reader's clock) is
dead; a younger one is ``unknown``, never dead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from runjournal.journal.events import AbandonReason
from runjournal.journal.liveness import HostFacts, ServerFacts, WriterFacts
from runjournal.projections.state import RunState

Liveness = Literal["alive", "dead", "unknown"]

DEFAULT_LEASE_INTERVALS = 3.0
"""A writer on another host is presumed dead after this many heartbeat intervals of silence."""


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

    ``now`` is the reader's own clock (timezone-aware); it matters only for a writer on
    another host, whose run is dead after ``lease_intervals`` heartbeat intervals of silence.
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
    if facts.same_host:
        return _judge_same_host(state, facts, evidence)
    return _judge_other_host(state, facts, now, lease_intervals, evidence)


def no_writer_verdict() -> Verdict:
    """The verdict on a run without a ``started`` event: there is no writer to judge."""
    return Verdict("unknown", None, {"checked": [], "note": "no 'started' event: no writer recorded"})


def _judge_same_host(state: RunState, facts: HostFacts, evidence: dict[str, Any]) -> Verdict:
    writer = state.started.writer  # type: ignore[union-attr]
    evidence["checked"].append("boot_id")
    evidence |= {"boot_id_recorded": writer.boot_id, "boot_id_now": facts.boot_id_now}
    if facts.boot_id_now != writer.boot_id:
        # Nothing from an earlier boot can still run, whoever holds the lock now.
        _note_lock(facts, evidence)
        return Verdict("dead", AbandonReason.HOST_REBOOTED, evidence)
    evidence["checked"] += ["pid", "start_ticks"]
    evidence |= {"pid": writer.pid, "start_ticks_recorded": writer.start_ticks}
    process = facts.process
    evidence["start_ticks_now"] = process.start_ticks if process else None
    pid_state = _pid_state(writer.start_ticks, facts)
    evidence["pid_state"] = pid_state
    _note_lock(facts, evidence)
    if pid_state in ("alive", "stopped"):
        return Verdict("alive", None, evidence)
    if facts.lock_held:
        evidence["note"] = "the recorded process is gone but the run's lock is held (an inheriting child or a reconciler)"
        return Verdict("unknown", None, evidence)
    return Verdict("dead", AbandonReason.ORIGINATING_PROCESS_NOT_ALIVE, evidence)


def _pid_state(start_ticks: int, facts: HostFacts) -> str:
    process = facts.process
    if process is None:
        return "gone"
    if process.state == "zombie":
        return "zombie"
    if process.start_ticks != start_ticks:
        return "reused"
    return "stopped" if process.state == "stopped" else "alive"


def _note_lock(facts: WriterFacts, evidence: dict[str, Any]) -> None:
    evidence["checked"].append("lock")
    evidence["lock"] = {True: "held", False: "free", None: "unknown"}[facts.lock_held]


def _judge_other_host(
    state: RunState, facts: HostFacts, now: datetime, lease_intervals: float, evidence: dict[str, Any]
) -> Verdict:
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
        evidence["note"] = "the run's lock is held (by its writer over a shared file system, or by a reconciler)"
        return Verdict("unknown", None, evidence)
    if age is not None and age > lease:
        return Verdict("dead", AbandonReason.HEARTBEAT_EXPIRED, evidence)
    evidence["note"] = "written on another host and its lease has not expired: cannot tell from here"
    return Verdict("unknown", None, evidence)


def _judge_on_server(state: RunState, facts: ServerFacts, lease_intervals: float, evidence: dict[str, Any]) -> Verdict:
    """A database store: the writer's session lock is certain for every host; the clock is the server's.

    A free lock means the writer's session is gone (the server released it), so the writer
    can no longer append: dead. A held lock whose run has been silent (on the server's
    clock) for longer than the lease is a stopped or cut-off writer: ``unknown`` until the
    server drops the session (TCP keepalive), never dead while the lock is held.
    """
    interval = state.started.heartbeat_interval  # type: ignore[union-attr]
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
        "lease_seconds": lease_intervals * interval,
        "last_seq": state.last_seq,
    }
    if facts.lock_held is False:
        return Verdict("dead", AbandonReason.WRITER_SESSION_ENDED, evidence)
    if facts.lock_held is None:
        evidence["note"] = "the run's lock on the server could not be probed"
        return Verdict("unknown", None, evidence)
    if age is not None and age > lease_intervals * interval:
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


def explain(verdict: Verdict) -> str:
    """One line on why the verdict is what it is."""
    ev = verdict.evidence
    if verdict.reason is AbandonReason.HOST_REBOOTED:
        return f"host {ev.get('host')} rebooted since the run started (boot id changed)"
    if verdict.reason is AbandonReason.OPERATOR:
        return f"forced by {ev.get('operator')}: {ev.get('operator_reason')}"
    if ev.get("lock_scope") == "server":
        return _explain_server(verdict)
    if verdict.reason is AbandonReason.HEARTBEAT_EXPIRED or "age_seconds" in ev:
        return _explain_lease(verdict)
    if "pid_state" in ev:
        return _explain_pid(verdict)
    return str(ev.get("note", verdict.liveness))


def _explain_server(verdict: Verdict) -> str:
    ev = verdict.evidence
    silence = ev.get("silence_seconds")
    heard = "nothing received" if silence is None else f"last event received {silence:.0f}s ago (server clock)"
    if verdict.reason is AbandonReason.WRITER_SESSION_ENDED:
        return f"the writer's database session ended (run lock free on the server); {heard}"
    holder = ev.get("lock_holder") or {}
    where = f" from {holder.get('client_addr') or 'a local socket'}" if holder else ""
    return f"the writer's session{where} holds the run lock; {heard}, lease {ev.get('lease_seconds'):.0f}s"


_PID_WORDS = {
    "gone": "pid {pid} no longer exists",
    "zombie": "pid {pid} is a zombie (exited, not yet reaped)",
    "reused": "pid {pid} now belongs to another process (start ticks {start_ticks_now}, recorded {start_ticks_recorded})",
    "alive": "pid {pid} is alive",
    "stopped": "pid {pid} is stopped (SIGSTOP), not dead",
}


def _explain_pid(verdict: Verdict) -> str:
    ev = verdict.evidence
    text = _PID_WORDS[ev["pid_state"]].format(**ev)
    if verdict.liveness == "unknown":
        text += ", but the run's lock is still held"
    return f"{text} on {ev.get('host')}"


def _explain_lease(verdict: Verdict) -> str:
    ev = verdict.evidence
    age = ev.get("age_seconds")
    age_text = "no event" if age is None else f"last event {age:.0f}s ago"
    text = f"written on {ev.get('host')}: {age_text}, lease {ev.get('lease_seconds'):.0f}s"
    if ev.get("lock") == "held":
        text += ", lock held"
    return text
