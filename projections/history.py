"""History: every run's current state, newest first, with orphans reconciled on the way.

:func:`history_rows` is what ``history`` lists: summaries from the store's read model
(:meth:`runjournal.journal.store.Store.summaries`, folded by
:data:`~runjournal.projections.summary.PROJECTOR`); finished runs are never re-read, and
only unfinished runs are folded and reconciled. :func:`run_states` folds every run in full,
for callers that need whole states.

The fold, the event models and reconciliation are imported only when a run has to be
folded: a warm ``history`` then never pays the ~100 ms it takes to build the pydantic
models.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from runjournal.journal.errors import JournalError
from runjournal.journal.readmodel import Folded, HistoryQuery, Progress, RunSummary
from runjournal.journal.status import DAMAGED, DERIVED_ABANDONED, TERMINAL_STATUSES, UNREADABLE, UNTRUSTED
from runjournal.projections.summary import KeepingProjector, summarize

if TYPE_CHECKING:
    from runjournal.journal.store import Store
    from runjournal.projections.reconcile import CurrentState


class HistoryRow(NamedTuple):
    """One run as ``history`` lists it: its summary, and the status and reason to show.

    ``status`` is the summary's, or ``abandoned?`` for a dead writer that could not be
    recorded, or ``damaged`` (the summary is of the lines before the first bad one) or
    ``unreadable`` (nothing could be read); for those two ``reason`` is the read error. A
    named tuple: history builds one per run, a hundred thousand per call.
    """

    summary: RunSummary
    status: str
    reason: str | None


def history_rows(
    store: Store,
    query: HistoryQuery | None = None,
    *,
    reconcile: bool = True,
    now: datetime | None = None,
    lease_intervals: float | None = None,
    progress: Progress | None = None,
) -> Iterator[HistoryRow]:
    """Yield the history row of every run that passes ``query``, newest first.

    ``query`` filters on what is shown: a run reconciled on the way is judged by its new
    status, and ``abandoned`` also matches ``abandoned?``. ``lease_intervals`` defaults to
    :data:`runjournal.projections.liveness.DEFAULT_LEASE_INTERVALS`.
    """
    query = query or HistoryQuery()
    options = _options(now, lease_intervals)
    projector = KeepingProjector()  # hands the read model's fresh fold of an unfinished run to reconcile
    unfiltered = replace(query, limit=None) == HistoryQuery()
    for summary in store.summaries(_recorded(query), projector, progress=progress):
        row = _row(store, summary, reconcile, options, projector)
        if unfiltered or shown_matches(query, row):
            yield row


def _row(
    store: Store, summary: RunSummary, reconcile: bool, options: dict[str, Any], projector: KeepingProjector
) -> HistoryRow:
    if summary.error is not None:
        return HistoryRow(summary, DAMAGED if summary.events else UNREADABLE, summary.error)
    if summary.is_terminal:
        return HistoryRow(summary, summary.status, summary.reason)
    return _current_row(store, summary, reconcile, dict(options, known=_folded(projector.take(summary.run_id))))


def _recorded(query: HistoryQuery) -> HistoryQuery:
    """The query a store can answer from recorded summaries: a run not yet over may still become
    any terminal status (reconciled on the way), so it is always asked for."""
    if query.statuses is None:
        return replace(query, reason=None)
    if query.statuses <= TERMINAL_STATUSES - {"abandoned"}:
        return replace(query, reason=None)
    return replace(query, statuses=query.statuses | {"running", "empty"}, reason=None)


def shown_matches(query: HistoryQuery, row: HistoryRow) -> bool:
    """Whether a row passes ``query`` by what history shows (``abandoned`` also matches ``abandoned?``).

    A damaged or unreadable run passes every status and reason filter: nobody can tell what
    it is (or became), and hiding it would hide the problem.
    """
    shown = "abandoned" if row.status == DERIVED_ABANDONED else row.status
    if row.status not in UNTRUSTED:
        if query.statuses is not None and shown not in query.statuses:
            return False
        if query.reason is not None and row.reason != query.reason:
            return False
    if query.workflow is None and query.since is None and query.until is None:
        return True
    return replace(query, statuses=None, reason=None).matches(row.summary)


def _folded(kept: Any) -> Folded | None:
    return None if kept is None else Folded(*kept)


def _current_row(store: Store, summary: RunSummary, reconcile: bool, options: dict[str, Any]) -> HistoryRow:
    """A run not finished by its summary: shown as recorded while its writer provably lives, else judged
    (and reconciled) from the fold the store handed over, if any."""
    live = store.take_fold(summary.run_id)
    if live is not None and live.facts is not None and live.facts.owner_alive:
        return HistoryRow(summary, summary.status, summary.reason)
    if options["known"] is None and live is not None:
        try:
            options["known"] = live.fold()
        except (JournalError, OSError):
            pass  # damaged or changed since it was listed: current_state reads it and says what is wrong
    from runjournal.projections.reconcile import current_state  # lazily: start-up cost (see the module docstring)

    try:
        current = current_state(store, summary.run_id, reconcile=reconcile, **options)
    except (JournalError, OSError) as exc:
        return HistoryRow(summary, UNREADABLE, str(exc))
    if current.damage is not None:
        return HistoryRow(summarize(current.state, summary.run_id, str(current.damage)), current.status,
                          str(current.damage))
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
