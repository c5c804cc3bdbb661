"""Writing a run in the PostgreSQL store: the writer's own session, which holds the run's lock.

See :mod:`runjournal.journal.postgres.store` for ownership and ``docs/postgres.md`` for fencing.
"""

from __future__ import annotations

import errno
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from runjournal.journal.codec import encode_line
from runjournal.journal.errors import JournalWriteError, StoreUnavailableError, WriterFencedError
from runjournal.journal.events import Abandoned, Event, Started
from runjournal.journal.postgres.conn import CONNECT_TIMEOUT_SECONDS, connect, translate_errors
from runjournal.journal.postgres.reader import PgRunReader
from runjournal.journal.postgres.schema import FENCED_INSERT, lock_key, lock_parts
from runjournal.journal.records import GENESIS_HASH, Cursor, Record
from runjournal.journal.store import Clock, Durability, LockedRun, RunWriter

if TYPE_CHECKING:
    from runjournal.journal.postgres.store import PgStore  # the store imports this module


RECONNECT_FIRST_DELAY = 0.05
"""Seconds before the second attempt to reconnect; the delay doubles up to half a heartbeat interval."""

GIVE_UP_INTERVALS = 2.0
"""A writer that lost its session keeps trying to take its run back for this many heartbeat
intervals after its last acknowledged append; then it gives the run up. That leaves one
interval of the lease (three) to stop its steps before readers may record the run abandoned."""


class PgRunWriter(RunWriter):
    """The single writer of a run in PostgreSQL: its own session, holding the run's lock.

    Durability: ``state`` and ``all`` commit every append synchronously (the server's WAL
    is flushed before the append returns); ``none`` turns ``synchronous_commit`` off.

    A run's own writer (``heartbeat_interval`` given) survives the server: when its session
    is lost (a server restart, a terminated backend, a dropped connection) it reconnects
    with backoff, takes the run's lock again and checks that the run's last line is still
    the one it wrote (or the one it was writing, which then counts as written); then the
    append goes on. If another writer appended meanwhile (a reconciler recorded the run
    abandoned), or the run cannot be taken back within :data:`GIVE_UP_INTERVALS` heartbeat
    intervals of its last acknowledged append, it refuses for good
    (:class:`~runjournal.journal.errors.WriterFencedError`).
    """

    def __init__(
        self, store: PgStore, conn: Any, run_id: str, *, durability: Durability, clock: Clock,
        heartbeat_interval: float | None = None,
    ) -> None:
        super().__init__(run_id, store.location(run_id), Cursor(), durability=durability, clock=clock)
        self.store = store
        self.conn = conn
        self.heartbeat_interval = heartbeat_interval
        self.reconnects = 0
        """How many times this writer took its run back after losing its session."""
        self._key = lock_parts(lock_key("run", run_id))
        self._acknowledged = time.monotonic()

    @classmethod
    def connect(
        cls, store: PgStore, run_id: str, *, durability: Durability, clock: Clock, role: str = "writer",
        heartbeat_interval: float | None = None,
    ) -> PgRunWriter:
        """Open the writer's own session (its TCP settings from ``heartbeat_interval``, see
        :func:`~runjournal.journal.postgres.schema.writer_tcp_settings`).

        ``role`` names the session (``runjournal writer <run>``, or ``reconciler`` for one that
        took over a dead writer's run), so an operator ending sessions can tell them apart.
        Only a run's own writer (``heartbeat_interval`` given) reconnects after losing it.
        """
        conn = _session(store, run_id, role, durability, heartbeat_interval)
        return cls(store, conn, run_id, durability=durability, clock=clock, heartbeat_interval=heartbeat_interval)

    def try_lock(self) -> bool:
        """Take the run's session-level advisory lock if nobody holds it."""
        with translate_errors(self.store.where):
            return _try_lock(self.conn, self.run_id)

    def insert_started(self, started: Started) -> None:
        """Insert the run and its first line in one transaction."""
        line, digest = encode_line(started, GENESIS_HASH)
        with translate_errors(self.store.where, exists=self.run_id), self.conn.transaction():
            self.conn.execute("INSERT INTO rj_runs (run_id) VALUES (%s)", (self.run_id,))
            self._insert(started, line[:-1])
        self.cursor = Cursor(len(line), 2, 1, digest)
        self._acknowledged = time.monotonic()

    def _write(self, event: Event) -> None:
        line, digest = encode_line(event, self.cursor.prev_hash)
        while True:
            try:
                self._insert(event, line[:-1])
                break
            except _SessionLost as lost:
                if self._take_back(event, line[:-1], lost.reason):
                    break  # the lost append had landed before the session went
        c = self.cursor
        self.cursor = Cursor(c.offset + len(line), c.line + 1, c.seq + 1, digest)
        self._acknowledged = time.monotonic()

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
            if self.heartbeat_interval is not None:
                raise _SessionLost(_first_line(exc)) from None
            self._refusal = "the connection to the server was lost"
            raise JournalWriteError(
                errno.ECONNRESET,
                f"cannot append to run {self.run_id} on {self.store.where}: {_first_line(exc)}; the server releases "
                "the run's lock, so readers will record it abandoned",
            ) from None
        if inserted != 1:
            self._refusal = "the run's lock is no longer held by this session"
            raise WriterFencedError(
                f"run {self.run_id}: this session no longer holds the run's lock on {self.store.where}; "
                "the append was refused"
            )

    def _take_back(self, event: Event, data: bytes, why: str) -> bool:
        """Reconnect, retake the run's lock and check its head; True if ``event`` had landed already.

        Raises :class:`WriterFencedError` (and refuses for good) when the run was taken over or
        cannot be taken back in time.
        """
        interval = self.heartbeat_interval or 0.0
        deadline = self._acknowledged + GIVE_UP_INTERVALS * interval
        delay = RECONNECT_FIRST_DELAY
        print(f"runjournal: warning: run {self.run_id}: lost the session to {self.store.where} ({why}); "
              "reconnecting", file=sys.stderr, flush=True)
        while (left := deadline - time.monotonic()) > 0:
            try:
                landed = self._reconnect(event, data, left)
            except (StoreUnavailableError, _SessionLost) as exc:
                why = str(exc)
            else:
                if landed is not None:
                    self.reconnects += 1
                    print(f"runjournal: run {self.run_id}: session to {self.store.where} re-established",
                          file=sys.stderr, flush=True)
                    return landed
            time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
            delay = min(delay * 2, max(RECONNECT_FIRST_DELAY, interval / 2))
        self._refusal = "its session was lost and the run could not be taken back within its lease"
        raise WriterFencedError(
            f"run {self.run_id}: lost the session to {self.store.where} and could not take the run back within "
            f"{GIVE_UP_INTERVALS * interval:g}s of its last append ({why}); readers will record it abandoned"
        )

    def _reconnect(self, event: Event, data: bytes, left: float) -> bool | None:
        """One attempt: a new session holding the run's lock, with the head checked. None: the lock is
        taken (a reconciler at work), try again."""
        import psycopg

        try:
            conn = _session(self.store, self.run_id, "writer", self.durability, self.heartbeat_interval, timeout=left)
        except psycopg.OperationalError as exc:
            raise _SessionLost(_first_line(exc)) from None
        try:
            if not _try_lock(conn, self.run_id):
                conn.close()
                return None
            landed = self._check_head(conn, event, data)
        except psycopg.OperationalError as exc:
            conn.close()
            raise _SessionLost(_first_line(exc)) from None
        except BaseException:
            conn.close()
            raise
        old, self.conn = self.conn, conn
        old.close()
        return landed

    def _check_head(self, conn: Any, event: Event, data: bytes) -> bool:
        """Whether the run ends with our last line (False) or with ``event`` itself (True); fenced otherwise."""
        row = conn.execute("SELECT seq, line FROM rj_events WHERE run_id = %s ORDER BY seq DESC LIMIT 1",
                           (self.run_id,)).fetchone()
        seq, line = (row[0], bytes(row[1])) if row is not None else (-1, b"")
        if seq == event.seq and line == data:
            return True
        if seq == self.cursor.seq - 1 and line.endswith(f',"h":"{self.cursor.prev_hash}"}}'.encode()):
            return False
        conn.close()
        self._refusal = f"the run's last line is seq {seq}, not the one this writer wrote"
        raise WriterFencedError(
            f"run {self.run_id}: after reconnecting, its last line is seq {seq}, not this writer's seq "
            f"{self.cursor.seq - 1} (a reconciler recorded it abandoned meanwhile); this writer is fenced off"
        )

    def close(self) -> None:
        """Close the session: the server releases the run's lock with it."""
        with self._lock:
            if not self.conn.closed:
                self.conn.close()
            self._refusal = self._refusal or "the writer is closed"


class _SessionLost(Exception):
    """The writer's session is gone (internal: the writer reconnects, or gives up)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _session(
    store: PgStore, run_id: str, role: str, durability: Durability, heartbeat_interval: float | None,
    timeout: float = CONNECT_TIMEOUT_SECONDS,
) -> Any:
    conn = connect(store.url, application_name=f"runjournal {role} {run_id}"[:63],
                   heartbeat_interval=heartbeat_interval, timeout=timeout)
    if durability == "none":
        conn.execute("SET synchronous_commit = off")
    return conn


def _try_lock(conn: Any, run_id: str) -> bool:
    return bool(conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key("run", run_id),)).fetchone()[0])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PgLockedRun(LockedRun):
    """A run whose lock this process holds, opened to append ``abandoned`` (no torn tails in a database)."""

    writer: PgRunWriter

    def __init__(self, writer: PgRunWriter) -> None:
        super().__init__(writer)

    def _records(self, after: Cursor | None = None) -> Iterator[Record]:
        """The run's records (after ``after``, if given), read through the locked session."""
        return iter(PgRunReader(self.writer.store, self.writer.run_id, after, connection=self.writer.conn))

    def append_abandoned(self, **fields: Any) -> Abandoned:
        """Append ``abandoned`` (``fields``: all but the envelope); refuse a terminal or empty run."""
        self.check_reconcilable()
        return self.writer.append(Abandoned, tail_quarantined=None, **fields)  # type: ignore[return-value]
