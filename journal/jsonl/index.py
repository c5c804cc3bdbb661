"""The history read model: a disposable index of every run's summary, folded incrementally.

For each run the index keeps a :class:`~runjournal.journal.readmodel.RunSummary` (what ``history`` lists), the
:class:`~runjournal.journal.records.Cursor` the fold stopped at, and the identity of the file it was
computed from (``st_dev``, ``st_ino``, ``st_size``, ``st_mtime_ns``, taken with ``fstat``
before reading, so bytes appended during the read are picked up next time). A refresh:

* lists the runs with one directory scan and ``lstat``\\ s each file (no read);
* reuses an entry whose file identity is unchanged: a finished run is never read again;
* folds only the appended bytes of a grown non-terminal run, resuming from the saved fold
  state and cursor (the hash chain of the first new line proves the tail continues the
  bytes folded before);
* folds a run from its first byte when it is new, replaced (other inode), shorter than
  the saved cursor, rewritten in place (same size, other mtime), or a finished run that
  grew (late events).

The index is only a cache: deleting it loses nothing (the next refresh rebuilds it and
yields the same summaries). It lives in ``<root>/index/`` (0700) as :data:`SHARDS` files
(0600) keyed by a hash of the run id, so a change rewrites 1/64 of it. Each shard is
replaced atomically (temporary file, fsync, rename): a reader sees the old or the new
shard, never a mix. Two refreshers racing may each rename their own shard; both are valid
(every entry carries the identity it was computed at), the later rename wins, and an
entry that is stale is folded forward by the next refresh. The directory is not fsynced:
losing a rename to a power cut only leaves an older, still valid, shard.

The fold is the caller's :class:`~runjournal.journal.readmodel.Projector`. This module
imports neither pydantic nor the reader at start-up (they cost ~100 ms); they are imported
the first time a run actually has to be folded.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from runjournal.journal.crashpoints import crash_point
from runjournal.journal.errors import CorruptLineError, JournalError
from runjournal.journal.fsio import ensure_private_dir, open_regular
from runjournal.journal.jsonl.index_shards import (
    _DEV,
    _INO,
    _LINE,
    _LONG,
    _OFFSET,
    _PREV,
    _SEQ,
    _SIZE,
    _STATE,
    _SUMMARY,
    FORMAT,
    SHARDS,
    VERSION,
    load_shard,
    parse_entry,
    remove_leftovers,
    shard_of,
    shard_path,
    write_shard,
)
from runjournal.journal.readmodel import Progress, Projector, RunSummary
from runjournal.journal.records import Cursor

__all__ = ["FORMAT", "INDEX_DIR", "SHARDS", "VERSION", "HistoryIndex", "load_shard", "shard_of", "shard_path"]

if TYPE_CHECKING:
    from runjournal.journal.jsonl.reader import JsonlRunReader
    from runjournal.journal.jsonl.store import JsonlStore

INDEX_DIR = "index"
"""The index's directory under the journal root."""

RUN_SUFFIX = ".jsonl"

_RETRY = -1
"""A size no file has: an entry whose read failed for a passing reason (EACCES, EIO) is retried, never saved."""

class HistoryIndex:
    """The history read model of one store. Not thread-safe; use one per thread or process.

    ``save=False`` keeps everything in memory (a read-only journal root is detected and
    treated the same way; :attr:`problem` then says why nothing was saved).
    """

    def __init__(
        self, store: JsonlStore, projector: Projector, *, save: bool = True, progress: Progress | None = None
    ) -> None:
        self.store = store
        self.projector = projector
        self.directory = Path(store.root) / INDEX_DIR
        self.save_enabled = save
        self.progress = progress
        self.problem: str | None = None
        self.counts = {"appended": 0, "refolded": 0}
        """How many runs the passes so far folded from a saved cursor, and from their first byte."""
        # Shard number -> run id -> saved line. Entries stay serialised until used, which
        # keeps a 100,000-run index at a few dozen MB instead of a few hundred.
        self._shards: dict[int, dict[str, bytes]] = {}
        self._dirty: set[int] = set()

    # ---- reading ------------------------------------------------------------------------

    def summaries(self) -> Iterator[RunSummary]:
        """Every run's summary, newest first (run ids sort by time), folding only what changed.

        Streams: a run is checked (and folded if needed) when it is reached. The index is
        saved when the iteration ends, also when the caller stops early (``--limit``);
        entries of deleted runs are dropped only after a complete pass.
        """
        run_ids = sorted(self.store.run_ids(), reverse=True)
        complete = False
        try:
            dir_fd = os.open(self.store.runs_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            yield from self._walk(run_ids, dir_fd)
            complete = True
        finally:
            os.close(dir_fd)
            if complete:
                self._prune(set(run_ids))
            self.save()

    def _walk(self, run_ids: list[str], dir_fd: int) -> Iterator[RunSummary]:
        """The summaries of ``run_ids``, in order: the hot loop of every history call, so kept flat."""
        shards, stat, make = self._shards, os.stat, tuple.__new__
        for n, run_id in enumerate(run_ids):
            number = zlib.crc32(run_id.encode()) % SHARDS
            shard = shards.get(number)
            if shard is None:
                shard = shards[number] = load_shard(self.directory, number)
            line = shard.get(run_id)
            try:
                info = stat(run_id + RUN_SUFFIX, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            entry = None if line is None else parse_entry(line, run_id)
            if entry is None or entry[_DEV:_SUMMARY] != [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns]:
                entry = self._update(run_id, entry, info, n, len(run_ids))
            yield make(RunSummary, (run_id, *entry[_SUMMARY]))

    def refresh(self) -> int:
        """Bring the whole index up to date and save it; return the number of runs."""
        return sum(1 for _ in self.summaries())

    def state(self, run_id: str) -> tuple[Any, JsonlRunReader]:
        """The run's full, current fold state, from the saved state of a live run when there is one.

        Returns the state and the exhausted reader (its ``cursor`` and ``torn_tail`` say where
        the run ends). Raises what the reader raises. Finished runs keep only a summary in
        the index, so their state is folded from the file.
        """
        entry = self._entry(run_id)
        if entry is not None and len(entry) == _LONG:
            try:
                cursor = Cursor(entry[_OFFSET], entry[_LINE], entry[_SEQ], entry[_PREV])
                return self._fold_tail(run_id, self.projector.load(entry[_STATE]), cursor)
            except (JournalError, ValueError, TypeError):
                pass  # a stale or damaged entry: fold from the start, which raises if the journal is bad
        return self._fold_tail(run_id, None, None)

    def _fold_tail(self, run_id: str, state: Any, cursor: Cursor | None) -> tuple[Any, JsonlRunReader]:
        reader = self.store.read(run_id, cursor)
        return self.projector.fold(reader.events(), state), reader

    # ---- one run ------------------------------------------------------------------------

    def _update(self, run_id: str, old: list[Any] | None, info: os.stat_result, n: int, total: int) -> list[Any]:
        """Fold a run whose file changed (or is new) and keep its new entry for saving."""
        if self.progress is not None:
            self.progress(n, total)
        fresh = self._fold(run_id, old, info)
        if fresh[_SIZE] != _RETRY:
            number = shard_of(run_id)
            self._shards[number][run_id] = orjson.dumps(fresh)
            self._dirty.add(number)
        return fresh

    def _fold(self, run_id: str, old: list[Any] | None, info: os.stat_result) -> list[Any]:
        """Fold the run forward from ``old`` if its file only grew, else from the start."""
        if old is not None and _resumable(old, info):
            try:
                entry = _fold_entry(self.store, self.projector, run_id, old, strict=True)
                self.counts["appended"] += 1
                return entry
            except (JournalError, OSError, ValueError, TypeError, KeyError):
                pass  # the tail does not continue what was folded (or the entry is damaged): start over
        self.counts["refolded"] += 1
        return _fold_entry(self.store, self.projector, run_id, None, strict=False, info=info)

    # ---- storage ------------------------------------------------------------------------

    def _entry(self, run_id: str) -> list[Any] | None:
        """The saved entry of ``run_id``, parsed (None if there is none, or it is damaged)."""
        number = shard_of(run_id)
        shard = self._shards.get(number)
        if shard is None:
            shard = self._shards[number] = load_shard(self.directory, number)
        line = shard.get(run_id)
        return None if line is None else parse_entry(line, run_id)

    def _prune(self, present: set[str]) -> None:
        """Drop entries of runs whose files are gone (loading every shard on disk to find them)."""
        for number in range(SHARDS):
            if number not in self._shards and shard_path(self.directory, number).exists():
                self._shards[number] = load_shard(self.directory, number)
            shard = self._shards.get(number, {})
            gone = [run_id for run_id in shard if run_id not in present]
            for run_id in gone:
                del shard[run_id]
            if gone:
                self._dirty.add(number)

    def save(self) -> None:
        """Write every changed shard atomically; a journal root we cannot write to is not an error.

        Nothing is saved in a root this process's user does not own: reading another user's
        journal (as root, say) must not leave files there its owner cannot replace.
        """
        if not self._dirty or not self.save_enabled:
            return
        if not _owns(self.store.root):
            self.problem = f"history index not saved in {self.directory}: the journal belongs to another user"
            return
        try:
            ensure_private_dir(self.directory)
            for number in sorted(self._dirty):
                write_shard(self.directory, number, self._shards.get(number, {}))
                crash_point("index-shard-saved")
            remove_leftovers(self.directory)
        except (OSError, JournalError) as exc:
            self.problem = f"history index not saved in {self.directory}: {exc}"
            return
        self._dirty.clear()


def _owns(root: Path | str) -> bool:
    """Whether this process's effective user owns the journal root."""
    try:
        return os.stat(root).st_uid == os.geteuid()
    except OSError:
        return False


def _resumable(entry: list[Any], info: os.stat_result) -> bool:
    """Whether the file can only have had bytes appended (or a torn tail cut) since ``entry``."""
    if len(entry) != _LONG or entry[_DEV] != info.st_dev or entry[_INO] != info.st_ino:
        return False
    if info.st_size < entry[_OFFSET]:
        return False  # truncated into what was folded
    # The same size with another mtime is a rewrite in place, not an append.
    return info.st_size != entry[_SIZE]


def _fold_entry(
    store: JsonlStore, projector: Projector, run_id: str, old: list[Any] | None, *, strict: bool,
    info: os.stat_result | None = None,
) -> list[Any]:
    """Fold ``run_id`` (from ``old``'s state and cursor, or from the start) into a fresh entry.

    ``strict``: raise on a bad line; otherwise keep the state before it and record the error
    (cached until the file changes, since the same bytes give the same error).
    """
    from runjournal.journal.jsonl.reader import JsonlRunReader  # the codec and pydantic only when folding

    try:
        path = store.path(run_id)
        fd = open_regular(path, os.O_RDONLY)
    except (OSError, JournalError) as exc:
        return _error_entry(run_id, info, exc)
    try:
        identity = os.fstat(fd)
        start = None if old is None else projector.load(old[_STATE])
        cursor = None if old is None else Cursor(old[_OFFSET], old[_LINE], old[_SEQ], old[_PREV])
        reader = JsonlRunReader(path, run_id, cursor, fd=fd)
        errors: list[str] = []
        events = reader.events() if strict else _until_corrupt(reader, errors)
        state = projector.fold(events, start)
    except OSError as exc:
        if strict:
            raise
        return _error_entry(run_id, info, exc)
    finally:
        os.close(fd)
    error = errors[0] if errors else None
    info = identity
    entry = [run_id, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, projector.row(state, error)]
    snapshot = None if projector.is_terminal(state) or error is not None else projector.dump(state)
    if snapshot is not None:  # None: the projector keeps no snapshot of this state (too large to be worth it)
        c = reader.cursor
        entry += [c.offset, c.line, c.seq, c.prev_hash, snapshot]
    hand_over = getattr(projector, "handed_over", None)  # optional in a projector (see Projector.handed_over)
    if hand_over is not None and not projector.is_terminal(state) and error is None:
        hand_over(run_id, state, reader.cursor)  # the state is not used here after this
    return entry


def _until_corrupt(reader: JsonlRunReader, errors: list[str]) -> Iterator[Any]:
    """The reader's events up to the first bad line, whose error is appended to ``errors``."""
    try:
        yield from reader.events()
    except CorruptLineError as exc:
        errors.append(str(exc))


def _error_entry(run_id: str, info: os.stat_result | None, exc: BaseException) -> list[Any]:
    """An entry for a run that could not be opened (unsafe path, permission): retried every refresh."""
    dev, ino = (info.st_dev, info.st_ino) if info is not None else (0, 0)
    row = ["empty", None, None, None, None, None, None, None, None, 0, 0, None, 0, 0, 0, str(exc)]
    return [run_id, dev, ino, _RETRY, 0, row]
