"""Fold one run into a history index entry (:mod:`~runjournal.journal.jsonl.index_files` has the layout).

A live run is folded on from the cursor and state its entry saved, strictly: the hash chain
of the first new line proves the new bytes continue what was folded. Anything else (a new
run, a replaced, cut or rewritten file, a finished run that changed) is folded from its
start, through the store's fast path (:func:`~runjournal.journal.jsonl.fastpath.fold_file`:
a fold record that still holds, or the verified exact prefix read fast), and a bad line ends
the fold with its error recorded (the same bytes give the same error: cached until the
file changes).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from runjournal.journal.errors import JournalError
from runjournal.journal.jsonl.index_files import _CTIME, _DEV, _INO, _MTIME, _SIZE, _TAIL
from runjournal.journal.records import Anchor, Cursor

if TYPE_CHECKING:
    from runjournal.journal.jsonl.fastpath import Folded
    from runjournal.journal.jsonl.store import JsonlStore
    from runjournal.journal.readmodel import Projector

RETRY = -1
"""A size no file has: an entry whose read failed for a passing reason (EACCES, EIO) is retried, never saved."""

FIRST_SIGHT_AGE = 600.0
"""Seconds a finished run's file must have been unchanged before a reader anchors it (first sight).

Its writer may not have synced it (``durability="none"``, a foreign writer): by then the
kernel has written it back (Linux flushes dirty pages after 30 s), so a power cut cannot
leave an anchor that outlives the lines it anchors, which would look like tampering.
"""

MAX_SAVED_BYTES = 256 * 1024
"""A live run whose fold weighs more than this (:meth:`~runjournal.journal.readmodel.Projector.weight`)
keeps none in its entry (its fold record has it, if the run is long enough to have one): the
manifest, rewritten often, stays small."""


def identity(entry: list[Any]) -> list[int]:
    """The file identity an entry was computed at."""
    return entry[_DEV:_TAIL - 1]


def stat_identity(info: os.stat_result) -> list[int]:
    """The same for a file's ``lstat``/``fstat``."""
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def resumable(entry: list[Any], info: os.stat_result) -> bool:
    """Whether the file can only have had bytes appended (or a torn tail cut) since a live ``entry``."""
    tail = entry[_TAIL]
    if tail is None or entry[_DEV] != info.st_dev or entry[_INO] != info.st_ino or tail[4] is None:
        return False
    if info.st_size < tail[0]:
        return False  # cut back into what was folded
    # The same size with another mtime (or ctime) is a rewrite in place, not an append.
    return info.st_size != entry[_SIZE] or (info.st_mtime_ns, info.st_ctime_ns) == (entry[_MTIME], entry[_CTIME])


class Refolded(NamedTuple):
    """What :func:`fold_entry` made of a run."""

    entry: list[Any]
    head: Anchor | None
    """The run's head, to anchor: it is finished, reads clean, and has no anchor yet."""
    resumed: bool
    """Folded on from the old entry's cursor (else from the start)."""


def fold_entry(
    store: JsonlStore, projector: Projector, run_id: str, old: list[Any] | None, info: os.stat_result | None,
) -> Refolded:
    """A fresh entry for ``run_id`` (see the module docstring)."""
    from runjournal.journal.jsonl.fastpath import fold_file  # the codec and pydantic only when a run is folded

    if old is not None and info is not None and resumable(old, info):
        try:
            tail = old[_TAIL]
            folded = fold_file(store, run_id, projector, resume=(Cursor(*tail[:4]), tail[4]))
            return Refolded(*_entry(store, projector, run_id, folded), True)
        except (JournalError, OSError, ValueError, TypeError, KeyError):
            pass  # the new bytes do not continue what was folded (or the entry is damaged): start over
    try:
        folded = fold_file(store, run_id, projector, tolerant=True)
    except (OSError, JournalError) as exc:
        return Refolded(error_entry(run_id, info, exc), None, False)
    return Refolded(*_entry(store, projector, run_id, folded), False)


def _entry(store: JsonlStore, projector: Projector, run_id: str, folded: Folded) -> tuple[list[Any], Anchor | None]:
    state, cursor = folded.state, folded.cursor
    entry = [run_id, *stat_identity(folded.info), projector.row(state, folded.error), None]
    head = None
    if folded.error is None and not projector.is_terminal(state):
        saved = projector.dump(state) if projector.weight(state) <= MAX_SAVED_BYTES else None
        entry[_TAIL] = [cursor.offset, cursor.line, cursor.seq, cursor.prev_hash, saved]
        hand_over = getattr(projector, "handed_over", None)  # optional in a projector (Projector.handed_over)
        if hand_over is not None:
            hand_over(run_id, state, cursor)  # history reconciles this run next: it need not read it again
    elif folded.error is None and cursor.seq > 0 and not folded.anchors and _settled(folded.info):
        head = Anchor(cursor.seq - 1, cursor.prev_hash, cursor.offset)
    return entry, head


def _settled(info: os.stat_result) -> bool:
    return time.time() - info.st_mtime >= FIRST_SIGHT_AGE


def error_entry(run_id: str, info: os.stat_result | None, exc: BaseException) -> list[Any]:
    """An entry for a run that could not be opened (unsafe path, permission): retried every refresh."""
    dev, ino = (info.st_dev, info.st_ino) if info is not None else (0, 0)
    row = ["empty", None, None, None, None, None, None, None, None, 0, 0, None, 0, 0, 0, str(exc)]
    return [run_id, dev, ino, RETRY, 0, 0, row, None]
