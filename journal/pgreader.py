"""Reading a run from the PostgreSQL store: the rows' exact lines, checked as the file reader checks them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from runjournal.journal.codec import decode_line
from runjournal.journal.events import Event
from runjournal.journal.lines import RawLine
from runjournal.journal.pgconn import translate_errors
from runjournal.journal.reader import Cursor, Record, check_sequence

if TYPE_CHECKING:
    from runjournal.journal.pgstore import PgStore  # the store imports this module

READ_BATCH = 2000
"""Lines fetched per query while reading a run: bounded memory for a run of any length."""

class PgRunReader:
    """Iterate a run's events from a cursor, checking the chain as the file reader does.

    The cursor's ``offset`` counts bytes as in the run's JSONL export, so cursors mean the
    same in both stores. ``torn_tail`` is always None: a row is written whole or not at all.
    """

    torn_tail = None

    def __init__(self, store: PgStore, run_id: str, cursor: Cursor | None, connection: Any = None) -> None:
        self.store = store
        self.run_id = run_id
        self.cursor = cursor or Cursor()
        self.path = f"{store.root}#{run_id}"
        self._conn = connection

    def __iter__(self) -> Iterator[Record]:
        conn = self._conn or self.store.connection
        while True:
            with translate_errors(self.store.root):
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

    def events(self) -> Iterator[Event]:
        """Iterate only the events."""
        return (record.event for record in self)
