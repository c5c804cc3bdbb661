"""What the read commands show: a run's projected state as the documented JSON objects.

The field names here are the stable interface described in ``docs/cli.md``; the commands
only choose which view to print. Times are ISO 8601 UTC strings with six fractional
digits, as in the journal. The text forms are in :mod:`cli.textviews`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runjournal.cli.rendering.textfmt import run_span
from runjournal.journal.events import TIMESTAMP_FORMAT, Event
from runjournal.journal.status import DERIVED_ABANDONED, UNREADABLE
from runjournal.projections.liveness import Verdict
from runjournal.projections.reconcile import CurrentState
from runjournal.projections.state import ItemState, RunState, StepState, shown_unit_status

_ENDED = ("succeeded", "failed", "skipped")



def display_status(current: CurrentState) -> str:
    """The status to show: the fold's; ``abandoned?`` for a dead writer not recorded; ``unreadable``."""
    if current.error is not None and current.state.started is None:
        return UNREADABLE
    return current.status


def display_reason(current: CurrentState) -> str | None:
    """The terminal event's reason, the derived verdict's for ``abandoned?``, or the read error."""
    if display_status(current) == UNREADABLE:
        return str(current.error)
    if current.damage is not None:
        return str(current.damage)
    return current.reason


unit_status = shown_unit_status
"""A step's or item's status to show (see :func:`runjournal.projections.state.shown_unit_status`)."""


def run_duration(current: CurrentState, now: datetime | None = None) -> timedelta | None:
    """How long the run ran: to its terminal event; for abandoned runs, to its last progress; else until ``now``."""
    state = current.state
    return run_span(display_status(current), state.started_at, state.ended_at, state.last_activity, now)


def iso(moment: datetime | None) -> str | None:
    """A timestamp for JSON: ISO 8601 in UTC with six fractional digits, as in the journal."""
    return None if moment is None else moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def run_summary(current: CurrentState, path: Path) -> dict[str, Any]:
    """The history object of a run (``show`` extends it)."""
    state = current.state
    writer = state.started.writer if state.started else None
    duration = run_duration(current) if state.is_terminal or display_status(current) == DERIVED_ABANDONED else None
    return {
        "run_id": current.run_id,
        "workflow": state.workflow,
        "status": display_status(current),
        "reason": display_reason(current),
        "started_at": iso(state.started_at),
        "ended_at": iso(state.ended_at),
        "duration_s": None if duration is None else round(duration.total_seconds(), 6),
        "host": writer.host if writer else None,
        "pid": writer.pid if writer else None,
        "steps_done": state.steps_done,
        "steps_total": state.steps_total,
        "rerun_of": state.started.rerun_of if state.started else None,
        "path": str(path),
        "error": None if current.error is None else str(current.error),
        "damage": None if current.damage is None else damage_object(current.damage),
    }


def damage_object(damage: Any) -> dict[str, Any]:
    """Where and why a damaged run stops verifying (its first bad line)."""
    return {"path": damage.path, "line": damage.line, "offset": damage.offset, "reason": damage.reason,
            "shown_up_to_line": damage.line - 1}


def run_detail(current: CurrentState, path: Path, *, steps: bool = True) -> dict[str, Any]:
    """The ``show`` object of a run: the summary plus steps, items, evidence, late events and anomalies.

    ``steps=False`` leaves out the per-step and per-item lists (the text form prints those
    from the state itself, and a run of a million steps should not be held twice).
    """
    state = current.state
    terminal = state.terminal
    derived = current.derived
    detail = run_summary(current, path)
    completed, in_flight, never_started = progress_lists(state) if steps else ([], [], [])
    detail.update(
        recorded_status=state.status,
        writer=state.started.writer.model_dump(mode="json") if state.started else None,
        workflow_file=state.started.workflow_file if state.started else None,
        terminal=terminal.model_dump(mode="json") if terminal else None,
        evidence=_evidence(current),
        checker=terminal.checker.model_dump(mode="json") if terminal and terminal.type == "abandoned" else None,
        derived=None if derived is None else _verdict_object(derived),
        last_seq=state.last_seq,
        events=state.events,
        steps=[step_object(step, state) for step in state.steps.values()] if steps else [],
        completed=completed,
        in_flight=in_flight,
        never_started=never_started,
        late_events=[{"seq": e.seq, "type": e.type, "ts": iso(e.ts)} for e in state.late_events],
        anomalies=[{"seq": a.seq, "kind": a.kind, "message": a.message} for a in state.anomalies],
    )
    return detail


def _evidence(current: CurrentState) -> dict[str, Any] | None:
    terminal = current.state.terminal
    if terminal is not None and terminal.type == "abandoned":
        return dict(terminal.evidence)
    if display_status(current) == DERIVED_ABANDONED and current.derived is not None:
        return dict(current.derived.evidence)
    return None


def _verdict_object(verdict: Verdict) -> dict[str, Any]:
    reason = verdict.reason.value if verdict.reason is not None else None
    return {"liveness": verdict.liveness, "reason": reason, "explanation": verdict.explain(),
            "evidence": verdict.evidence}


def liveness_text(current: CurrentState) -> str | None:
    """One line on the writer's liveness: the derived verdict, or the recorded ``abandoned`` evidence."""
    terminal = current.state.terminal
    if terminal is not None and terminal.type == "abandoned":
        text = Verdict("dead", terminal.reason, dict(terminal.evidence)).explain()
        if terminal.evidence.get("still_running"):
            text += "; processes of the run were still running (see work)"
        return text
    if current.derived is not None and not current.state.is_terminal:
        return f"{current.derived.liveness}: {current.derived.explain()}"
    return None


def step_object(step: StepState, run: RunState | None = None) -> dict[str, Any]:
    """One step of ``show``: state, times, exit code, fan-out progress and items (``run``: see :func:`unit_status`)."""
    run = run or RunState()
    return {
        "name": step.name,
        "status": unit_status(run, step.state),
        "planned": step.planned,
        "started_at": iso(step.started_at),
        "ended_at": iso(step.ended_at),
        "exit_code": step.exit_code,
        "message": step.message,
        "done": step.done,
        "total": step.total,
        "items": [item_object(item, run) for item in step.items.values()],
    }


def item_object(item: ItemState, run: RunState | None = None) -> dict[str, Any]:
    """One item of a fan-out step."""
    return {
        "name": item.name,
        "status": unit_status(run or RunState(), item.state),
        "exit_code": item.exit_code,
        "started_at": iso(item.started_at),
        "ended_at": iso(item.ended_at),
        "message": item.message,
    }


def detail_streams(state: RunState) -> dict[str, Iterator[dict[str, Any]]]:
    """The lists of :func:`run_detail` that grow with the run, as iterators (for a streamed ``show --json``)."""
    return {
        "steps": (step_object(step, state) for step in state.steps.values()),
        "completed": progress_units(state, "ended"),
        "in_flight": progress_units(state, "started"),
        "never_started": progress_units(state, "pending"),
    }


def progress_lists(state: RunState) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Units of work split into completed, in flight and never started.

    A fan-out step counts by its items (``item`` set), any other step as itself
    (``item`` null). Completed means ended: succeeded, failed or skipped; the items of a
    skipped step that have no state of their own count as skipped with it.
    """
    return tuple(list(progress_units(state, bucket)) for bucket in ("ended", "started", "pending"))  # type: ignore[return-value]


def progress_units(state: RunState, bucket: str) -> Iterator[dict[str, Any]]:
    """The units of one list of :func:`progress_lists` (``ended``, ``started`` or ``pending``), in step order."""
    for step in state.steps.values():
        units: Iterable[StepState | ItemState] = step.items.values() if step.items else (step,)
        for unit in units:
            status = "skipped" if unit.state == "pending" and step.state == "skipped" else unit.state
            if ("ended" if status in _ENDED else status) == bucket:
                item = unit.name if isinstance(unit, ItemState) else None
                yield {"step": step.name, "item": item, "status": unit_status(state, status)}


def plain_event_object(
    obj: dict[str, Any], state: RunState, counts: tuple[int, int] | None = None
) -> dict[str, Any]:
    """:func:`event_object` of a plain event (its JSON object as the model dumps it): the same fields.

    ``counts`` are ``(steps_done, steps_total)`` of ``state`` if the caller has them.
    """
    done, total = counts if counts is not None else (state.steps_done, state.steps_total)
    return {
        "seq": obj["seq"], "type": obj["type"], "ts": obj["ts"], "status_after": state.status,
        "steps_done": done, "steps_total": total, "event": obj,
    }


def event_object(event: Event, state: RunState) -> dict[str, Any]:
    """One event of ``replay``/``follow`` with the status after it."""
    return plain_event_object(event.model_dump(mode="json"), state)
