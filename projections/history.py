"""History: every run's current state, newest first, with orphans reconciled on the way.

:func:`history_rows` is what ``history`` lists: summaries from the incremental index
(:mod:`projections.index`); finished runs are never re-read, and only unfinished runs are
folded and reconciled. :func:`run_states` folds every run in full, for callers that need
whole states.

The fold, the event models and reconciliation are imported only when a run has to be
folded: a warm ``history`` then never pays the ~100 ms it takes to build the pydantic
models.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from runjournal.journal.errors import JournalError
from runjournal.journal.layout import StoreLayout
from runjournal.journal.status import UNREADABLE
from runjournal.projections.index import HistoryIndex, Progress, RunSummary, summarize

if TYPE_CHECKING:
    from runjournal.journal.store import Store
    from runjournal.projections.reconcile import CurrentState



@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One run as ``history`` lists it: its summary, and the status and reason to show.

    ``status`` is the summary's, or ``abandoned?`` for a dead writer that could not be
    recorded, or ``unreadable`` (then ``reason`` is the read error).
    """

    summary: RunSummary
    status: str
    reason: str | None


def history_rows(
    layout: StoreLayout,
    *,
    reconcile: bool = True,
    now: datetime | None = None,
    lease_intervals: float | None = None,
    progress: Progress | None = None,
) -> Iterator[HistoryRow]:
    """Yield every run's history row, newest first, from the incremental index.

    ``lease_intervals`` defaults to :data:`projections.liveness.DEFAULT_LEASE_INTERVALS`.
    """
    options = _options(now, lease_intervals)
    if getattr(layout, "lock_scope", "host") == "server":
        from runjournal.projections.pgfolds import FoldCache  # a database store keeps its read model in the database

        summaries: Iterator[RunSummary] = FoldCache(layout, progress=progress).summaries()  # type: ignore[arg-type]
    else:
        summaries = HistoryIndex(layout, progress=progress).summaries()  # type: ignore[arg-type]
    for summary in summaries:
        if summary.error is not None:
            yield HistoryRow(summary, UNREADABLE, summary.error)
        elif summary.is_terminal:
            yield HistoryRow(summary, summary.status, summary.reason)
        else:
            yield _current_row(layout, summary, reconcile, options)


def _current_row(layout: StoreLayout, summary: RunSummary, reconcile: bool, options: dict[str, Any]) -> HistoryRow:
    from runjournal.journal.store import JsonlStore  # lazily: start-up cost (see the module docstring)
    from runjournal.projections.reconcile import current_state

    store = layout if isinstance(layout, JsonlStore) or hasattr(layout, "url") else JsonlStore(layout.root)
    try:
        current = current_state(store, summary.run_id, reconcile=reconcile, **options)
    except (JournalError, OSError) as exc:
        return HistoryRow(summary, UNREADABLE, str(exc))
    return HistoryRow(summarize(current.state, summary.run_id), current.status, current.reason)


def run_states(
    store: Store,
    *,
    reconcile: bool = True,
    now: datetime | None = None,
    lease_intervals: float | None = None,
) -> Iterator[CurrentState]:
    """Yield the current state of every run in ``store``, newest first (run ids sort by time).

    A run that cannot be read (a corrupt line, an unsafe file) is yielded with ``error``
    set and the state empty, so one bad journal never hides the others.
    """
    from runjournal.projections.reconcile import CurrentState, current_state  # lazily: start-up cost
    from runjournal.projections.state import RunState

    options = _options(now, lease_intervals)
    for run_id in sorted(store.run_ids(), reverse=True):
        try:
            yield current_state(store, run_id, reconcile=reconcile, **options)
        except (JournalError, OSError) as exc:
            yield CurrentState(run_id, RunState(run_id=run_id), error=exc)


def _options(now: datetime | None, lease_intervals: float | None) -> dict[str, Any]:
    options: dict[str, Any] = {"now": now}
    if lease_intervals is not None:
        options["lease_intervals"] = lease_intervals
    return options
