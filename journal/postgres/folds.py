"""The PostgreSQL store's history read model: each run's summary row, filtered and ordered in SQL.

``rj_runs`` holds one row per run with its summary (see :mod:`~runjournal.journal.postgres.schema`).
A writer given the caller's projector keeps that summary current with every append; one
without (a library user's, an import) leaves it behind its head, and the first reader to
list the run folds it on, from the fold state saved in ``rj_folds`` when there is one, and
saves it as it goes: a cold fill happens at most once per run, and a call stopped early
(``-n``, Ctrl-C) keeps what it folded.

Rows are read newest first in pages (``run_id < last`` on the primary key, or on the index
a filter uses), each page one short statement on the store's own session: no long
transaction, no second session, so ``history`` works on a database that allows it one
connection. For the rows of a page that are not finished, one more statement observes
their writers (the locks of all of them, the server's clock, when each last appended), and
:class:`~runjournal.journal.readmodel.LiveFold` hands that over to the caller (:meth:`Store.take_fold`): a run whose
writer still holds its lock is shown from its summary without reading a line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from runjournal.journal.errors import CorruptLineError, IntegrityError
from runjournal.journal.liveness import ServerFacts
from runjournal.journal.postgres.reader import PgRunReader
from runjournal.journal.postgres.schema import PROBE_MANY_SQL, lock_key, lock_parts
from runjournal.journal.procfacts import host_name
from runjournal.journal.readmodel import Folded, HistoryQuery, LiveFold, Progress, Projector, RunSummary
from runjournal.journal.records import Anchor
from runjournal.journal.status import TERMINAL_STATUSES

if TYPE_CHECKING:
    from runjournal.journal.postgres.store import PgStore

PAGE_MAX = 20_000
"""Largest page of summary rows read at once."""

SAVE_BATCH = 200
"""Folded summaries written back per batch (also written when the listing ends or stops)."""

LINE_BUDGET = 20_000
"""Most lines read in one statement when folding many short runs at once."""

PAGE_SQL = """
SELECT run_id, CASE WHEN folded_seq = head_seq THEN summary END, head_seq,
       CASE WHEN folded_seq = head_seq THEN NULL ELSE head_hash END, head_offset
FROM rj_runs WHERE {where}
ORDER BY run_id DESC LIMIT %(n)s
"""
"""A page of runs: the summary when it is current (folded up to the head), else the head to fold up to."""

LINES_SQL = """
SELECT e.run_id, e.line
FROM unnest(%(run_ids)s::text[], %(from_seqs)s::integer[]) AS k (run_id, from_seq)
JOIN LATERAL (SELECT run_id, seq, line FROM rj_events WHERE run_id = k.run_id AND seq >= k.from_seq) e ON true
ORDER BY e.run_id, e.seq
"""
"""The lines of several runs, each from its own seq, in one statement (a cold fill's short runs)."""

SAVE_SUMMARY_SQL = """
UPDATE rj_runs SET folded_seq = %(seq)s, summary = %(summary)s, damaged = %(damaged)s,
    status = coalesce(status, %(status)s), workflow = coalesce(workflow, %(workflow)s),
    started_at = coalesce(started_at, %(started_at)s)
WHERE run_id = %(run_id)s AND (folded_seq IS NULL OR folded_seq < %(seq)s OR (damaged AND NOT %(damaged)s))
"""
"""Monotonic: a fold only replaces a fold of fewer events (two readers folding at once keep the further one)."""

SAVE_STATE_SQL = """
INSERT INTO rj_folds (run_id, last_seq, last_hash, byte_offset, state) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (run_id) DO UPDATE SET
    last_seq = EXCLUDED.last_seq, last_hash = EXCLUDED.last_hash, byte_offset = EXCLUDED.byte_offset,
    state = EXCLUDED.state
WHERE rj_folds.last_seq < EXCLUDED.last_seq
"""


def page_where(query: HistoryQuery, after: str | None) -> tuple[str, dict[str, Any]]:
    """The WHERE clause of a page: the query's filters (exact: see ``rj_runs``) and the keyset cursor."""
    clauses, params = ["true"], {}
    if after is not None:
        clauses.append("run_id < %(after)s")
        params["after"] = after
    if query.workflow is not None:
        clauses.append("workflow = %(workflow)s")
        params["workflow"] = query.workflow
    if query.statuses is not None:
        clauses.append("(status = ANY(%(statuses)s) OR damaged)")  # a damaged run passes every status filter
        params["statuses"] = sorted(query.statuses)
    if query.since is not None:
        clauses.append("started_at >= %(since)s")
        params["since"] = query.since
    if query.until is not None:
        clauses.append("started_at < %(until)s")
        params["until"] = query.until
    return " AND ".join(clauses), params


class Row(NamedTuple):
    """A page row whose summary is behind its head: the run and its anchored head."""

    run_id: str
    head: Anchor


@dataclass
class SummaryModel:
    """One ``history`` pass over a :class:`~runjournal.journal.postgres.store.PgStore` (see the module docstring)."""

    store: PgStore
    projector: Projector
    progress: Progress | None = None
    live: dict[str, LiveFold] = field(default_factory=dict)
    _pending: list[dict[str, Any]] = field(default_factory=list)
    _states: list[tuple[Any, ...]] = field(default_factory=list)
    _gone: list[str] = field(default_factory=list)

    def summaries(self, query: HistoryQuery) -> Iterator[RunSummary]:
        """Every run passing ``query`` (and a few that may), newest first; folds and saves what is behind."""
        total = self._unfolded() if getattr(self.progress, "enabled", self.progress is not None) else 0
        position = 0
        make, loads = tuple.__new__, orjson.loads
        try:
            for page in self._pages(query):
                stale = [Row(r[0], Anchor(r[2], r[3], r[4])) for r in page if r[1] is None]
                folds = self._fold_page(stale, position, total) if stale else {}
                position += len(stale)
                # The filters ran in SQL on exact columns (see ``rj_runs``): nothing to filter again here.
                listed = [make(RunSummary, (r[0], *loads(r[1]))) if r[1] is not None else folds.get(r[0]) for r in page]
                live = [s for s in listed if s is not None and s.status not in TERMINAL_STATUSES and s.error is None]
                facts = self._observe(live) if live else {}
                for summary in live:
                    self._hand_over(summary, facts)
                for summary in listed:
                    if summary is not None:  # None: deleted (pruned) while we read
                        yield summary
        finally:
            self.save()

    # -- pages ----------------------------------------------------------------------

    def _pages(self, query: HistoryQuery) -> Iterator[list[tuple[Any, ...]]]:
        size = min((query.limit or 484) + 16, PAGE_MAX)
        after: str | None = None
        while True:
            where, params = page_where(query, after)
            rows = self.store.query(PAGE_SQL.format(where=where), params | {"n": size})
            if rows:
                yield rows
            if len(rows) < size:
                return
            after = rows[-1][0]
            size = min(size * 4, PAGE_MAX)

    def _unfolded(self) -> int:
        """How many runs have a summary behind their head (the progress total of a cold listing)."""
        return self.store.query("SELECT count(*) FROM rj_runs WHERE folded_seq IS DISTINCT FROM head_seq")[0][0]

    # -- folding what is behind --------------------------------------------------------

    def _fold_page(self, rows: list[Row], position: int, total: int) -> dict[str, RunSummary]:
        """Fold the rows whose summaries are behind: short runs many at a time, long ones alone."""
        if not rows:
            return {}
        starts = self.store.saved_folds([row.run_id for row in rows], self.projector)
        folds: dict[str, RunSummary] = {}
        batch: list[Row] = []
        budget = 0
        for row in rows:
            need = row.head.seq + 1 - (starts[row.run_id].cursor.seq if row.run_id in starts else 0)
            if batch and budget + need > LINE_BUDGET:
                folds |= self._fold_batch(batch, starts, budget, position + len(folds), total)
                batch, budget = [], 0
            batch.append(row)
            budget += need
        folds |= self._fold_batch(batch, starts, budget, position + len(folds), total)
        return folds

    def _fold_batch(
        self, rows: list[Row], starts: dict[str, Folded], need: int, position: int, total: int
    ) -> dict[str, RunSummary]:
        """Fold ``rows``: their lines read in one statement, unless one run alone is longer than the budget."""
        lines: dict[str, list[bytes]] | None = None
        if need <= LINE_BUDGET:
            lines = {row.run_id: [] for row in rows}
            ids = [row.run_id for row in rows]
            froms = [starts[i].cursor.seq if i in starts else 0 for i in ids]
            for run_id, line in self.store.query(LINES_SQL, {"run_ids": ids, "from_seqs": froms}):
                lines[run_id].append(bytes(line))
        folds = {}
        for n, row in enumerate(rows):
            if self.progress is not None:
                self.progress(position + n, total)
            summary = self._fold_row(row, starts.get(row.run_id), None if lines is None else lines[row.run_id])
            if summary is not None:
                folds[row.run_id] = summary
        return folds

    def _fold_row(self, row: Row, start: Folded | None, lines: list[bytes] | None) -> RunSummary | None:
        """Fold one run on from ``start`` over ``lines`` (None: read them here), check its head, keep it to save."""
        if lines == [] and start is None:
            return None  # not a line left: the run was deleted after the page was read
        reader = PgRunReader(self.store, row.run_id, start.cursor if start is not None else None)
        errors: list[str] = []
        state = self.projector.fold(_checked(reader, lines, row.head, errors), start.state if start else None)
        error = errors[0] if errors else None
        values = self.projector.row(state, error)
        self._keep(row.run_id, row.head.seq if error is not None else reader.cursor.seq - 1, values, error is not None)
        if error is None and not self.projector.is_terminal(state):
            folded = Folded(state, reader.cursor)
            self._keep_state(row.run_id, folded)
            self.live[row.run_id] = LiveFold(None, lambda: folded, folded)
        elif start is not None:
            self._gone.append(row.run_id)
        return tuple.__new__(RunSummary, (row.run_id, *values))

    # -- handing over and saving ---------------------------------------------------------

    def _observe(self, live: list[RunSummary]) -> dict[str, tuple[Any, ...]]:
        """The writer facts of the page's runs that are not finished, in one statement (after the page was read)."""
        ids = [s.run_id for s in live]
        parts = [lock_parts(lock_key("run", run_id)) for run_id in ids]
        rows = self.store.query(PROBE_MANY_SQL, {"run_ids": ids, "classids": [p["classid"] for p in parts],
                                                 "objids": [p["objid"] for p in parts]})
        return {row[0]: row[1:] for row in rows}

    def _hand_over(self, summary: RunSummary, facts: dict[str, tuple[Any, ...]]) -> None:
        observed = facts.get(summary.run_id)
        live = self.live.get(summary.run_id)
        if live is None:
            run_id, store, projector = summary.run_id, self.store, self.projector
            live = self.live[run_id] = LiveFold(None, lambda: store.fold_forward(run_id, projector))
        live.facts = None if observed is None else server_facts(observed, summary.host)

    def _keep(self, run_id: str, seq: int, values: list[Any], damaged: bool) -> None:
        self._pending.append({"run_id": run_id, "seq": seq, "summary": orjson.dumps(values).decode(),
                              "damaged": damaged, "status": values[0], "workflow": values[1],
                              "started_at": values[3]})
        if len(self._pending) >= SAVE_BATCH:
            self.save()

    def _keep_state(self, run_id: str, folded: Folded) -> None:
        snapshot = self.projector.dump(folded.state)
        if snapshot is None:  # the projector keeps no snapshot of this (large, live) run: it is folded again
            return
        c = folded.cursor
        self._states.append((run_id, c.seq - 1, c.prev_hash, c.offset, orjson.dumps(snapshot).decode()))

    def save(self) -> None:
        """Write the summaries and fold states made so far; a failure only costs a fold next time."""
        pending, states, gone = self._pending, self._states, self._gone
        self._pending, self._states, self._gone = [], [], []
        if not (pending or states or gone):
            return
        try:
            with self.store.connection.cursor() as cur:
                if pending:
                    cur.executemany(SAVE_SUMMARY_SQL, pending)
                if states:
                    cur.executemany(SAVE_STATE_SQL, states)
                if gone:
                    cur.execute("DELETE FROM rj_folds WHERE run_id = ANY(%s)", (gone,))
        except Exception:  # noqa: BLE001 - a read-only role or a lost server: the read model is optional
            pass


def server_facts(observed: tuple[Any, ...], host: str | None) -> ServerFacts:
    """:class:`ServerFacts` from a probe row ``(server now, last received, holder pid, addr, since, application)``."""
    now, last, pid, addr, since, app = observed
    holder = None
    if pid is not None:
        holder = {"backend_pid": pid, "client_addr": addr, "session_start": iso(since), "application": app}
    here = host_name()
    return ServerFacts(host_now=here, same_host=host == here, lock_held=pid is not None, server_now=now,
                       last_received_at=last, lock_holder=holder)


def iso(moment: datetime | None) -> str | None:
    """A server timestamp as ISO 8601 UTC with ``Z``."""
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def _checked(reader: PgRunReader, lines: list[bytes] | None, head: Anchor, errors: list[str]) -> Iterator[Any]:
    """The run's events (from ``lines``, or read by ``reader``) up to the first bad line, whose error goes to ``errors``.

    ``lines`` were read after ``head`` (another statement), so they may go past it (the run
    grew); they must reach it, and the line at it must carry its hash.
    """
    try:
        if lines is None:
            yield from reader.events()
            return
        for line in lines:
            record = reader.record(line)
            yield record.event
            if record.event.seq == head.seq and (reader.cursor.prev_hash, reader.cursor.offset) != head[1:]:
                raise IntegrityError(reader.path, record.line_no, record.offset,
                                     "the run was changed: the line at its anchored head does not carry the anchored hash; "
                                     "its lines were rewritten and re-hashed")
        if reader.cursor.seq - 1 < head.seq:
            raise IntegrityError(reader.path, reader.cursor.line, reader.cursor.offset,
                                 f"the run was cut short: its anchored head is seq {head.seq}, but its lines end at "
                                 f"seq {reader.cursor.seq - 1}: its final lines were removed")
    except CorruptLineError as exc:
        errors.append(str(exc))
