"""Reading a run from the PostgreSQL store: the rows' exact lines, checked as the file reader checks them,
and checked against the run's anchored head.

Each batch of lines is read in one statement together with the run's head (``rj_runs.head_seq``
and ``head_hash``, moved by every append in the append's own statement), so within a batch
the two are one snapshot: when the lines end, the last one must be the head. A run whose
final lines were removed, or whose lines were rewritten and re-hashed, fails that check
(:class:`~runjournal.journal.errors.IntegrityError`) instead of reading as a shorter or a
different run.

The codec (and with it the event models) is imported on the first line decoded, not at
import: a ``history`` that only lists current summaries never pays for pydantic.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from runjournal.journal.errors import IntegrityError
from runjournal.journal.lines import RawLine
from runjournal.journal.postgres.conn import translate_errors
from runjournal.journal.records import Anchor, Cursor, Record, check_sequence
from runjournal.journal.store import RunReader

if TYPE_CHECKING:
    from runjournal.journal.postgres.store import PgStore  # the store imports this module

READ_BATCH = 2000
"""Lines fetched per query while reading a run: bounded memory for a run of any length."""

READ_SQL = """
SELECT r.head_seq, r.head_hash, r.head_offset, e.seq, e.line
FROM rj_runs r LEFT JOIN LATERAL (
    SELECT seq, line FROM rj_events WHERE run_id = %(run_id)s AND seq >= %(seq)s ORDER BY seq LIMIT %(n)s
) e ON true
WHERE r.run_id = %(run_id)s
ORDER BY e.seq
"""
"""A batch of a run's lines and, in the same snapshot, its head (no row at all: the run is gone)."""


class PgRunReader(RunReader):
    """Iterate a run's events from a cursor, checking the chain as the file reader does, and the head.

    The cursor's ``offset`` counts bytes as in the run's JSONL export, so cursors mean the
    same in both stores. ``torn_tail`` is always None: a row is written whole or not at all.
    """

    def __init__(self, store: PgStore, run_id: str, cursor: Cursor | None, connection: Any = None) -> None:
        self.store = store
        self.run_id = run_id
        self.cursor = cursor or Cursor()
        self.path = store.location(run_id)
        self._conn = connection
        self._last_start = self.cursor.offset

    def __iter__(self) -> Iterator[Record]:
        conn = self._conn or self.store.connection
        while True:
            with translate_errors(self.store.where):
                rows = conn.execute(READ_SQL, {"run_id": self.run_id, "seq": self.cursor.seq, "n": READ_BATCH}).fetchall()
            if not rows:
                return  # the run was deleted (pruned) while being read
            lines = [bytes(row[4]) for row in rows if row[3] is not None]
            for line in lines:
                yield self.record(line)
            if len(lines) < READ_BATCH:
                check_head(Anchor(*rows[0][:3]), self.cursor, self._last_start, self.path)
                return

    def record(self, data: bytes) -> Record:
        """Decode and check the line at the cursor, and advance the cursor past it."""
        from runjournal.journal.codec import decode_line  # the event models only when a line is decoded

        cur = self.cursor
        raw = RawLine(cur.line, cur.offset, data)
        event, digest = decode_line(data, cur.prev_hash, path=self.path, line_no=cur.line, offset=cur.offset)
        check_sequence(event, raw, self.run_id, cur.seq, self.path)
        self.cursor = Cursor(raw.end, cur.line + 1, cur.seq + 1, digest)
        self._last_start = raw.offset
        return Record(event, raw.line_no, raw.offset, raw.end)


def check_head(head: Anchor, end: Cursor, last_start: int, path: str) -> None:
    """Raise :class:`IntegrityError` unless the lines read up to ``end`` end exactly at the anchored ``head``.

    ``last_start`` is the offset of the last line read. Only valid when the lines and the
    head were read in one snapshot (one statement).
    """
    last = end.seq - 1
    if head.seq > last:
        raise IntegrityError(
            path, end.line, end.offset,
            f"the run was cut short: its anchored head is seq {head.seq}, but its lines end at seq {last}: "
            "its final lines were removed",
        )
    if head.seq < last:
        raise IntegrityError(
            path, end.line - 1, last_start,
            f"the lines go on to seq {last}, past the run's anchored head (seq {head.seq}): "
            "lines were added without the run's writer",
        )
    if head.hash != end.prev_hash or head.offset != end.offset:
        raise IntegrityError(
            path, end.line - 1, last_start,
            f"the run was changed: its last line (seq {last}) is not the one anchored "
            f"(hash {head.hash[:16]}..., ending at byte {head.offset}); its lines were rewritten and re-hashed",
        )
