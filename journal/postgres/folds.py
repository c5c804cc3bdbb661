"""The PostgreSQL store's read model: each run's fold state, keyed by the last seq folded.

``rj_folds`` is a cache, never the truth: a row says "folding events 0..last_seq gives this
state", so a run with newer events is folded on from there, and a dropped table is rebuilt
from ``rj_events`` on the next ``history``. It plays the part the JSONL store's index
(:mod:`runjournal.journal.jsonl.index`) plays, and yields the same
:class:`~runjournal.journal.readmodel.RunSummary` rows, folded by the caller's projector.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from runjournal.journal.errors import CorruptLineError
from runjournal.journal.postgres.conn import connect, translate_errors
from runjournal.journal.postgres.reader import PgRunReader
from runjournal.journal.readmodel import Progress, Projector, RunSummary
from runjournal.journal.records import Cursor

SUMMARIES_SQL = """
SELECT r.run_id, f.last_seq, f.summary::text,
       (SELECT max(e.seq) FROM rj_events e WHERE e.run_id = r.run_id) AS head
FROM rj_runs r LEFT JOIN rj_folds f ON f.run_id = r.run_id
ORDER BY r.run_id DESC
"""

UPSERT_SQL = """
INSERT INTO rj_folds (run_id, last_seq, last_hash, byte_offset, summary, state)
VALUES (%s, %s, %s, %s, %s::jsonb, %s::jsonb)
ON CONFLICT (run_id) DO UPDATE SET
    last_seq = EXCLUDED.last_seq, last_hash = EXCLUDED.last_hash, byte_offset = EXCLUDED.byte_offset,
    summary = EXCLUDED.summary, state = EXCLUDED.state
WHERE rj_folds.last_seq < EXCLUDED.last_seq
"""
"""Monotonic: two readers folding the same run at once keep the further fold."""

SAVE_BATCH = 500
STREAM_BATCH = 2000


class FoldCache:
    """Summaries of every run in a :class:`~runjournal.journal.postgres.store.PgStore`, newest first, folding only what changed."""

    def __init__(self, store: Any, projector: Projector, *, progress: Progress | None = None) -> None:
        self.store = store
        self.projector = projector
        self.progress = progress
        self._pending: list[tuple[Any, ...]] = []

    def summaries(self) -> Iterator[RunSummary]:
        """Yield each run's summary: cached where the fold is current, folded on (and saved) where not.

        Rows stream from a server-side cursor, so ``history -n 20`` reads 20 rows, not all.
        """
        total = self._unfolded() if self.progress is not None and getattr(self.progress, "enabled", True) else 0
        position = 0
        for run_id, last_seq, summary, head in self._rows():
            if last_seq is not None and last_seq == head:
                yield tuple.__new__(RunSummary, (run_id, *orjson.loads(summary)))
                continue
            if self.progress is not None:
                self.progress(position, total)
            position += 1
            yield self._fold(run_id, last_seq is not None)
        self._save()

    def _rows(self) -> Iterator[tuple[Any, ...]]:
        """The summary rows, newest first, from a cursor on a session of its own (the store's
        own session stays free for folding and saving while this one is open)."""
        self.store.connection  # noqa: B018 - creates the tables on a new database (else: no rj_runs)
        conn = connect(self.store.url, application_name="runjournal history")
        try:
            with translate_errors(self.store.where), conn.transaction(), conn.cursor(name="rj_summaries") as cur:
                cur.itersize = STREAM_BATCH
                cur.execute(SUMMARIES_SQL)
                yield from cur
        finally:
            conn.close()

    def _unfolded(self) -> int:
        """How many runs have no cached fold at all (the progress total of a cold history)."""
        return self.store.query(
            "SELECT count(*) FROM rj_runs r WHERE NOT EXISTS (SELECT 1 FROM rj_folds f WHERE f.run_id = r.run_id)"
        )[0][0]

    def _fold(self, run_id: str, cached: bool) -> RunSummary:
        start, cursor = self._start(run_id) if cached else (None, None)
        reader = PgRunReader(self.store, run_id, cursor)  # listed from rj_runs: no existence check needed
        errors: list[str] = []
        state = self.projector.fold(_until_corrupt(reader.events(), errors), start)
        row = self.projector.row(state, errors[0] if errors else None)
        snapshot = None if errors else self.projector.dump(state)
        if snapshot is not None:  # None: the projector keeps no snapshot of this (large, live) run
            c = reader.cursor
            self._pending.append(
                (run_id, c.seq - 1, c.prev_hash, c.offset, orjson.dumps(row).decode(), orjson.dumps(snapshot).decode())
            )
            if len(self._pending) >= SAVE_BATCH:
                self._save()
        return tuple.__new__(RunSummary, (run_id, *row))

    def _start(self, run_id: str) -> tuple[Any, Cursor | None]:
        rows = self.store.query(
            "SELECT last_seq, last_hash, byte_offset, state::text FROM rj_folds WHERE run_id = %s", (run_id,)
        )
        if not rows:
            return None, None
        last_seq, last_hash, offset, state = rows[0]
        return self.projector.load(orjson.loads(state)), Cursor(offset, last_seq + 2, last_seq + 1, last_hash)

    def _save(self) -> None:
        """Write the folds made so far; a failure only costs a re-fold next time."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            with self.store.connection.cursor() as cur:
                cur.executemany(UPSERT_SQL, pending)
        except Exception:  # noqa: BLE001 - a read-only role or a lost server: the cache is optional
            pass


def _until_corrupt(events: Iterator[Any], errors: list[str]) -> Iterator[Any]:
    try:
        yield from events
    except CorruptLineError as exc:
        errors.append(str(exc))
