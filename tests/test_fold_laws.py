"""The laws of the status fold: incremental equals batch, sticky terminal, totality, a complete status table."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from runjournal.journal.events import EVENT_TYPES, Event
from runjournal.journal.status import TERMINAL_TYPES
from runjournal.journal.testing import (
    event_streams,
    events,
    make_abandoned,
    make_cancelled,
    make_failed,
    make_heartbeat,
    make_items_planned,
    make_progress,
    make_started,
    make_succeeded,
    scrambled_streams,
)
from runjournal.projections.fold import STATUS_AFTER, fold, fold_steps
from runjournal.projections.state import RunState, state_from_json, state_to_json


def _first_terminal(stream: list[Event]) -> int | None:
    return next((i for i, e in enumerate(stream) if e.type in TERMINAL_TYPES), None)


# ---------------------------------------------------------------- incremental


@given(event_streams())
def test_incremental_fold_equals_batch_fold_at_every_split(stream: list[Event]) -> None:
    """Folding a tail onto the fold of its head gives the fold of the whole stream, for every split point."""
    whole = fold(stream)
    for cut in range(len(stream) + 1):
        head = fold(stream[:cut])
        before = head.copy()
        assert fold(stream[cut:], start=head) == whole
        assert head == before  # the start state is not modified


@given(event_streams(), st.data())
def test_fold_resumes_from_a_json_snapshot(stream: list[Event], data: st.DataObject) -> None:
    """A state saved as JSON and loaded back resumes the fold exactly (what a read model relies on)."""
    cut = data.draw(st.integers(0, len(stream)))
    snapshot = state_from_json(state_to_json(fold(stream[:cut])))
    assert fold(stream[cut:], start=snapshot) == fold(stream)


# ---------------------------------------------------------------- sticky terminal


@given(event_streams(late_events=True))
def test_first_terminal_wins_and_later_events_are_late(stream: list[Event]) -> None:
    """After the first terminal event, later events (even another terminal) are late events and change nothing."""
    k = _first_terminal(stream)
    assert k is not None
    at_terminal = fold(stream[: k + 1])
    final = fold(stream)
    assert final.terminal == stream[k]
    assert final.status == STATUS_AFTER[stream[k].type]
    assert [(e.seq, e.type, e.ts) for e in final.late_events] == [(e.seq, e.type, e.ts) for e in stream[k + 1 :]]
    assert final.steps == at_terminal.steps
    assert final.anomalies == at_terminal.anomalies
    assert final.last_seq == stream[-1].seq


# ---------------------------------------------------------------- totality


@given(scrambled_streams())
def test_scrambled_streams_fold_incrementally_with_the_first_terminal_winning(stream: list[Event]) -> None:
    """Shuffled and duplicated events fold without raising: incremental at every split, first terminal wins, gaps reported."""
    whole = fold(stream)
    for cut in range(len(stream) + 1):
        assert fold(stream[cut:], start=fold(stream[:cut])) == whole
    k = _first_terminal(stream)
    if k is None:
        assert whole.terminal is None
        assert whole.status == ("running" if any(e.type == "started" for e in stream) else "empty")
    else:
        assert whole.terminal == stream[k]
        assert whole.status == STATUS_AFTER[stream[k].type]
        assert len(whole.late_events) == len(stream) - k - 1
    out_of_order = any(b.seq != a.seq + 1 for a, b in zip(stream, stream[1:], strict=False))
    assert any(a.kind == "seq-gap" for a in whole.anomalies) == out_of_order



@given(st.lists(events(), max_size=12))
def test_any_sequence_of_valid_events_folds_without_raising(stream: list[Event]) -> None:
    """Arbitrary valid events, in any order, from any run, fold into a state with a known status."""
    state = fold(stream)
    assert state.events == len(stream)
    assert state.status in ("empty", "running", *TERMINAL_TYPES)
    assert state_from_json(state_to_json(state)) == state


def test_known_oddities_are_named_anomalies() -> None:
    """Progress before started, a late first started, a step ending before it starts and a second started are each reported."""
    stream = [
        make_progress(0, "build", "started"),
        make_started().model_copy(update={"seq": 1}),
        make_progress(2, "test", "succeeded"),
        make_started().model_copy(update={"seq": 3}),
    ]
    state = fold(stream)
    assert [(a.seq, a.kind) for a in state.anomalies] == [
        (0, "before-started"),
        (1, "started-not-first"),
        (2, "end-before-start"),
        (3, "second-started"),
    ]
    assert state.status == "running"


# ---------------------------------------------------------------- forensics


def _expected_steps(stream: list[Event]) -> dict[str, dict[str, Any]]:
    """An independent model of the per-step and per-item states a valid stream leaves."""
    started = stream[0]
    model: dict[str, dict[str, Any]] = {}
    for planned in started.steps:  # type: ignore[union-attr]
        model[planned.name] = {"state": "pending", "items": {i: "pending" for i in planned.items or ()}}
    k = _first_terminal(stream)
    for event in stream[1 : None if k is None else k]:
        if event.type != "step-progress":
            continue
        step = model[event.step]  # type: ignore[union-attr]
        if event.item is None:  # type: ignore[union-attr]
            step["state"] = event.state  # type: ignore[union-attr]
        else:
            step["items"][event.item] = event.item_state  # type: ignore[union-attr]
            if step["state"] == "pending":
                step["state"] = "started"
    return model


@given(event_streams())
def test_steps_and_items_show_what_completed_was_in_flight_or_never_started(stream: list[Event]) -> None:
    """Each step and item ends in the state of its last event before the terminal (pending if none), with no anomaly."""
    states = [state.copy() for _, state in fold_steps(stream)]
    assert states == [fold(stream[: i + 1]) for i in range(len(stream))]  # fold_steps yields every prefix's fold
    state = states[-1]
    got = {name: {"state": s.state, "items": {i: it.state for i, it in s.items.items()}} for name, s in state.steps.items()}
    assert got == _expected_steps(stream)
    assert state.anomalies == []  # a well-behaved writer's stream has nothing odd in it


# ---------------------------------------------------------------- status table


def test_status_table_covers_every_event_type() -> None:
    """The event type -> status table has exactly one row per event type, and terminals map to themselves."""
    assert set(STATUS_AFTER) == set(EVENT_TYPES)
    for event_type, status in STATUS_AFTER.items():
        if event_type in TERMINAL_TYPES:
            assert status == event_type
        elif event_type == "started":
            assert status == "running"
        else:
            assert status is None


def test_every_event_type_folds_to_the_status_in_the_table() -> None:
    """Folding ``started`` then one event of each type gives the status the table promises."""
    one_of_each = {
        "started": make_started().model_copy(update={"seq": 1}),
        "step-progress": make_progress(1, "build"),
        "heartbeat": make_heartbeat(1),
        "items-planned": make_items_planned(1, "fan", ["x"]),
        "succeeded": make_succeeded(1),
        "failed": make_failed(1),
        "cancelled": make_cancelled(1),
        "abandoned": make_abandoned(1),
    }
    assert set(one_of_each) == set(EVENT_TYPES)
    assert fold([]).status == "empty"
    for event_type, event in one_of_each.items():
        state = fold([make_started(), event])
        assert state.status == (STATUS_AFTER[event_type] or "running")
    assert fold([make_started()]).status == "running"


def test_empty_state_is_the_fold_of_nothing() -> None:
    """The fold of no events is the fresh state: no run, status empty."""
    assert fold([]) == RunState()
