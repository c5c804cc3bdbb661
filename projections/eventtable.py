"""The event table: every event of every run as one flat row shape, with the runs' current verdicts.

A forensics read model. Each row is one verified journal line (see ``docs/format.md``,
section 9) flattened to the typed columns of :data:`COLUMNS`, plus the run's current
status on every row, so a query over the table needs no join to know which runs were
abandoned, and no validation of its own. The columns and their meaning are documented in
``docs/forensics.md``.

Runs are visited in history order (newest first) and each run's events in ``seq`` order;
only one run's events are read at a time, so the table streams whatever the journal's size.
A run whose writer is dead but whose journal could not (read-only) or may not
(``reconcile=False``) be written gets one extra *derived* row after its last event: type
``abandoned``, ``derived`` true, ``seq`` null, the verdict's reason and evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from runjournal.journal.errors import JournalError
from runjournal.journal.events import TIMESTAMP_FORMAT, AbandonReason, Event, FailReason
from runjournal.journal.readmodel import HistoryQuery, parse_time
from runjournal.journal.status import DERIVED_ABANDONED, TERMINAL_TYPES, UNREADABLE
from runjournal.projections.history import history_rows
from runjournal.projections.reconcile import current_state


class Column(NamedTuple):
    """One column of the event table: its name, type (``string``, ``integer``, ``boolean``,
    ``timestamp``, ``json``) and meaning."""

    name: str
    type: str
    doc: str


COLUMNS: tuple[Column, ...] = (
    Column("run_id", "string", "the run"),
    Column("workflow", "string", "the run's workflow (from its `started` event), on every row"),
    Column("seq", "integer", "the event's position in its run (0 for `started`); null on a derived row"),
    Column("ts", "timestamp", "when the event was written (UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`); on a derived "
           "row, when the verdict was reached"),
    Column("type", "string", "`started`, `step-progress`, `heartbeat`, `succeeded`, `failed`, `cancelled`, "
           "`abandoned`"),
    Column("step", "string", "the step (`step-progress`; the failing step of `failed`)"),
    Column("item", "string", "the item of a fan-out step (`step-progress` about one item)"),
    Column("state", "string", "what the row's step or item became: `started`, `succeeded`, `failed`, `skipped` "
           "(the item's state when `item` is set, else the step's)"),
    Column("done", "integer", "fan-out: items ended so far"),
    Column("total", "integer", "fan-out: number of items"),
    Column("exit_code", "integer", "exit status of the step's or item's command (`step-progress`, `failed`)"),
    Column("reason", "string", "`failed`/`abandoned`: the reason code as runjournal reads it (a code this "
           "version does not know is `unknown`); `cancelled`: the canceller's text"),
    Column("reason_as_written", "string", "`failed`/`abandoned`: the reason code exactly as the line has it"),
    Column("message", "string", "free text of `step-progress`, `failed`, `succeeded`"),
    Column("host", "string", "the writer's host (from `started`), on every row"),
    Column("run_status", "string", "the run's current status, as `history` shows it: `running`, `succeeded`, "
           "`failed`, `cancelled`, `abandoned`, `abandoned?`, `empty`, `unreadable`"),
    Column("run_reason", "string", "the run's current reason, as `history` shows it"),
    Column("late", "boolean", "the event came after the run's first terminal event (it changes nothing)"),
    Column("derived", "boolean", "the row is the derived verdict of a dead writer, not a line of the journal"),
    Column("data", "json", "the event's other fields as one object (e.g. `steps`, `writer` and `inputs` of "
           "`started`; `evidence`, `checker`, `last_seq` of `abandoned`; `by` of `cancelled`)"),
)
"""The columns of the event table, in order. Every row has every column (null when it does not apply)."""

COLUMN_NAMES: tuple[str, ...] = tuple(column.name for column in COLUMNS)

_OWN_FIELDS = frozenset({"v", "run_id", "seq", "ts", "type", "workflow", "step", "item", "state", "item_state",
                         "done", "total", "exit_code", "reason", "message"})
_UNKNOWN = (FailReason.UNKNOWN, AbandonReason.UNKNOWN)


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Which rows to produce. Run-level filters (``runs``, ``workflow``, ``status``) choose runs;
    the others choose rows. ``since``/``until`` bound the event's ``ts`` (inclusive)."""

    runs: tuple[str, ...] = ()
    workflow: str | None = None
    status: str | None = None
    types: frozenset[str] = frozenset()
    step: str | None = None
    item: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    reconcile: bool = True

    def wants(self, row: dict[str, Any]) -> bool:
        """Whether ``row`` passes the row-level filters."""
        if self.types and row["type"] not in self.types:
            return False
        if self.step is not None and row["step"] != self.step:
            return False
        if self.item is not None and row["item"] != self.item:
            return False
        return _within(row["ts"], self.since, self.until)

    def wants_run(self, workflow: str | None, status: str) -> bool:
        """Whether a run with this workflow and status passes the run-level filters."""
        if self.workflow is not None and workflow != self.workflow:
            return False
        if self.status is None:
            return True
        return status == self.status or (self.status == "abandoned" and status == DERIVED_ABANDONED)


def _within(ts: str, since: datetime | None, until: datetime | None) -> bool:
    if since is None and until is None:
        return True
    moment = datetime.fromisoformat(ts)
    return (since is None or moment >= since) and (until is None or moment <= until)


@dataclass(frozen=True, slots=True)
class RunProblem:
    """A run that could not be read to its end: its rows stop before ``error``'s line."""

    run_id: str
    error: str


class _RunHead(NamedTuple):
    run_id: str
    workflow: str | None
    status: str
    reason: str | None
    started_at: datetime | None


ProblemSink = Callable[[RunProblem], None]


def event_rows(
    store: Any, query: EventQuery, on_problem: ProblemSink, *, now: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """Every row the query selects, run by run (newest run first), each run's events in ``seq`` order.

    Runs are reconciled first (``query.reconcile``), as ``history`` does. A run whose
    journal cannot be read to its end yields the rows before the bad line, then
    ``on_problem`` is told why.
    """
    moment = now or datetime.now(UTC)
    for head in _runs(store, query, moment):
        if head.started_at is not None and query.until is not None and head.started_at > query.until:
            continue
        yield from _run_rows(store, head, query, on_problem, moment)


def _runs(store: Any, query: EventQuery, now: datetime) -> Iterator[_RunHead]:
    if query.runs:
        for run_id in query.runs:
            head = _explicit_head(store, run_id, query.reconcile, now)
            if query.wants_run(head.workflow, head.status):
                yield head
        return
    wanted = HistoryQuery(workflow=query.workflow, statuses=frozenset({query.status}) if query.status else None)
    for row in history_rows(store, wanted, reconcile=query.reconcile, now=now):
        summary = row.summary
        if query.wants_run(summary.workflow, row.status):
            yield _RunHead(summary.run_id, summary.workflow, row.status, row.reason, parse_time(summary.started_at))


def _explicit_head(store: Any, run_id: str, reconcile: bool, now: datetime) -> _RunHead:
    try:
        current = current_state(store, run_id, reconcile=reconcile, now=now)
    except (JournalError, OSError) as exc:
        return _RunHead(run_id, None, UNREADABLE, str(exc), None)
    state = current.state
    if current.error is not None and state.started is None:
        return _RunHead(run_id, None, UNREADABLE, str(current.error), None)
    return _RunHead(run_id, state.workflow, current.status, current.reason, state.started_at)


def _run_rows(
    store: Any, head: _RunHead, query: EventQuery, on_problem: ProblemSink, now: datetime
) -> Iterator[dict[str, Any]]:
    context = _RowContext(store, head)
    last = None
    try:
        for event in store.read(head.run_id).events():
            row = context.row(event)
            last = event
            if query.wants(row):
                yield row
    except (JournalError, OSError) as exc:
        on_problem(RunProblem(head.run_id, str(exc)))
    if head.status == DERIVED_ABANDONED:
        row = context.derived_row(now, last.seq if last is not None else -1)
        if row is not None and query.wants(row):
            yield row


class _RowContext:
    """What every row of one run shares, and what changes along the run (the first terminal seen)."""

    def __init__(self, store: Any, head: _RunHead) -> None:
        self.store = store
        self.head = head
        self.workflow = head.workflow
        self.host: str | None = None
        self.ended = False
        self._raw_reasons: dict[int, str] | None = None

    def row(self, event: Event) -> dict[str, Any]:
        """The row of one event of this run."""
        if event.type == "started":
            self.workflow = self.workflow or event.workflow
            self.host = event.writer.host
        fields = event.model_dump(mode="json")
        late = self.ended
        self.ended = self.ended or event.type in TERMINAL_TYPES
        reason = fields.get("reason")
        written = reason
        if event.type in ("failed", "abandoned") and event.reason in _UNKNOWN:  # type: ignore[union-attr]
            written = self._reason_as_written(event.seq)
        return self._assemble(fields, reason, written if event.type in ("failed", "abandoned") else None, late,
                              derived=False)

    def derived_row(self, now: datetime, last_seq: int) -> dict[str, Any] | None:
        """The derived ``abandoned`` row of a dead writer's run that was not recorded."""
        current = current_state(self.store, self.head.run_id, reconcile=False, now=now)
        verdict = current.derived
        if verdict is None or not verdict.dead or verdict.reason is None:
            return None
        fields = {
            "seq": None, "ts": now.astimezone(UTC).strftime(TIMESTAMP_FORMAT), "type": "abandoned",
            "evidence": verdict.evidence, "last_seq": last_seq,
        }
        reason = verdict.reason.value
        return self._assemble(fields, reason, reason, late=False, derived=True)

    def _assemble(
        self, fields: dict[str, Any], reason: str | None, written: str | None, late: bool, derived: bool
    ) -> dict[str, Any]:
        item = fields.get("item")
        state = fields.get("item_state") if item is not None else fields.get("state")
        return {
            "run_id": self.head.run_id, "workflow": self.workflow, "seq": fields.get("seq"), "ts": fields["ts"],
            "type": fields["type"], "step": fields.get("step"), "item": item, "state": state,
            "done": fields.get("done"), "total": fields.get("total"), "exit_code": fields.get("exit_code"),
            "reason": reason, "reason_as_written": written, "message": fields.get("message"), "host": self.host,
            "run_status": self.head.status, "run_reason": self.head.reason, "late": late, "derived": derived,
            "data": {k: v for k, v in fields.items() if k not in _OWN_FIELDS},
        }

    def _reason_as_written(self, seq: int) -> str | None:
        # The event model reads a code it does not know as ``unknown``; the line keeps the code.
        if self._raw_reasons is None:
            self._raw_reasons = dict(_raw_reasons(self.store.raw_lines(self.head.run_id)))
        return self._raw_reasons.get(seq)


def _raw_reasons(lines: Iterable[bytes]) -> Iterator[tuple[int, str]]:
    for seq, line in enumerate(lines):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            return
        if isinstance(obj, dict) and isinstance(obj.get("reason"), str) and obj.get("type") in ("failed", "abandoned"):
            yield seq, obj["reason"]
