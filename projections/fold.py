"""The status fold: a pure function from a run's events to its :class:`RunState`.

It never reads the clock or the filesystem. It is incremental (``fold(tail,
start=fold(head)) == fold(head + tail)``) and total: any sequence of valid events folds
without raising, and oddities become :class:`Anomaly` entries.

The first terminal event wins; events after it are :class:`LateEvent` entries and change
nothing (a writer that was only stopped, not dead, may come back after being abandoned).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from runjournal.journal.events import Event, ItemsPlanned, Started, StepProgress
from runjournal.journal.plain import PlainProgress, PlainView, plain_event
from runjournal.journal.status import EVENT_STATUS, TERMINAL_TYPES
from runjournal.projections.state import MAX_KEPT, Anomaly, ItemState, LateEvent, RunState, StepState, Terminal

STATUS_AFTER = EVENT_STATUS
"""Event type -> the run status after it (the status table, :data:`runjournal.journal.status.EVENT_STATUS`)."""

_ENDED = ("succeeded", "failed", "skipped")


def fold(events: Iterable[Event], start: RunState | None = None) -> RunState:
    """Fold ``events`` onto ``start`` (a fresh state by default) and return the new state.

    ``start`` is not modified (it is copied once, never per event). ``events`` is iterated
    exactly once.
    """
    return fold_into(start.copy() if start is not None else RunState(), events)


def fold_into(state: RunState, events: Iterable[Event]) -> RunState:
    """Fold ``events`` onto ``state`` in place and return it: for callers that own ``state`` (no copy)."""
    for event in events:
        apply(state, event)
    return state


def fold_steps(events: Iterable[Event], start: RunState | None = None) -> Iterator[tuple[Event, RunState]]:
    """Yield ``(event, state after it)`` for each event; the state object is reused, copy it to keep it."""
    state = start.copy() if start is not None else RunState()
    for event in events:
        apply(state, event)
        yield event, state


def fold_plain(objects: Iterable[dict[str, Any]], start: RunState | None = None) -> RunState:
    """:func:`fold_into` over plain events (:mod:`runjournal.journal.plain`): the same state, no model per event.

    ``start`` is folded into, in place, and returned (callers hand over a state they own,
    typically one just loaded from a snapshot); a fresh state when None. Equal to
    :func:`fold` of the same events (``tests/test_plain.py``).
    """
    state = start if start is not None else RunState()
    for obj in objects:
        apply(state, plain_event(obj))
    return state


def fold_plain_steps(
    objects: Iterable[dict[str, Any]], start: RunState | None = None
) -> Iterator[tuple[dict[str, Any], Event | PlainView, RunState]]:
    """Yield ``(object, event, state after it)`` for each plain event; ``event`` is what the fold read
    (a model, or a light view with the same attributes). The state object is reused."""
    state = start.copy() if start is not None else RunState()
    for obj in objects:
        event = plain_event(obj)
        apply(state, event)
        yield obj, event, state


def apply(state: RunState, event: Event | PlainView) -> None:
    """Fold one event into ``state`` in place (the fold's private step; callers use :func:`fold`).

    ``event`` is a model or a plain view (:mod:`runjournal.journal.plain`) with the same attributes.
    """
    if state.events and event.seq != state.last_seq + 1:
        _anomaly(state, event, "seq-gap", f"seq {event.seq} follows {state.last_seq}")
    state.events += 1
    state.last_seq = event.seq
    state.last_event_at = event.ts
    if state.run_id is None:
        state.run_id = event.run_id
    if state.terminal is not None:
        state.late_count += 1
        if len(state.late_events) < MAX_KEPT:
            state.late_events.append(LateEvent(event.seq, event.type, event.ts))
        return
    if event.type != "abandoned":  # a reconciler's event is no sign of the writer's life
        state.last_seen_at = event.ts
    if event.type == "step-progress":  # a model or a plain view (no isinstance: the view is no model)
        _apply_progress(state, event)  # type: ignore[arg-type]
    elif isinstance(event, Started):
        _apply_started(state, event)
    elif isinstance(event, ItemsPlanned):
        _apply_items_planned(state, event)
    elif event.type in TERMINAL_TYPES:
        _apply_terminal(state, event)  # type: ignore[arg-type]


Progress = StepProgress | PlainProgress


def _anomaly(state: RunState, event: Event | PlainView, kind: str, message: str) -> None:
    # Counted always, kept up to a bound: a hostile journal must not grow the state without limit.
    state.anomaly_count += 1
    if len(state.anomalies) < MAX_KEPT:
        state.anomalies.append(Anomaly(event.seq, kind, message))


def _apply_started(state: RunState, event: Started) -> None:
    if state.started is not None:
        _anomaly(state, event, "second-started", f"a second 'started' event (seq {event.seq}) was ignored")
        return
    if state.events > 1:
        _anomaly(state, event, "started-not-first", f"'started' is event #{state.events}, not the first")
    state.started = event
    state.status = "running"
    for planned in event.steps:
        step = state.steps.setdefault(planned.name, StepState(planned.name))
        step.planned = True
        for item in planned.items or ():
            step.items.setdefault(item, ItemState(item))
        if planned.items is not None:
            step.total = planned.item_count if planned.item_count is not None else len(planned.items)


def _apply_items_planned(state: RunState, event: ItemsPlanned) -> None:
    step = state.steps.get(event.step)
    if step is None or state.started is None:
        _anomaly(state, event, "unplanned-items", f"items planned for step {event.step!r} not in 'started'")
        if step is None:
            step = state.steps[event.step] = StepState(event.step, planned=False)
    items = step.items
    for name in event.items:
        if name not in items:
            items[name] = ItemState(name)


def _apply_progress(state: RunState, event: Progress) -> None:
    if state.started is None:
        _anomaly(state, event, "before-started", f"step {event.step!r} progress before 'started'")
    step = state.steps.get(event.step)
    if step is None:
        step = state.steps[event.step] = StepState(event.step, planned=False)
    if event.done is not None:
        step.done = event.done
    if event.total is not None:
        step.total = event.total
    if event.item is not None:
        _apply_item(state, step, event)
        return
    _apply_step_state(state, step, event)


def _apply_step_state(state: RunState, step: StepState, event: Progress) -> None:
    if event.state == "started":
        if step.state != "pending":
            _anomaly(state, event, "step-restarted", f"step {step.name!r} started again while {step.state}")
        step.started_at = event.ts
        step.process = event.process
    else:
        if step.state == "pending" and event.state != "skipped":
            _anomaly(state, event, "end-before-start", f"step {step.name!r} {event.state} before it started")
        elif step.state in _ENDED:
            _anomaly(state, event, "step-ended-twice", f"step {step.name!r} {event.state} after it {step.state}")
        step.ended_at = event.ts
    step.state = event.state
    if event.exit_code is not None:
        step.exit_code = event.exit_code
    if event.message is not None:
        step.message = event.message


def _apply_item(state: RunState, step: StepState, event: Progress) -> None:
    name = event.item or ""
    item = step.items.get(name)
    if item is None:
        item = step.items[name] = ItemState(name)
    if step.state == "pending":
        # An item event implies its step is under way even if the step's own start is missing.
        step.state = "started"
        step.started_at = event.ts
    new_state = event.item_state or event.state
    if new_state == "started":
        item.started_at = event.ts
        item.process = event.process
    else:
        if item.state == "pending" and new_state != "skipped":
            _anomaly(state, event, "end-before-start", f"item {name!r} of {step.name!r} {new_state} before it started")
        item.ended_at = event.ts
    item.state = new_state
    if event.exit_code is not None:
        item.exit_code = event.exit_code
    if event.message is not None:
        item.message = event.message


def _apply_terminal(state: RunState, event: Terminal) -> None:
    if state.started is None:
        _anomaly(state, event, "before-started", f"terminal {event.type!r} before 'started'")
    state.terminal = event
    status = STATUS_AFTER[event.type]
    state.status = status  # type: ignore[assignment]
