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
        state.events, len(state.late_events), len(state.anomalies), error,
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

    def row(self, state: RunState, error: str | None = None) -> list[Any]:
        """See :func:`summary_row`."""
        return summary_row(state, error)

    def is_terminal(self, state: RunState) -> bool:
        """Whether the run has ended."""
        return state.is_terminal

    def dump(self, state: RunState) -> Any:
        """The state as JSON-ready data."""
        from runjournal.projections.state import state_to_json

        return state_to_json(state)

    def load(self, data: Any) -> RunState:
        """The state :meth:`dump` gave ``data`` for."""
        from runjournal.projections.state import state_from_json

        return state_from_json(data)


PROJECTOR = SummaryProjector()
"""The projector every history read model folds with."""
