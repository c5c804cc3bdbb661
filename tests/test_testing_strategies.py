"""journal.testing keeps its promises: generated streams are valid runs with the requested shape."""

from __future__ import annotations

import tempfile

from hypothesis import given

from runjournal.journal.events import Event
from runjournal.journal.jsonl.reader import JsonlRunReader
from runjournal.journal.status import TERMINAL_TYPES
from runjournal.journal.testing import TornStream, event_streams, make_stream, torn_streams, write_journal


def first_terminal(stream: list[Event]) -> int | None:
    return next((i for i, e in enumerate(stream) if e.type in TERMINAL_TYPES), None)


@given(event_streams())
def test_streams_are_valid_runs_that_read_back_unchanged(stream: list[Event]) -> None:
    """started first, contiguous seq, one run id, non-decreasing ts; the strict reader accepts them."""
    assert stream[0].type == "started"
    assert [e.seq for e in stream] == list(range(len(stream)))
    assert {e.run_id for e in stream} == {stream[0].run_id}
    assert all(a.ts <= b.ts for a, b in zip(stream, stream[1:]))
    with tempfile.TemporaryDirectory() as root:
        path = write_journal(root, stream)
        assert list(JsonlRunReader(path, stream[0].run_id).events()) == stream


@given(event_streams(min_steps=1))
def test_progress_follows_the_plan(stream: list[Event]) -> None:
    """Steps are planned ones, in plan order; fan-out counters stay within total and never go back."""
    plan = [s.name for s in stream[0].steps]
    end = first_terminal(stream) or len(stream)
    progress = [e for e in stream[1:end] if e.type == "step-progress"]
    seen = list(dict.fromkeys(e.step for e in progress))
    assert seen == plan[: len(seen)]
    done: dict[str, int] = {}
    for event in progress:
        if event.total is not None:
            assert 0 <= event.done <= event.total
            assert event.done >= done.get(event.step, 0)
            done[event.step] = event.done


@given(event_streams(terminal=True, terminal_types=["succeeded"], late_events=False))
def test_a_succeeded_run_completed_its_plan(stream: list[Event]) -> None:
    """``succeeded`` ends a plan whose every step succeeded or was skipped."""
    assert stream[-1].type == "succeeded"
    ends = {e.step: e.state for e in stream if e.type == "step-progress" and e.item is None and e.state != "started"}
    assert set(ends) == {s.name for s in stream[0].steps}
    assert set(ends.values()) <= {"succeeded", "skipped"}


@given(event_streams(terminal=False))
def test_terminal_false_means_still_running(stream: list[Event]) -> None:
    """No terminal event at all."""
    assert first_terminal(stream) is None


@given(event_streams(late_events=True, terminal_types=["abandoned"]))
def test_late_events_follow_the_terminal(stream: list[Event]) -> None:
    """With late events, the terminal is not last; an abandoned event's last_seq is the seq before it."""
    index = first_terminal(stream)
    assert index is not None and index < len(stream) - 1
    assert stream[index].last_seq == stream[index].seq - 1


@given(torn_streams())
def test_torn_streams_cut_the_last_line_mid_way(torn: TornStream) -> None:
    """The fragment is a proper prefix of the torn event's line, without its newline."""
    whole = torn.data[: torn.whole_length]
    assert torn.data == whole + torn.fragment
    assert 0 < len(torn.fragment) and b"\n" not in torn.fragment
    assert torn.torn.seq == len(torn.events)


def test_make_stream_builds_a_finished_run() -> None:
    """The builder's default run: started, two steps started and succeeded, succeeded."""
    stream = make_stream()
    assert [e.type for e in stream] == ["started"] + ["step-progress"] * 4 + ["succeeded"]
    assert [e.seq for e in stream] == list(range(6))
