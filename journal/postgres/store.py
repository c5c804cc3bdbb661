"""The PostgreSQL store: the same runs, events and lines as the JSONL store, in one database.

Runs from many hosts share one history. Each event is a row keyed by ``(run_id, seq)``
holding its exact JSONL line, so a second writer's append conflicts instead of
interleaving, an export is byte-identical and the hash chain is checked as for files.

Ownership of a run is a session-level advisory lock (``pg_advisory_lock``) held by the
writer's own connection: the server releases it when that session ends, however the
writer died. Reading a run never needs the lock; reconciling takes it, exactly as the
JSONL store's ``flock``. The layout is in :mod:`journal.pgschema`, the rules in
``docs/postgres.md``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runjournal.journal.codec import decode_line
from runjournal.journal.errors import AmbiguousRunIdError, RunExistsError, RunLockedError, RunNotFoundError
from runjournal.journal.events import Started
from runjournal.journal.ids import validate_prefix, validate_run_id
from runjournal.journal.liveness import ServerFacts
from runjournal.journal.postgres.conn import connect, translate_errors
from runjournal.journal.postgres.folds import FoldCache
from runjournal.journal.postgres.reader import READ_BATCH, PgRunReader
from runjournal.journal.postgres.schema import (
    HELD_RUN_LOCKS_SQL,
    LOCK_HOLDER_SQL,
    NOTIFY_CHANNEL,
    lock_key,
    lock_parts,
    redact,
)
from runjournal.journal.postgres.writer import PgLockedRun, PgRunWriter
from runjournal.journal.procfacts import host_name
from runjournal.journal.records import GENESIS_HASH, Anchor, Cursor
from runjournal.journal.root import default_root
from runjournal.journal.sidefiles import SideFiles
from runjournal.journal.store import Clock, Durability, Store, utc_now
from runjournal.journal.verify import verify_lines

if TYPE_CHECKING:
    from runjournal.journal.events import WriterIdentity
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
    """Runs in a PostgreSQL database (see the module docstring)."""

    def __init__(self, url: str, *, local_root: Path | str | None = None) -> None:
        self.url = url
        self.where = redact(url)
        self.side_files = SideFiles(local_root if local_root is not None else default_root())
        self._conn: Any = None

    def address(self) -> str:
        """The URL, password included: pass it to another process through its environment."""
        return self.url

    @property
    def connection(self) -> Any:
        """The store's own connection (autocommit), opened and schema-checked on first use."""
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.url, application_name="runjournal reader", ensure_schema=True)
        return self._conn

    def close(self) -> None:
        """Close the store's own connection (writers have their own)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement on the store's connection and return its rows (driver errors become journal errors)."""
        with translate_errors(self.where):
            return self.connection.execute(sql, params).fetchall()

    # -- listing ------------------------------------------------------------------------

    def exists(self, run_id: str) -> bool:
        """Whether a run with exactly this id exists."""
        return bool(self.query("SELECT 1 FROM rj_runs WHERE run_id = %s", (validate_run_id(run_id),)))

    def run_ids(self) -> Iterator[str]:
        """Every run id, in no particular order."""
        return (row[0] for row in self.query("SELECT run_id FROM rj_runs"))

    def resolve(self, ref: str) -> str:
        """Turn a run id or a unique prefix of one into a run id (like git)."""
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

    def watch(self, run_id: str, *, poll_seconds: float) -> Iterator[bool]:
        """Yield True after events of the run are committed, False every ``poll_seconds`` without.

        LISTEN/NOTIFY on a session of its own; the server queues notifications while the
        caller reads, so none is lost between two waits.
        """
        conn = connect(self.url, application_name="runjournal follow")
        try:
            with translate_errors(self.where):
                conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            while True:
                yield self._notified(conn, run_id, time.monotonic() + poll_seconds)
        finally:
            conn.close()

    def _notified(self, conn: Any, run_id: str, deadline: float) -> bool:
        """Wait until a notification for ``run_id`` arrives (True) or ``deadline`` passes (False)."""
        while (left := deadline - time.monotonic()) > 0:
            with translate_errors(self.where):
                if any(n.payload == run_id for n in conn.notifies(timeout=left, stop_after=1)):
                    return True
        return False

    # -- ownership ----------------------------------------------------------------------

    def create(self, started: Started, *, durability: Durability = "state", clock: Clock = utc_now) -> PgRunWriter:
        """Take the run's lock in a new session, then insert the run and its ``started`` line."""
        validate_run_id(started.run_id)
        self.connection  # noqa: B018 - creates the tables on a new database
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
        try:
            if not writer.try_lock():
                pid, host = self.writer_of(run_id)
                raise RunLockedError(run_id, pid, host)
            reader = PgRunReader(self, run_id, None, connection=writer.conn)
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

    def held_run_locks(self) -> frozenset[tuple[int, int]]:
        """The ``(classid, objid)`` of every advisory lock held now: probe many runs in one query."""
        return frozenset((row[0], row[1]) for row in self.query(HELD_RUN_LOCKS_SQL))

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
        rows = self.query(
            "SELECT now(), (SELECT max(received_at) FROM rj_events WHERE run_id = %(run_id)s)",
            {"run_id": run_id},
        )
        holders = self.query(LOCK_HOLDER_SQL, lock_parts(lock_key("run", run_id)))
        holder = None
        if holders:
            pid, addr, since, app = holders[0]
            holder = {"backend_pid": pid, "client_addr": addr, "session_start": _iso(since), "application": app}
        now, last = rows[0]
        return ServerProbe(bool(holders), holder, now, last)

    def writer_of(self, run_id: str) -> tuple[int | None, str | None]:
        """``(pid, host)`` recorded in the run's ``started`` line, if it can be read."""
        rows = self.query("SELECT line FROM rj_events WHERE run_id = %s AND seq = 0", (run_id,))
        try:
            event, _ = decode_line(bytes(rows[0][0]), GENESIS_HASH) if rows else (None, None)
        except ValueError:
            return None, None
        if isinstance(event, Started):
            return event.writer.pid, event.writer.host
        return None, None

    @contextmanager
    def locked_run(self, run_id: str, resume: Cursor | None = None) -> Iterator[PgLockedRun]:
        """Hold ``run_id``'s lock for the ``with`` block (raises :class:`RunLockedError` if taken).

        ``resume`` is accepted for the store interface; the database needs no scan to append.
        """
        writer = self.open_writer(run_id)
        try:
            yield PgLockedRun(writer)
        finally:
            writer.close()

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

    # -- history, verify and transfer ----------------------------------------------------

    def summaries(
        self, query: HistoryQuery, projector: Projector, *, progress: Progress | None = None
    ) -> Iterator[RunSummary]:
        """Summaries from the fold cache (``rj_folds``), newest first; filters applied to them."""
        for summary in FoldCache(self, projector, progress=progress).summaries():
            if query.matches(summary):
                yield summary

    def verify(self, run_id: str) -> Iterator[Problem]:
        """Every problem in the run's rows, checked as the file verifier checks lines."""
        return verify_lines(self.raw_lines(run_id), run_id, self.location(run_id))

    def anchors(self, run_id: str) -> list[Anchor]:
        """None yet: the database store keeps no anchors (issue 14 anchors a run's head in its summary row)."""
        validate_run_id(run_id)
        return []

    def import_lines(self, run_id: str, lines: list[bytes]) -> None:
        """Insert a whole, already verified run in one transaction (``runjournal import``)."""
        validate_run_id(run_id)
        reader = PgRunReader(self, run_id, None)
        types = [reader._record(line).event.type for line in lines]  # the chain, seqs and run id, checked
        conn = self.connection
        with translate_errors(self.where, exists=run_id), conn.transaction():
            conn.execute("INSERT INTO rj_runs (run_id) VALUES (%s)", (run_id,))
            with conn.cursor().copy("COPY rj_events (run_id, seq, type, line) FROM STDIN") as copy:
                for seq, (line, kind) in enumerate(zip(lines, types, strict=True)):
                    copy.write_row((run_id, seq, kind, line))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


__all__ = ["PgLockedRun", "PgRunReader", "PgRunWriter", "PgStore", "ServerProbe"]
