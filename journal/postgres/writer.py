"""Writing a run in the PostgreSQL store: the writer's own session, which holds the run's lock.

See :mod:`runjournal.journal.postgres.store` for ownership and ``docs/postgres.md`` for fencing.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from runjournal.journal.codec import encode_line
from runjournal.journal.errors import JournalWriteError, WriterFencedError
from runjournal.journal.events import Abandoned, Event, Started
from runjournal.journal.postgres.conn import connect, translate_errors
from runjournal.journal.postgres.reader import PgRunReader
from runjournal.journal.postgres.schema import FENCED_INSERT, lock_key, lock_parts
from runjournal.journal.records import GENESIS_HASH, Cursor, Record
from runjournal.journal.store import Clock, Durability, LockedRun, RunWriter

if TYPE_CHECKING:
    from runjournal.journal.postgres.store import PgStore  # the store imports this module


class PgRunWriter(RunWriter):
    """The single writer of a run in PostgreSQL: its own session, holding the run's lock.

    Durability: ``state`` and ``all`` commit every append synchronously (the server's WAL
    is flushed before the append returns); ``none`` turns ``synchronous_commit`` off.
    """

    def __init__(self, store: PgStore, conn: Any, run_id: str, *, durability: Durability, clock: Clock) -> None:
        super().__init__(run_id, store.location(run_id), Cursor(), durability=durability, clock=clock)
        self.store = store
        self.conn = conn
        self._key = lock_parts(lock_key("run", run_id))

    @classmethod
    def connect(
        cls, store: PgStore, run_id: str, *, durability: Durability, clock: Clock, role: str = "writer"
    ) -> PgRunWriter:
        """Open the writer's own session (with TCP keepalives, see :mod:`runjournal.journal.postgres.schema`).

        ``role`` names the session (``runjournal writer <run>``, or ``reconciler`` for one that
        took over a dead writer's run), so an operator ending sessions can tell them apart.
        """
        conn = connect(store.url, application_name=f"runjournal {role} {run_id}"[:63], writer=True)
        if durability == "none":
            conn.execute("SET synchronous_commit = off")
        return cls(store, conn, run_id, durability=durability, clock=clock)

    def try_lock(self) -> bool:
        """Take the run's session-level advisory lock if nobody holds it."""
        with translate_errors(self.store.where):
            key = lock_key("run", self.run_id)
            return bool(self.conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0])

    def insert_started(self, started: Started) -> None:
        """Insert the run and its first line in one transaction."""
        line, digest = encode_line(started, GENESIS_HASH)
        with translate_errors(self.store.where, exists=self.run_id), self.conn.transaction():
            self.conn.execute("INSERT INTO rj_runs (run_id) VALUES (%s)", (self.run_id,))
            self._insert(started, line[:-1])
        self.cursor = Cursor(len(line), 2, 1, digest)

    def _write(self, event: Event) -> None:
        line, digest = encode_line(event, self.cursor.prev_hash)
        self._insert(event, line[:-1])
        c = self.cursor
        self.cursor = Cursor(c.offset + len(line), c.line + 1, c.seq + 1, digest)

    def _insert(self, event: Event, data: bytes) -> None:
        import psycopg

        params = {"run_id": self.run_id, "seq": event.seq, "type": event.type, "line": data, **self._key}
        try:
            inserted = self.conn.execute(FENCED_INSERT, params).rowcount
        except psycopg.errors.UniqueViolation:
            self._refusal = f"seq {event.seq} was taken by another writer"
            raise WriterFencedError(
                f"run {self.run_id}: seq {event.seq} is already taken (a reconciler recorded the run "
                "abandoned after this writer's session was lost); this writer is fenced off"
            ) from None
        except psycopg.OperationalError as exc:
            self._refusal = "the connection to the server was lost"
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise JournalWriteError(
                errno.ECONNRESET,
                f"cannot append to run {self.run_id} on {self.store.where}: {reason}; the server releases "
                "the run's lock, so readers will record it abandoned",
            ) from None
        if inserted != 1:
            self._refusal = "the run's lock is no longer held by this session"
            raise WriterFencedError(
                f"run {self.run_id}: this session no longer holds the run's lock on {self.store.where}; "
                "the append was refused"
            )

    def close(self) -> None:
        """Close the session: the server releases the run's lock with it."""
        with self._lock:
            if not self.conn.closed:
                self.conn.close()
            self._refusal = self._refusal or "the writer is closed"


class PgLockedRun(LockedRun):
    """A run whose lock this process holds, opened to append ``abandoned`` (no torn tails in a database)."""

    writer: PgRunWriter

    def __init__(self, writer: PgRunWriter) -> None:
        super().__init__(writer)

    def _records(self) -> Iterator[Record]:
        """The run's records, read through the locked session."""
        return iter(PgRunReader(self.writer.store, self.writer.run_id, None, connection=self.writer.conn))

    def append_abandoned(self, **fields: Any) -> Abandoned:
        """Append ``abandoned`` (``fields``: all but the envelope); refuse a terminal or empty run."""
        self.check_reconcilable()
        return self.writer.append(Abandoned, tail_quarantined=None, **fields)  # type: ignore[return-value]
