"""The PostgreSQL store: the same runs, events and lines as the JSONL store, in one database.

Runs from many hosts share one history. Each event is a row keyed by ``(run_id, seq)``
holding its exact JSONL line, so a second writer's append conflicts instead of
interleaving, an export is byte-identical and the hash chain is checked as for files.
Each run also has one row in ``rj_runs``: its anchored head, the server's clock at its last
append, and its history summary (:mod:`~runjournal.journal.postgres.folds`).

Ownership of a run is a session-level advisory lock (``pg_advisory_lock``) held by the
writer's own connection: the server releases it when that session ends, however the
writer died. Reading a run never needs the lock; reconciling takes it, exactly as the
JSONL store's ``flock``. The layout is in :mod:`~runjournal.journal.postgres.schema`, the
rules in ``docs/postgres.md``.

Importing this module imports neither psycopg nor the event models: a ``history`` that
only lists summaries pays for psycopg when it connects, and never for pydantic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from runjournal.journal.errors import AmbiguousRunIdError, RunExistsError, RunLockedError, RunNotFoundError
from runjournal.journal.ids import validate_prefix, validate_run_id
from runjournal.journal.liveness import ServerFacts
from runjournal.journal.postgres.conn import connect, translate_errors
from runjournal.journal.postgres.folds import SummaryModel, server_facts
from runjournal.journal.postgres.reader import READ_BATCH, PgRunReader
from runjournal.journal.postgres.schema import (
    LOCK_HOLDER_SQL,
    PROBE_SQL,
    lock_key,
    lock_parts,
    month_of,
    next_month,
    redact,
    watch_channel,
)
from runjournal.journal.postgres.writer import PgLockedRun, PgRunWriter
from runjournal.journal.procfacts import host_name
from runjournal.journal.readmodel import Folded, LiveFold
from runjournal.journal.records import Anchor, Cursor
from runjournal.journal.root import default_root
from runjournal.journal.sidefiles import SideFiles
from runjournal.journal.status import TERMINAL_STATUSES
from runjournal.journal.store import Clock, Durability, Pruned, Store, utc_now

if TYPE_CHECKING:
    from runjournal.journal.events import Started, WriterIdentity
    from runjournal.journal.readmodel import HistoryQuery, Progress, Projector, RunSummary
    from runjournal.journal.verify import Problem


@dataclass(frozen=True, slots=True)
class ServerProbe:
    """What the server says about a run's writer, on the server's own clock.

    ``holder`` describes the session holding the run's lock (backend pid, client address,
    session start, application name), None when nobody holds it.
    """

    lock_held: bool
    holder: dict[str, Any] | None
    server_now: datetime
    last_received_at: datetime | None


class PgStore(Store):
    """Runs in a PostgreSQL database (see the module docstring).

    ``projector`` is the fold of the history read model (the caller's: the journal never
    imports it). Writers of a store given one keep their run's summary current with every
    append; without one, readers fold summaries on when they list them.
    """

    def __init__(self, url: str, *, local_root: Path | str | None = None, projector: Projector | None = None) -> None:
        self.url = url
        self.where = redact(url)
        self.side_files = SideFiles(local_root if local_root is not None else default_root())
        self.projector = projector
        self._conn: Any = None
        self._months: set[str] = set()
        self._model: SummaryModel | None = None
        self._lending = threading.Lock()
        self._lent = False
        self._identity: str | None = None

    def address(self) -> str:
        """The URL, password included: pass it to another process through its environment."""
        return self.url

    def identity(self) -> str:
        """The server's system identifier and the database's name: the same database under any host name or URL.

        Asked of the server once per store object (prune checks it before it reconciles, and again before it deletes).
        """
        if self._identity is None:
            ((system, database),) = self.query("SELECT system_identifier, current_database() FROM pg_control_system()")
            self._identity = f"PgStore:{system}:{database}"
        return self._identity

    @property
    def connection(self) -> Any:
        """The store's own session (autocommit), opened and schema-checked on first use."""
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.url, application_name="runjournal reader", ensure_schema=True)
        return self._conn

    def close(self) -> None:
        """Close the store's own session (writers have their own)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement on the store's session and return its rows (driver errors become journal errors)."""
        with translate_errors(self.where):
            return self.connection.execute(sql, params).fetchall()

    def ensure_partition(self, run_id: str, conn: Any) -> None:
        """Make sure the events partition of ``run_id``'s month (and the next month's) exists, on ``conn``."""
        month = month_of(run_id)
        if month is None or month in self._months:
            return
        with translate_errors(self.where):
            conn.execute("SELECT rj_ensure_partition(%s), rj_ensure_partition(%s)", (month, next_month(month)))
        self._months.add(month)

    def forget_partitions(self) -> None:
        """Forget which month partitions exist (after pruning dropped some): the next create checks again."""
        self._months.clear()

    # -- listing ------------------------------------------------------------------------

    def exists(self, run_id: str) -> bool:
        """Whether a run with exactly this id exists."""
        return bool(self.query("SELECT 1 FROM rj_runs WHERE run_id = %s", (validate_run_id(run_id),)))

    def run_ids(self) -> Iterator[str]:
        """Every run id, in no particular order."""
        return (row[0] for row in self.query("SELECT run_id FROM rj_runs"))

    def resolve(self, ref: str) -> str:
        """Turn a run id or a unique prefix of one into a run id (like git); a range scan of the primary key."""
        validate_prefix(ref)
        pattern = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self.query("SELECT run_id FROM rj_runs WHERE run_id LIKE %s ORDER BY run_id LIMIT 6", (pattern,))
        matches = [row[0] for row in rows]
        if ref in matches:
            return ref
        if not matches:
            raise RunNotFoundError(ref, self.where)
        if len(matches) > 1:
            raise AmbiguousRunIdError(ref, matches)
        return matches[0]

    def location(self, run_id: str) -> str:
        """Where the run is, for messages and ``--json`` output: ``URL#run_id`` (no password)."""
        return f"{self.where}#{validate_run_id(run_id)}"

    # -- reading ------------------------------------------------------------------------

    def read(self, run_id: str, cursor: Cursor | None = None) -> PgRunReader:
        """A reader of ``run_id`` from ``cursor`` (the start by default)."""
        validate_run_id(run_id)
        if not self.exists(run_id):
            raise RunNotFoundError(run_id, self.where)
        return PgRunReader(self, run_id, cursor)

    def raw_lines(self, run_id: str) -> Iterator[bytes]:
        """The run's lines exactly as stored, each without its newline (for export and verify)."""
        seq = 0
        while True:
            rows = self.query(
                "SELECT seq, line FROM rj_events WHERE run_id = %s AND seq >= %s ORDER BY seq LIMIT %s",
                (run_id, seq, READ_BATCH),
            )
            for row_seq, line in rows:
                yield bytes(line)
                seq = row_seq + 1
            if len(rows) < READ_BATCH:
                return

    def anchors(self, run_id: str) -> list[Anchor]:
        """A finished run's head as ``rj_runs`` recorded it with its last append (empty while it runs).

        Every read also checks a running run's head (see :mod:`~runjournal.journal.postgres.reader`).
        """
        rows = self.query("SELECT head_seq, head_hash, head_offset FROM rj_runs WHERE run_id = %s AND status = ANY(%s)",
                          (validate_run_id(run_id), sorted(TERMINAL_STATUSES)))
        return [Anchor(*row) for row in rows]

    def watch(self, run_id: str, *, poll_seconds: float) -> Iterator[bool]:
        """Yield True when the run may have grown, False every ``poll_seconds`` without news.

        On a session of its own: take the run's *watch* lock (shared; writers notify only
        runs someone watches), LISTEN on the run's own channel, then yield True once, since
        an append may have committed before the lock was seen. The server queues
        notifications while the caller reads, so none is lost between two waits.
        """
        conn = connect(self.url, application_name="runjournal follow")
        try:
            with translate_errors(self.where):
                conn.execute("SELECT pg_advisory_lock_shared(%s)", (lock_key("watch", run_id),))
                conn.execute(f'LISTEN "{watch_channel(run_id)}"')
            yield True
            while True:
                yield self._notified(conn, time.monotonic() + poll_seconds)
        finally:
            conn.close()

    def _notified(self, conn: Any, deadline: float) -> bool:
        """Wait until a notification arrives (True) or ``deadline`` passes (False)."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        with translate_errors(self.where):
            return any(True for _ in conn.notifies(timeout=left, stop_after=1))

    # -- ownership ----------------------------------------------------------------------

    def create(self, started: Started, *, durability: Durability = "state", clock: Clock = utc_now) -> PgRunWriter:
        """Take the run's lock in a new session, then insert the run and its ``started`` line."""
        validate_run_id(started.run_id)
        writer = PgRunWriter.connect(self, started.run_id, durability=durability, clock=clock,
                                     heartbeat_interval=started.heartbeat_interval)
        try:
            if not writer.try_lock():
                raise RunExistsError(started.run_id)
            writer.insert_started(started)
        except BaseException:
            writer.close()
            raise
        return writer

    def open_writer(self, run_id: str, *, durability: Durability = "state", clock: Clock = utc_now) -> PgRunWriter:
        """Take the writer role of an existing run whose writer is gone (reconcilers, importers).

        Raises :class:`RunLockedError` while another session holds the run's lock.
        """
        validate_run_id(run_id)
        if not self.exists(run_id):
            raise RunNotFoundError(run_id, self.where)
        writer = PgRunWriter.connect(self, run_id, durability=durability, clock=clock, role="reconciler")
        return self._take_over(writer)

    def _take_over(self, writer: PgRunWriter, resume: Cursor | None = None) -> PgRunWriter:
        """Lock the run in ``writer``'s session and read it to its end (folding it, to keep its summary).

        From ``resume`` on when the fold needs nothing before it (no projector, or a fold state
        saved at exactly that cursor); from the start otherwise.
        """
        try:
            if not writer.try_lock():
                pid, host = self.writer_of(writer.run_id)
                raise RunLockedError(writer.run_id, pid, host)
            start = None
            if resume is not None and self.projector is not None:
                start = self.saved_folds([writer.run_id], self.projector).get(writer.run_id)
                if start is not None and start.cursor != resume:
                    start = None
            cursor = resume if resume is not None and (self.projector is None or start is not None) else None
            reader = PgRunReader(self, writer.run_id, cursor, connection=writer.conn)
            if self.projector is not None:
                writer.keep_fold(self.projector.fold(reader.events(), start.state if start is not None else None))
            else:
                for _ in reader:
                    pass
            writer.cursor = reader.cursor
        except BaseException:
            writer.close()
            raise
        return writer

    def writer_alive(self, run_id: str) -> bool:
        """True if some session holds the run's advisory lock right now."""
        return bool(self.query(LOCK_HOLDER_SQL, lock_parts(lock_key("run", run_id))))

    def writer_facts(self, run_id: str, identity: WriterIdentity, *, lock_held: bool | None = None) -> ServerFacts:
        """The server's facts: its lock table and its clock are the same for every host that asks."""
        probe = self.probe(run_id)
        held = probe.lock_held if lock_held is None else lock_held
        return ServerFacts(
            host_now=host_name(), same_host=identity.host == host_name(), lock_held=held,
            server_now=probe.server_now, last_received_at=probe.last_received_at,
            lock_holder=probe.holder if held else None,
        )

    def probe(self, run_id: str) -> ServerProbe:
        """The lock holder and the server's clocks for ``run_id``, in one round trip."""
        row = self.query(PROBE_SQL, {"run_id": run_id, **lock_parts(lock_key("run", run_id))})[0]
        facts = server_facts(row, None)
        return ServerProbe(bool(facts.lock_held), facts.lock_holder, row[0], row[1])

    def writer_of(self, run_id: str) -> tuple[int | None, str | None]:
        """``(pid, host)`` recorded in the run's ``started`` line, if it can be read (no event model needed)."""
        rows = self.query("SELECT line FROM rj_events WHERE run_id = %s AND seq = 0", (run_id,))
        try:
            writer = orjson.loads(bytes(rows[0][0]))["writer"] if rows else {}
            return writer.get("pid"), writer.get("host")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return None, None

    @contextmanager
    def locked_run(self, run_id: str, resume: Cursor | None = None) -> Iterator[PgLockedRun]:
        """Hold ``run_id``'s lock for the ``with`` block (raises :class:`RunLockedError` if taken).

        On the store's own session when it is free, so a reader reconciling a run needs no
        second connection; the lock is released when the block ends. ``resume``: the cursor
        the caller read the run up to; only what follows is read (the summary's fold resumes
        from the state saved at that cursor, when there is one).
        """
        validate_run_id(run_id)
        if not self.exists(run_id):
            raise RunNotFoundError(run_id, self.where)
        writer = self._borrowed_writer(run_id) or PgRunWriter.connect(
            self, run_id, durability="state", clock=utc_now, role="reconciler")
        writer = self._take_over(writer, resume)
        try:
            yield PgLockedRun(writer)
        finally:
            writer.close()

    def _borrowed_writer(self, run_id: str) -> PgRunWriter | None:
        """A writer on the store's own session, unless another borrowed writer has it (advisory locks are re-entrant)."""
        with self._lending:
            if self._lent:
                return None
            self._lent = True
        try:
            return PgRunWriter(self, self.connection, run_id, durability="state", clock=utc_now, borrowed=True)
        except BaseException:
            self._lent = False
            raise

    def return_session(self, writer: PgRunWriter) -> None:
        """Called by a borrowed writer when it closes: the store's session is free again."""
        with self._lending:
            self._lent = False

    @contextmanager
    def workflow_lock(self, workflow: str) -> Iterator[None]:
        """Hold the server-wide lock of ``workflow`` (so two hosts cannot both start it) while inside.

        On a session of its own: advisory locks are re-entrant within a session, so two threads
        sharing the store's connection would otherwise both get it. The server drops the lock
        with the session if this process dies.
        """
        conn = connect(self.url, application_name="runjournal start lock")
        try:
            with translate_errors(self.where):
                conn.execute("SELECT pg_advisory_lock(%s)", (lock_key("workflow", workflow),))
            yield
        finally:
            conn.close()

    # -- history ----------------------------------------------------------------------------

    def summaries(
        self, query: HistoryQuery, projector: Projector, *, progress: Progress | None = None
    ) -> Iterator[RunSummary]:
        """Summaries from ``rj_runs``, newest first, the query's filters applied in SQL (see :mod:`.folds`)."""
        self._model = SummaryModel(self, projector, progress)
        return self._model.summaries(query)

    def take_fold(self, run_id: str) -> LiveFold | None:
        """The writer facts and the fold of a run the last listing yielded as not finished, once."""
        return self._model.live.pop(run_id, None) if self._model is not None else None

    def saved_folds(self, run_ids: list[str], projector: Projector) -> dict[str, Folded]:
        """The fold states ``rj_folds`` keeps for these runs (a damaged state is left out: it is folded again)."""
        rows = self.query("SELECT run_id, last_seq, last_hash, byte_offset, state FROM rj_folds WHERE run_id = ANY(%s)",
                          (run_ids,))
        out = {}
        for run_id, last_seq, last_hash, offset, state in rows:
            try:
                out[run_id] = Folded(projector.load(orjson.loads(state)), Cursor(offset, last_seq + 2, last_seq + 1, last_hash))
            except (ValueError, TypeError, KeyError):
                continue
        return out

    def fold_forward(self, run_id: str, projector: Projector) -> Folded:
        """The run's full fold state now: its saved fold state folded on over the lines after it (saved again)."""
        start = self.saved_folds([run_id], projector).get(run_id)
        reader = PgRunReader(self, run_id, start.cursor if start is not None else None)
        state = projector.fold(reader.events(), start.state if start is not None else None)
        folded = Folded(state, reader.cursor)
        if not projector.is_terminal(state) and (start is None or start.cursor != reader.cursor):
            model = SummaryModel(self, projector)
            model._keep_state(run_id, folded)
            model.save()
        return folded

    # -- verify, transfer and retention ------------------------------------------------------

    def verify(self, run_id: str) -> Iterator[Problem]:
        """Every problem in the run's rows, checked as the file verifier checks lines, and against the anchor."""
        from runjournal.journal.verify import verify_lines

        anchors = self.anchors(run_id)  # before the lines: a run may grow past them, never fall short of them
        return verify_lines(self.raw_lines(run_id), run_id, self.location(run_id), anchors=anchors)

    def import_lines(self, run_id: str, lines: list[bytes]) -> None:
        """Insert a whole, already verified run in one transaction (``runjournal import``), with its row and anchor."""
        from runjournal.journal.postgres.transfer import import_run

        import_run(self, run_id, lines)

    def prune(self, run_ids: Collection[str]) -> list[Pruned]:
        """Delete the finished, unlocked ones of ``run_ids``; a month whose every run goes loses its partition."""
        from runjournal.journal.postgres.prune import prune_runs

        return prune_runs(self, run_ids)


__all__ = ["PgLockedRun", "PgRunReader", "PgRunWriter", "PgStore", "ServerProbe"]
