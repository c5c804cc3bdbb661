"""Verdicts in words: one line saying what was observed and why the verdict is what it is."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runjournal.journal.events import AbandonReason

if TYPE_CHECKING:
    from runjournal.projections.liveness import Verdict


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
    heard = "nothing received" if silence is None else f"last event received {silence:.1f}s ago (server clock)"
    if verdict.reason is AbandonReason.WRITER_SESSION_ENDED:
        return f"the writer's database session ended (run lock free on the server); {heard}, lease {ev.get('lease_seconds'):g}s"
    if ev.get("lock") == "free":
        return f"the writer's database session ended; {heard}, within its lease {ev.get('lease_seconds'):g}s"
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
    age_text = "no event" if age is None else f"last event {age:.1f}s ago"
    where = f"in another pid namespace on {ev.get('host')}" if "pid_ns_now" in ev else f"on {ev.get('host')}"
    text = f"written {where}: {age_text}, lease {ev.get('lease_seconds'):g}s"
    if ev.get("lock") == "held":
        text += ", lock held"
    return text
