"""Read a run's events: strict in the middle, lenient at the tail, resumable from a cursor.

Any bad line before the end (corrupt JSON, broken hash chain, wrong ``seq`` or ``run_id``,
over the size cap) raises a :class:`~runjournal.journal.errors.CorruptLineError` naming the file, line
and byte offset. A final fragment without a newline is reported in
:attr:`JsonlRunReader.torn_tail` and never parsed. The run's anchors are checked as the
lines go past and at the end (:class:`~runjournal.journal.anchors.AnchorCheck`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from runjournal.journal.anchors import AnchorCheck
from runjournal.journal.codec import MAX_LINE_BYTES, decode_line
from runjournal.journal.errors import CorruptLineError
from runjournal.journal.fsio import open_regular
from runjournal.journal.lines import OverlongLine, TornTail, iter_raw_lines
from runjournal.journal.records import Anchor, Cursor, Record, check_sequence
from runjournal.journal.status import TERMINAL_TYPES
from runjournal.journal.store import RunReader

REREAD_ATTEMPTS = 4
"""How often a bad line is read again before it is reported (see ``JsonlRunReader._records``)."""


class JsonlRunReader(RunReader):
    """Iterate a run file's events from a cursor; afterwards, ``cursor`` and ``torn_tail`` tell where it ended."""

    def __init__(
        self, path: Path, run_id: str, cursor: Cursor | None = None, fd: int | None = None,
        anchors: Iterable[Anchor] = (),
    ) -> None:
        self.path = path
        self.run_id = run_id
        self.cursor = cursor or Cursor()
        self.torn_tail: TornTail | None = None
        self.ended = False
        """Whether a terminal event went past."""
        self._fd = fd
        self._anchors = tuple(anchors)

    def __iter__(self) -> Iterator[Record]:
        own = self._fd is None
        fd = open_regular(self.path, os.O_RDONLY) if self._fd is None else self._fd
        try:
            yield from self._records(fd)
        finally:
            if own:
                os.close(fd)

    def _records(self, fd: int) -> Iterator[Record]:
        # A reconciler may cut a torn tail and append while we read: bytes of the old
        # fragment (from one pread) and of the new line (from the next) then look like one
        # corrupt line. Such a line reads clean when read again from the last good line;
        # real corruption fails the same way every time.
        failure: tuple[int, str] | None = None
        for _ in range(REREAD_ATTEMPTS):
            try:
                yield from self._records_once(fd)
                return
            except CorruptLineError as exc:
                if failure == (exc.offset, exc.reason):
                    raise
                failure = (exc.offset, exc.reason)
        raise CorruptLineError(str(self.path), self.cursor.line, self.cursor.offset, "the file keeps changing under the reader")

    def _records_once(self, fd: int) -> Iterator[Record]:
        cur = self.cursor
        path = str(self.path)
        anchors = AnchorCheck(self._anchors, path, cur.seq)
        for item in iter_raw_lines(fd, cur.offset, cur.line):
            if isinstance(item, TornTail):
                self.torn_tail = item
                break
            if isinstance(item, OverlongLine):
                raise CorruptLineError(
                    path, item.line_no, item.offset, f"line is {item.length} bytes, over the {MAX_LINE_BYTES}-byte cap"
                )
            event, digest = decode_line(item.data, cur.prev_hash, path=path, line_no=item.line_no, offset=item.offset)
            if event.seq != cur.seq or event.run_id != self.run_id or cur.seq == 0:
                check_sequence(event, item, self.run_id, cur.seq, path)
            end = item.offset + len(item.data) + 1
            if anchors.pending:
                anchors.check_line(cur.seq, digest, end, item.line_no, item.offset)
            cur = Cursor(end, item.line_no + 1, cur.seq + 1, digest)
            self.cursor = cur
            self.ended = self.ended or event.type in TERMINAL_TYPES
            yield Record(event, item.line_no, item.offset, end)
        anchors.finish(cur)


def scan_to_end(
    path: Path, run_id: str, fd: int | None = None, cursor: Cursor | None = None, anchors: Iterable[Anchor] = (),
) -> JsonlRunReader:
    """Read a run file to its end (validating every line and anchor, from ``cursor`` if given); return the reader."""
    reader = JsonlRunReader(path, run_id, cursor, fd=fd, anchors=anchors)
    for _ in reader:
        pass
    return reader

