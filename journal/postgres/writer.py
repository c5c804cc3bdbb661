"""Writing a run in the PostgreSQL store: the writer's own session, which holds the run's lock.

See :mod:`runjournal.journal.postgres.store` for ownership and ``docs/postgres.md`` for fencing.
Each append is one statement (:data:`~runjournal.journal.postgres.schema.APPEND`): the line,
the run's head (the anchor), and, when the store was given the caller's projector, the
run's summary row folded up to this event, all in the append's own transaction.
"""

from __future__ import annotations

import errno
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from runjournal.journal.errors import JournalWriteError, StoreUnavailableError, WriterFencedError
from runjournal.journal.postgres.conn import CONNECT_TIMEOUT_SECONDS, connect, translate_errors
from runjournal.journal.postgres.reader import PgRunReader
from runjournal.journal.postgres.schema import (
    APPEND,
    APPEND_FOLDED,
    APPEND_FOLDED_FINAL,
    CREATE_RUN,
    lock_key,
    run_lock_params,
    watch_channel,
)
from runjournal.journal.records import GENESIS_HASH, Cursor, Record
from runjournal.journal.status import EVENT_STATUS
from runjournal.journal.store import Clock, Durability, LockedRun, RunWriter

if TYPE_CHECKING:
    from runjournal.journal.events import Abandoned, Event, Started
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

    With the store's projector, the writer keeps the run's fold and writes its summary with
    every append, so ``history`` never has to fold a run written this way. If an append
    fails for good the fold is dropped (the summary then stays at the last event it
    describes and readers fold on from there): a summary is never ahead of the lines.
    """

    def __init__(
        self, store: PgStore, conn: Any, run_id: str, *, durability: Durability, clock: Clock,
        heartbeat_interval: float | None = None, borrowed: bool = False,
    ) -> None:
        super().__init__(run_id, store.location(run_id), Cursor(), durability=durability, clock=clock)
        self.store = store
        self.conn = conn
        self.heartbeat_interval = heartbeat_interval
        self.reconnects = 0
        """How many times this writer took its run back after losing its session."""
        self.borrowed = borrowed
        """Whether ``conn`` is the store's own session (a reconciler's): closing releases the lock, not the session."""
        self._params = {**run_lock_params(run_id), "run_id": run_id, "channel": watch_channel(run_id)}
        self._projector = store.projector
        self._state: Any = None
        self._locked = False
        self._returned = False
        self._acknowledged = time.monotonic()

    @classmethod
    def connect(
        cls, store: PgStore, run_id: str, *, durability: Durability, clock: Clock, role: str = "writer",
        heartbeat_interval: float | None = None,
    ) -> PgRunWriter:
        """Open the writer's own session (its TCP settings from ``heartbeat_interval``, see
        :func:`~runjournal.journal.postgres.schema.writer_tcp_settings`); the tables are created on a new database.

        ``role`` names the session (``runjournal writer <run>``, or ``reconciler`` for one that
        took over a dead writer's run), so an operator ending sessions can tell them apart.
        Only a run's own writer (``heartbeat_interval`` given) reconnects after losing it.
        """
        conn = _session(store, run_id, role, durability, heartbeat_interval, ensure_schema=True)
        return cls(store, conn, run_id, durability=durability, clock=clock, heartbeat_interval=heartbeat_interval)

    def try_lock(self) -> bool:
        """Take the run's session-level advisory lock if nobody holds it."""
        with translate_errors(self.store.where):
            self._locked = _try_lock(self.conn, self.run_id)
            return self._locked

    def keep_fold(self, state: Any) -> None:
        """Keep ``state`` (the fold of the run up to the cursor) and update the summary with each append."""
        self._state = state if self._projector is not None else None

    def insert_started(self, started: Started) -> None:
        """Insert the run's row and its first line, in one statement."""
        from runjournal.journal.codec import encode_line

        line, digest = encode_line(started, GENESIS_HASH)
        self.store.ensure_partition(self.run_id, self.conn)
        if self._projector is not None:
            self._state = self._projector.fold([started])
        params = self._params | self._summary(0) | {
            "hash": digest, "offset": len(line), "type": started.type, "line": line[:-1], "workflow": started.workflow,
            "started_at": started.ts,
        }
        with translate_errors(self.store.where, exists=self.run_id):
            inserted = self.conn.execute(CREATE_RUN, params).fetchone()[0]
        if inserted != 1:
            raise WriterFencedError(f"run {self.run_id}: this session lost the run's lock before its first line")
        self.cursor = Cursor(len(line), 2, 1, digest)
        self._acknowledged = time.monotonic()

    def _summary(self, seq: int) -> dict[str, Any]:
        """The summary columns of the run up to ``seq`` (None values: this writer keeps no fold)."""
        if self._state is None:
            return {"folded_seq": None, "summary": None}
        return {"folded_seq": seq, "summary": orjson.dumps(self._projector.row(self._state)).decode()}

    def _write(self, event: Event) -> None:
        from runjournal.journal.codec import encode_line

        line, digest = encode_line(event, self.cursor.prev_hash)
        params = self._params | {"seq": event.seq, "prev_hash": self.cursor.prev_hash, "hash": digest,
                                 "offset": self.cursor.offset + len(line), "type": event.type, "line": line[:-1],
                                 "status_after": EVENT_STATUS[event.type]}
        sql = APPEND
        if self._state is not None:
            self._state = self._projector.advance(self._state, [event])
            params |= self._summary(event.seq)
            sql = APPEND_FOLDED_FINAL if self._projector.is_terminal(self._state) else APPEND_FOLDED
        try:
            while True:
                try:
                    self._insert(sql, params, event.seq)
                    break
                except _SessionLost as lost:
                    if self._take_back(event, line[:-1], lost.reason):
                        break  # the lost append had landed before the session went (with its summary)
        except BaseException:
            self._state = None  # the fold may now be ahead of the lines: readers fold the summary on instead
            raise
        c = self.cursor
        self.cursor = Cursor(c.offset + len(line), c.line + 1, c.seq + 1, digest)
        self._acknowledged = time.monotonic()

    def _insert(self, sql: str, params: dict[str, Any], seq: int) -> None:
        import psycopg

        try:
            appended, lock_held, _ = self.conn.execute(sql, params).fetchone()
        except psycopg.errors.UniqueViolation:  # a line at this seq the head did not know of: not ours to extend
            appended, lock_held = 0, True
        except psycopg.OperationalError as exc:
            if self.heartbeat_interval is not None and not self.borrowed:
                raise _SessionLost(_first_line(exc)) from None
            self._refusal = "the connection to the server was lost"
            raise JournalWriteError(
                errno.ECONNRESET,
                f"cannot append to run {self.run_id} on {self.store.where}: {_first_line(exc)}; the server releases "
                "the run's lock, so readers will record it abandoned",
            ) from None
        if appended == 1:
            return
        if not lock_held:
            self._refusal = "the run's lock is no longer held by this session"
            raise WriterFencedError(
                f"run {self.run_id}: this session no longer holds the run's lock on {self.store.where}; "
                "the append was refused"
            )
        self._refusal = f"seq {seq} was taken by another writer"
        raise WriterFencedError(
            f"run {self.run_id}: seq {seq} is already taken (a reconciler recorded the run "
            "abandoned after this writer's session was lost); this writer is fenced off"
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
        """Close the session (the server releases the run's lock with it); a borrowed session only unlocks."""
        with self._lock:
            self._refusal = self._refusal or "the writer is closed"
            if not self.borrowed:
                if not self.conn.closed:
                    self.conn.close()
                return
            if self._locked:
                self._locked = False
                try:
                    self.conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key("run", self.run_id),))
                except Exception:  # noqa: BLE001 - a lost session released the lock with it
                    pass
            if not self._returned:
                self._returned = True  # a second close returns nothing again
                self.store.return_session(self)


class _SessionLost(Exception):
    """The writer's session is gone (internal: the writer reconnects, or gives up)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _session(
    store: PgStore, run_id: str, role: str, durability: Durability, heartbeat_interval: float | None,
    timeout: float = CONNECT_TIMEOUT_SECONDS, ensure_schema: bool = False,
) -> Any:
    conn = connect(store.url, application_name=f"runjournal {role} {run_id}"[:63],
                   heartbeat_interval=heartbeat_interval, timeout=timeout, ensure_schema=ensure_schema)
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
        from runjournal.journal.events import Abandoned

        self.check_reconcilable()
        return self.writer.append(Abandoned, tail_quarantined=None, **fields)  # type: ignore[return-value]
