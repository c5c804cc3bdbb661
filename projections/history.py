"""History: every run's current state, newest first, with orphans reconciled on the way.

This is the plain implementation (fold every run file). A read model that saves fold states
with their byte offsets can replace the body of :func:`run_states` without changing what it
yields.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from journal.errors import JournalError
from journal.store import JsonlStore
from projections.liveness import DEFAULT_LEASE_INTERVALS
from projections.reconcile import CurrentState, current_state
from projections.state import RunState


def run_states(
    store: JsonlStore,
    *,
    reconcile: bool = True,
    now: datetime | None = None,
    lease_intervals: float = DEFAULT_LEASE_INTERVALS,
) -> Iterator[CurrentState]:
    """Yield the current state of every run in ``store``, newest first (run ids sort by time).

    A run that cannot be read (a corrupt line, an unsafe file) is yielded with ``error``
    set and the state empty, so one bad journal never hides the others.
    """
    for run_id in sorted(store.run_ids(), reverse=True):
        try:
            yield current_state(store, run_id, reconcile=reconcile, now=now, lease_intervals=lease_intervals)
        except (JournalError, OSError) as exc:
            yield CurrentState(run_id, RunState(run_id=run_id), error=exc)
