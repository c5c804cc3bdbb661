"""Reading a run from the PostgreSQL store: the rows' exact lines, checked as the file reader checks them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from runjournal.journal.codec import decode_line
from runjournal.journal.lines import RawLine
from runjournal.journal.postgres.conn import translate_errors
from runjournal.journal.records import Cursor, Record, check_sequence
from runjournal.journal.store import RunReader

if TYPE_CHECKING:
    from runjournal.journal.postgres.store import PgStore  # the store imports this module

READ_BATCH = 2000
"""Lines fetched per query while reading a run: bounded memory for a run of any length."""

class PgRunReader(RunReader):
    """Iterate a run's events from a cursor, checking the chain as the file reader does.

    The cursor's ``offset`` counts bytes as in the run's JSONL export, so cursors mean the
    same in both stores. ``torn_tail`` is always None: a row is written whole or not at all.
    """

    def __init__(self, store: PgStore, run_id: str, cursor: Cursor | None, connection: Any = None) -> None:
        self.store = store
        self.run_id = run_id
        self.cursor = cursor or Cursor()
        self.path = store.location(run_id)
        self._conn = connection

    def __iter__(self) -> Iterator[Record]:
        conn = self._conn or self.store.connection
        while True:
            with translate_errors(self.store.where):
                rows = conn.execute(
                    "SELECT line FROM rj_events WHERE run_id = %s AND seq >= %s ORDER BY seq LIMIT %s",
                    (self.run_id, self.cursor.seq, READ_BATCH),
                ).fetchall()
            for (line,) in rows:
                yield self._record(bytes(line))
            if len(rows) < READ_BATCH:
                return

    def _record(self, data: bytes) -> Record:
        cur = self.cursor
        raw = RawLine(cur.line, cur.offset, data)
        event, digest = decode_line(data, cur.prev_hash, path=self.path, line_no=cur.line, offset=cur.offset)
        check_sequence(event, raw, self.run_id, cur.seq, self.path)
        self.cursor = Cursor(raw.end, cur.line + 1, cur.seq + 1, digest)
        return Record(event, raw.line_no, raw.offset, raw.end)
