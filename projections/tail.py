"""Waiting for a run to end: read it as it grows, until it is over, its writer is gone, or time is up.

One loop for every command that waits on a run (``follow`` prints the events, ``logs
--follow`` the step output, ``cancel`` waits for ``cancelled``). A change notification
(:meth:`runjournal.journal.store.Store.watch`) only says "something changed", so every
wake re-reads from the last cursor; the reader stops before a line without its newline, so
a half-written line is never seen (it is read whole on a later wake). A wake without news
(every ``poll_seconds``) is when a silent run's writer is checked; a dead one is reconciled
(or, on a read-only journal, judged dead without being recorded) and the wait ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from runjournal.journal.records import Cursor
from runjournal.projections.fold import fold_steps
from runjournal.projections.reconcile import CurrentState, current_state
from runjournal.projections.state import RunState

if TYPE_CHECKING:
    from runjournal.journal.events import Event
    from runjournal.journal.store import Store

POLL_SECONDS = 0.5
"""Longest wait between re-reads when no change notification arrives."""


class RunTail:
    """A run read incrementally: the cursor after the last whole line read, and the fold so far.

    After :func:`follow_events` ends, exactly one of these says why: ``state.is_terminal``
    (the run is over), ``derived`` (its writer is gone but the journal could not record it),
    ``timed_out``, or none (no ``started`` event and no writer: nothing will ever come).
    """

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.cursor = Cursor()
        self.state = RunState()
        self.derived: CurrentState | None = None
        self.timed_out = False

    def new_events(self) -> Iterator[tuple[Event, RunState]]:
        """The events appended since the last call, each with the state after it."""
        reader = self.store.read(self.run_id, self.cursor)
        for event, state in fold_steps(reader.events(), self.state):
            self.state = state
            self.cursor = reader.cursor
            yield event, state

    def writer_gone(self) -> bool:
        """Whether the run's writer is gone (then the run is reconciled, or found dead on a read-only journal)."""
        if self.store.writer_alive(self.run_id):
            return False
        current = current_state(self.store, self.run_id, reconcile=True)
        if current.state.is_terminal or current.state.started is None:
            # No 'started' and nobody holding the lock: writers put run files in place with
            # their 'started' line, so nothing will ever be appended to this one.
            return True
        if current.status != current.state.status:
            self.derived = current
            return True
        return False


def follow_events(
    tail: RunTail,
    *,
    deadline: float | None = None,
    poll_seconds: float = POLL_SECONDS,
    on_wake: Callable[[], None] | None = None,
) -> Iterator[tuple[Event, RunState]]:
    """Every event of the run, old and new, until it is terminal, its writer is gone, or ``deadline``.

    ``deadline`` is a :func:`time.monotonic` value. ``on_wake`` is called after every wake,
    with or without new events (``logs --follow`` prints step output then).
    """
    yield from tail.new_events()
    if tail.state.is_terminal:
        return
    if tail.writer_gone():  # a run whose writer died before we came: no need to wait for a poll
        yield from tail.new_events()
        return
    for grew in tail.store.watch(tail.run_id, poll_seconds=poll_seconds):
        yield from tail.new_events()
        if on_wake is not None:
            on_wake()
        if tail.state.is_terminal:
            return
        if not grew and tail.writer_gone():
            yield from tail.new_events()
            return
        if deadline is not None and time.monotonic() >= deadline:
            tail.timed_out = True
            return


def wait_until_over(
    tail: RunTail,
    *,
    deadline: float | None = None,
    poll_seconds: float = POLL_SECONDS,
    on_wake: Callable[[], None] | None = None,
) -> RunState:
    """Consume :func:`follow_events` for its end alone; return the state the run was left in."""
    for _ in follow_events(tail, deadline=deadline, poll_seconds=poll_seconds, on_wake=on_wake):
        pass
    return tail.state
