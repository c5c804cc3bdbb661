"""The history read model's vocabulary: a run's summary row, the query, and the projector stores fold with.

Every store keeps its own disposable cache of summaries (the JSONL store an index of
files, the database a table), but they all yield the same :class:`RunSummary` rows for the
same runs, filtered by the same :class:`HistoryQuery`. The fold that makes a summary is
not the journal's business: the caller supplies it as a :class:`Projector`
(``runjournal.projections.summary.PROJECTOR``), so the journal never imports the fold.

A leaf of plain values (no event models), so a history that only reads cached summaries
never imports pydantic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from runjournal.journal.status import TERMINAL_STATUSES

if TYPE_CHECKING:
    from runjournal.journal.events import Event
    from runjournal.journal.liveness import WriterFacts
    from runjournal.journal.records import Cursor

Progress = Callable[[int, int], None]
"""``progress(position, total)``: called before a run is folded (never for a reused summary)."""


class RunSummary(NamedTuple):
    """What ``history`` shows of a run, as plain JSON-ready values.

    Timestamps are ISO 8601 UTC strings in the journal's own form
    (``2026-01-02T03:04:05.123456Z``, always six fractional digits); :func:`parse_time`
    turns them back into datetimes. ``last_activity`` is the latest step or item start/end
    (the run's own progress). ``late_events`` and ``anomalies`` are counts. ``error`` is the
    one-line reason the journal could not be read to its end (the other fields then describe
    the part before the bad line).

    A named tuple because history builds one per run, tens of thousands per call.
    """

    run_id: str
    status: str
    workflow: str | None
    reason: str | None
    started_at: str | None
    ended_at: str | None
    last_event_at: str | None
    last_activity: str | None
    host: str | None
    pid: int | None
    steps_done: int
    steps_total: int
    rerun_of: str | None
    events: int
    late_events: int
    anomalies: int
    error: str | None

    @property
    def is_terminal(self) -> bool:
        """Whether the run has a terminal event."""
        return self.status in TERMINAL_STATUSES

    def to_json(self) -> dict[str, Any]:
        """The summary as a dict with the field names above."""
        return dict(zip(self._fields, self, strict=True))


SUMMARY_FIELDS = RunSummary._fields[1:]
"""The fields of a summary a store keeps per run (all but ``run_id``), in order."""


def summary_of(run_id: str, row: Iterable[Any]) -> RunSummary:
    """A :class:`RunSummary` from a run id and its :data:`SUMMARY_FIELDS` values (no per-field checks: hot path)."""
    return tuple.__new__(RunSummary, (run_id, *row))


def parse_time(text: str | None) -> datetime | None:
    """A :class:`RunSummary` timestamp as an aware UTC datetime."""
    return None if text is None else datetime.fromisoformat(text)


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """Which runs ``history`` wants, by their recorded summary (None: no filter).

    ``statuses`` are recorded statuses; ``since``/``until`` bound the start time
    (``since <= started_at < until``). A summary with an ``error`` (a run that could not be
    read to its end) passes the status and reason filters: nobody can tell what it is, and
    hiding it would hide the problem.

    ``limit`` is a hint, never a cap: the caller expects to stop after about this many
    rows, so a store may read its rows in pages of that size. A store still yields every
    matching run the caller asks for (callers filter again by what is shown after
    reconciliation, so they may need more rows than ``limit``).
    """

    workflow: str | None = None
    statuses: frozenset[str] | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None

    def matches(self, summary: RunSummary) -> bool:
        """Whether ``summary`` passes every filter."""
        if self.workflow is not None and summary.workflow != self.workflow:
            return False
        if summary.error is None:
            if self.statuses is not None and summary.status not in self.statuses:
                return False
            if self.reason is not None and summary.reason != self.reason:
                return False
        if self.since is None and self.until is None:
            return True
        started = parse_time(summary.started_at)
        if started is None:
            return False
        return (self.since is None or started >= self.since) and (self.until is None or started < self.until)


class Projector(Protocol):
    """The fold a read model runs, supplied by the caller (see the module docstring).

    A *state* is whatever :meth:`fold` returns; a store keeps it only as :meth:`dump` gives
    it, to resume a run that is still being written from where it stopped.
    """

    def fold(self, events: Iterable[Event], start: Any = None) -> Any:
        """Fold ``events`` onto ``start`` (a fresh state when None) and return the new state."""

    def advance(self, state: Any, events: Iterable[Event]) -> Any:
        """Fold ``events`` onto ``state``, which the caller owns (it may be updated in place), and return it.

        What a writer keeping its run's summary current calls on each append: no copy of the state.
        """

    def fold_plain(self, objects: Iterable[dict[str, Any]], start: Any = None) -> Any:
        """:meth:`fold` over plain events (:mod:`runjournal.journal.plain`): the same state, faster.

        Unlike :meth:`fold`, it folds into ``start`` (the caller's to give away, such as a
        state just loaded) and returns it, copying nothing.
        """

    def row(self, state: Any, error: str | None = None) -> list[Any]:
        """The :data:`SUMMARY_FIELDS` values of ``state`` (``error``: why the fold stopped early)."""

    def is_terminal(self, state: Any) -> bool:
        """Whether ``state`` has ended (then a store keeps its summary only)."""

    def weight(self, state: Any) -> int:
        """About how many bytes :meth:`dump` of ``state`` makes as JSON, found without dumping it
        (a store keeps no snapshot of a state too big to be worth it)."""

    def dump(self, state: Any) -> Any:
        """``state`` as JSON-ready data."""

    def load(self, data: Any) -> Any:
        """The state :meth:`dump` made ``data`` from."""

    def handed_over(self, run_id: str, state: Any, cursor: Cursor) -> None:
        """A store that just folded an unfinished run may hand the state (now the projector's) and the
        cursor it stopped at over here, so the caller need not read the run again (optional: a
        store may never call it, a projector may drop what it gets)."""


class Folded(NamedTuple):
    """A run's fold state and the cursor just after the last event folded into it: enough to fold
    only what is appended later (the state is the holder's to update)."""

    state: Any
    cursor: Cursor


@dataclass(slots=True)
class LiveFold:
    """What a store's read model hands over about a run it listed as not finished (:meth:`Store.take_fold`).

    ``facts`` are the writer facts the store observed *after* it read the run's summary (so
    they cannot predate the run's writer), or None when the caller must ask
    :meth:`~runjournal.journal.store.Store.writer_facts` itself. :meth:`fold` gives the run's
    full fold state, folded forward from the store's saved fold (reading only what was
    appended since), computed on first call: a caller that only needs ``facts`` never pays
    for it.
    """

    facts: WriterFacts | None
    compute: Callable[[], Folded]
    folded: Folded | None = None

    def fold(self) -> Folded:
        """The run's current fold state and the cursor at its end (computed once)."""
        if self.folded is None:
            self.folded = self.compute()
        return self.folded
