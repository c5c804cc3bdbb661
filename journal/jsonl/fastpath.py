"""The JSONL store's fast reads: a run's fold and its plain events, verifying each byte once.

:func:`project` answers :meth:`~runjournal.journal.store.Store.project`: the fold of a run.
A finished run whose fold record (:mod:`~runjournal.journal.jsonl.foldrecords`) still holds
is answered from the record's fold, reading nothing but the bytes after it (none, for an
unchanged file) and one ``pread`` per head; a run that grew is folded on from there; else
the verified, exact prefix is read fast and the rest strictly
(:class:`~runjournal.journal.jsonl.plainread.PlainScan`). :func:`read_plain` is the same
for ``replay``: every plain event, the prefix fast. Both leave a record behind for runs
over the store's ``fold_record_min_bytes`` (unless the journal belongs to another user).
``verify`` never takes this path: it checks every byte, always.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from runjournal.journal.errors import CorruptLineError, RunNotFoundError
from runjournal.journal.fsio import open_regular
from runjournal.journal.jsonl import foldrecords
from runjournal.journal.jsonl.foldrecords import FoldRecord, heads_match, identity_of, trusted
from runjournal.journal.jsonl.plainread import PlainScan
from runjournal.journal.records import Anchor, Cursor
from runjournal.journal.store import Projection

if TYPE_CHECKING:
    from runjournal.journal.jsonl.store import JsonlStore
    from runjournal.journal.readmodel import Projector


def _open(store: JsonlStore, run_id: str) -> tuple[int, os.stat_result, str]:
    path = store.location(run_id)  # the file, as a string (validated): no Path work per run
    store.check_not_symlinked()
    try:
        fd = open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        raise RunNotFoundError(run_id, store.root) from None
    return fd, os.fstat(fd), path


def _usable(store: JsonlStore, run_id: str, fd: int, info: os.stat_result) -> FoldRecord | None:
    record = foldrecords.load(store.folds_dir, run_id)
    return record if record is not None and trusted(fd, info, record) else None


class Folded(NamedTuple):
    """A run's fold as :func:`fold_file` leaves it."""

    state: Any
    cursor: Cursor
    """Where the whole lines folded end."""
    info: os.stat_result
    """The file's ``fstat`` as it was opened (before reading: bytes appended during the read are newer)."""
    error: str | None
    """Why the fold stopped early (``tolerant`` only): the first bad line, named."""
    anchors: list[Anchor]
    """The run's anchors, as the fold checked them."""
    failure: CorruptLineError | None = None
    """The error behind :attr:`error`."""


def project(store: JsonlStore, run_id: str, projector: Projector) -> Projection:
    """The fold of ``run_id`` up to its first bad line, if any (see the module docstring)."""
    folded = fold_file(store, run_id, projector, tolerant=True)
    return Projection(folded.state, folded.cursor, folded.failure)


def fold_file(
    store: JsonlStore, run_id: str, projector: Projector, *,
    resume: tuple[Cursor, Any] | None = None, tolerant: bool = False,
) -> Folded:
    """Fold ``run_id`` verifying each byte once: on from ``resume`` (a cursor and the fold there, saved
    by the caller), else from a fold record that holds, else from the start, its verified prefix fast.

    ``tolerant``: a bad line ends the fold instead of raising (the state before it, and the
    error, are returned). Raises :class:`OSError` if the file cannot be opened.
    """
    fd, info, path = _open(store, run_id)
    try:
        anchors = store.anchors(run_id)
        record = None if resume is not None else _usable(store, run_id, fd, info)
        state, start, fast, exact = None, None, None, None
        if resume is not None:
            start, state, exact = resume[0], projector.load(resume[1]), Cursor()
        elif record is not None and record.state_at is not None and heads_match(fd, record.state_at, anchors):
            state, start = projector.load(record.state), record.state_at
            exact = record.exact_to if heads_match(fd, record.exact_to, anchors) else Cursor()
        elif record is not None and heads_match(fd, record.exact_to, anchors):
            fast = record.exact_to
        worth_a_record = info.st_size >= store.fold_record_min_bytes
        scan = PlainScan(fd, path, run_id, anchors, start=start, fast_to=fast, exact_to=exact, tolerant=tolerant,
                         exact=worth_a_record)
        state = projector.fold_plain(scan, state)
        if scan.error is None and resume is None:
            _keep_fold(store, run_id, projector, state, record, info, scan)
        return Folded(state, scan.cursor, info, scan.error, anchors, scan.failure)
    finally:
        os.close(fd)


STATE_MAX_BYTES = 16 * 1024 * 1024
"""A fold bigger than this (by :meth:`~runjournal.journal.readmodel.Projector.weight`) is not kept in
a fold record: dumping and loading it would cost more memory than folding the run again."""


def _keep_fold(store: JsonlStore, run_id: str, projector: Projector, state: Any, old: FoldRecord | None,
               info: os.stat_result, scan: PlainScan) -> None:
    """Record how far the run is verified and its fold there, unless the record says so already."""
    if scan.cursor.offset < store.fold_record_min_bytes:
        return  # a short run is cheaper to verify again than to keep a record of (and to dump its fold for)
    dump = None if projector.weight(state) > STATE_MAX_BYTES else projector.dump(state)  # None: not worth keeping
    state_at = None if dump is None else scan.cursor
    if old is not None and (old.exact_to, old.state_at) == (scan.exact_to, state_at):
        return
    _keep(store, run_id, FoldRecord(identity_of(info), scan.exact_to, state_at, dump))


def read_plain(store: JsonlStore, run_id: str) -> Iterator[dict[str, Any]]:
    """Every plain event of ``run_id``, the verified exact prefix at ``orjson`` speed, the rest checked.

    The file is opened when iteration starts. A complete pass leaves a record of how far it
    verified (keeping the record's fold, which still holds for the same prefix).
    """
    fd, info, path = _open(store, run_id)
    try:
        anchors = store.anchors(run_id)
        record = _usable(store, run_id, fd, info)
        fast = record.exact_to if record is not None and heads_match(fd, record.exact_to, anchors) else None
        scan = PlainScan(fd, path, run_id, anchors, fast_to=fast)
        yield from scan
        if record is None or scan.exact_to != record.exact_to:
            _keep(store, run_id, _after_plain_read(record, info, scan, anchors, fd))
    finally:
        os.close(fd)


def _after_plain_read(record: FoldRecord | None, info: os.stat_result, scan: PlainScan,
                      anchors: list[Anchor], fd: int) -> FoldRecord:
    """The record a plain read leaves: its own verified prefix, and the fold of the old record if that still holds."""
    kept_at: Cursor | None = None
    if record is not None and record.state_at is not None and heads_match(fd, record.state_at, anchors):
        kept_at = record.state_at
    state = record.state if kept_at is not None and record is not None else None
    return FoldRecord(identity_of(info), scan.exact_to, kept_at, state)


def _keep(store: JsonlStore, run_id: str, record: FoldRecord) -> None:
    """Save ``record`` if the run is big enough to be worth it and the journal is ours to write in."""
    if record.exact_to.offset < store.fold_record_min_bytes and (record.state_at is None or
                                                                 record.state_at.offset < store.fold_record_min_bytes):
        return
    if not store.owned_by_us():
        return
    store.index_problem = foldrecords.save(store.folds_dir, run_id, record)
