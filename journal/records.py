"""Where a read stands in a run, and one read event with its place: the vocabulary every store's reader shares."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from runjournal.journal.errors import SequenceError

GENESIS_HASH = "0" * 64
"""The ``prev_h`` of a run's first line (see :mod:`runjournal.journal.codec`)."""

if TYPE_CHECKING:
    from runjournal.journal.events import Event
    from runjournal.journal.lines import RawLine


class Cursor(NamedTuple):
    """Where a read stopped: enough to resume reading (and checking) from there.

    ``offset`` is just past the last whole line read (bytes, as in the run's JSONL form, in
    every store), ``line`` the next line number, ``seq`` the next expected ``seq`` and
    ``prev_hash`` the last line's ``h``. A named tuple because a reader or writer makes one
    per line (a million-line run makes a million).
    """

    offset: int = 0
    line: int = 1
    seq: int = 0
    prev_hash: str = GENESIS_HASH


class Anchor(NamedTuple):
    """A run's head as recorded outside its lines: ``seq`` and ``hash`` (``h``) of a line and
    ``offset``, the byte just past it (in the run's JSONL form, in every store).

    What makes deleting a run's final lines, or rewriting and re-hashing them, detectable:
    the hash chain alone cannot tell a shorter or re-hashed run from a genuine one. While an
    anchor is recorded, the run's line ``seq`` must still have that hash and end at that offset.
    """

    seq: int
    hash: str
    offset: int


class Record(NamedTuple):
    """An event with where it sits in its run."""

    event: Event
    line_no: int
    offset: int
    end: int


def check_sequence(event: Event, line: RawLine, run_id: str, expected_seq: int, path: str) -> None:
    """Raise :class:`SequenceError` unless ``event`` is the next event of ``run_id``."""
    if event.run_id != run_id:
        raise SequenceError(path, line.line_no, line.offset, f"run_id {event.run_id!r} in the journal of run {run_id!r}")
    if event.seq != expected_seq:
        raise SequenceError(path, line.line_no, line.offset, f"seq {event.seq} where {expected_seq} was expected")
    if expected_seq == 0 and event.type != "started":
        raise SequenceError(path, line.line_no, line.offset, f"first event is {event.type!r}, not 'started'")
