"""The run summary projection: the fold that the history read models of every store run.

:data:`PROJECTOR` is what projections hand to :meth:`runjournal.journal.store.Store.summaries`:
the fold, the summary row of a folded state, and the state as a snapshot a store can keep
to resume a live run. The fold and the event models are imported on first use, so a
history that only reads cached summaries never pays for pydantic.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from runjournal.journal.readmodel import RunSummary, summary_of

if TYPE_CHECKING:
    from runjournal.journal.events import Event
    from runjournal.projections.state import RunState


MAX_SNAPSHOT_UNITS = 5000
"""Most steps plus items of a live run whose fold state a read model keeps as a snapshot."""


def _time_text(moment: datetime | None) -> str | None:
    # The journal's own form (six fractional digits, ``Z``), so readers can print it as is.
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def summary_row(state: RunState, error: str | None = None) -> list[Any]:
    """The :data:`~runjournal.journal.readmodel.SUMMARY_FIELDS` values of a folded state (``error``: why the fold stopped early)."""
    started = state.started
    writer = started.writer if started is not None else None
    return [
        state.status, state.workflow, state.reason, _time_text(state.started_at), _time_text(state.ended_at),
        _time_text(state.last_event_at), _time_text(state.last_activity),
        writer.host if writer else None, writer.pid if writer else None,
        state.steps_done, state.steps_total, started.rerun_of if started else None,
        state.events, state.late_count, state.anomaly_count, error,
    ]


def summarize(state: RunState, run_id: str | None = None, error: str | None = None) -> RunSummary:
    """The summary of a folded state (what a store's read model holds for it)."""
    return summary_of(run_id or state.run_id or "", summary_row(state, error))


class SummaryProjector:
    """The :class:`~runjournal.journal.readmodel.Projector` of :class:`~runjournal.projections.state.RunState`."""

    def fold(self, events: Iterable[Event], start: Any = None) -> RunState:
        """The status fold (:func:`runjournal.projections.fold.fold`)."""
        from runjournal.projections.fold import fold  # the event models only when a run must be folded

        return fold(events, start=start)

    def advance(self, state: RunState, events: Iterable[Event]) -> RunState:
        """Fold ``events`` onto ``state`` in place (:func:`runjournal.projections.fold.fold_into`)."""
        from runjournal.projections.fold import fold_into

        return fold_into(state, events)
    def fold_plain(self, objects: Iterable[dict[str, Any]], start: Any = None) -> RunState:
        """The status fold over plain events, into ``start`` (:func:`runjournal.projections.fold.fold_plain`)."""
        from runjournal.projections.fold import fold_plain

        return fold_plain(objects, start=start)

    def row(self, state: RunState, error: str | None = None) -> list[Any]:
        """See :func:`summary_row`."""
        return summary_row(state, error)

    def is_terminal(self, state: RunState) -> bool:
        """Whether the run has ended."""
        return state.is_terminal

    def weight(self, state: RunState) -> int:
        """About 300 bytes per step or item, 200 per kept late event or anomaly, 2 kB for the rest."""
        units = len(state.steps) + sum(len(step.items) for step in state.steps.values())
        return 2000 + 300 * units + 200 * (len(state.late_events) + len(state.anomalies))

    def dump(self, state: RunState) -> Any:
        """The state as JSON-ready data, or None for an unfinished run of over :data:`MAX_SNAPSHOT_UNITS`
        steps and items.

        A read model keeps no snapshot of such a run (it would make its cache huge and be
        rewritten at every refresh): when the run grows, it is folded again from its start.
        """
        from runjournal.projections.state import state_to_json

        units = len(state.steps) + sum(len(step.items) for step in state.steps.values())
        if units > MAX_SNAPSHOT_UNITS and not state.is_terminal:
            return None
        return state_to_json(state)

    def load(self, data: Any) -> RunState:
        """The state :meth:`dump` gave ``data`` for."""
        from runjournal.projections.state import state_from_json

        return state_from_json(data)


    def handed_over(self, run_id: str, state: RunState, cursor: Any) -> None:
        """The shared projector keeps nothing (see :class:`KeepingProjector`)."""


class KeepingProjector(SummaryProjector):
    """A projector for one history pass that keeps the last unfinished fold a store hands over.

    History reconciles an unfinished run right after the read model folded it; taking that
    fold (:meth:`take`) spares reading the run a second time (a 500,000-step run is one
    pass, not two).
    """

    def __init__(self) -> None:
        self._kept: tuple[str, RunState, Any] | None = None

    def handed_over(self, run_id: str, state: RunState, cursor: Any) -> None:
        """Keep this fold (only the last one)."""
        self._kept = (run_id, state, cursor)

    def take(self, run_id: str) -> tuple[RunState, Any] | None:
        """The kept ``(state, cursor)`` of ``run_id``, once; None if the last fold was another run's."""
        kept, self._kept = self._kept, None
        return (kept[1], kept[2]) if kept is not None and kept[0] == run_id else None


PROJECTOR = SummaryProjector()
"""The projector every history read model folds with."""
