"""The history read model: a disposable index of every run's summary, newest first, in O(what is shown).

Finished runs are kept in id order in immutable segments, live runs in the manifest
(:mod:`~runjournal.journal.jsonl.index_files`). ``history -n 20`` reads the manifest and the
newest segment, and ``lstat``\\ s only the live runs: never one file per finished run. What
can change behind its back is noticed thus:

* **new and deleted runs** change the ``runs/`` directory's mtime: only then is the
  directory listed, and only the segments whose run count or id fingerprint no longer
  matches the listing are read (new runs, whose ids sort newest, touch the last one). A
  directory changed less than :data:`RACY_SECONDS` before it was looked at is listed again
  next time (a timestamp tick can hide a second change);
* **live runs** are ``lstat``\\ ed on every call and folded on from their saved cursor;
* **finished runs changed by runjournal** (a late event appended by a writer, a reconciler's
  repair, an import) leave a line in the anchor log, whose shards history compares by size:
  those runs are checked at once;
* **finished runs changed by anything else** (a foreign writer appending after the terminal
  event, an editor, tampering) are found by the sweep: each call ``lstat``\\ s the runs of
  one segment (:data:`~runjournal.journal.jsonl.index_files.SEGMENT_RUNS`, in turn), so every
  run is checked at least once every ``runs / 1000`` calls; ``show``, ``replay`` and
  ``verify`` check the file itself every time.

A changed run is folded again (:mod:`~runjournal.journal.jsonl.index_fold`). A finished run
without an anchor (a foreign writer's, or one whose writer died before anchoring) is
anchored on first sight. The index is only a cache: deleting it loses nothing.
"""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from runjournal.journal.errors import JournalError
from runjournal.journal.fsio import ensure_private_dir
from runjournal.journal.jsonl.anchorlog import ANCHOR_DIR, runs_noticed, shard_sizes
from runjournal.journal.jsonl.index_files import (
    _SUMMARY,
    _TAIL,
    FORMAT,
    VERSION,
    Manifest,
    load_manifest,
    parse_entry,
    remove_leftovers,
    write_manifest,
)
from runjournal.journal.jsonl.index_fold import RETRY, fold_entry, identity, stat_identity
from runjournal.journal.jsonl.index_segments import LostSegment, SegmentSet
from runjournal.journal.readmodel import Progress, Projector, RunSummary
from runjournal.journal.records import Anchor

__all__ = ["FORMAT", "INDEX_DIR", "VERSION", "HistoryIndex"]

if TYPE_CHECKING:
    from runjournal.journal.jsonl.store import JsonlStore

INDEX_DIR = "index"
"""The index's directory under the journal root."""
RUN_SUFFIX = ".jsonl"
RACY_SECONDS = 2.0
"""A ``runs/`` directory modified this recently is not trusted to be unchanged next time."""


class HistoryIndex:
    """The history read model of one store. Not thread-safe; use one per thread or process.

    ``save=False`` keeps everything in memory (a journal root that cannot be written, or
    that belongs to another user, is treated the same way; :attr:`problem` says why).
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
        self.counts = {"appended": 0, "refolded": 0, "checked": 0}
        """Runs folded on from a saved cursor, folded from their start, and run files ``lstat``\\ ed."""
        self._manifest = Manifest()
        self._segments: SegmentSet | None = None
        self._pending: set[str] = set()
        self._tofu: list[tuple[str, Anchor]] = []
        self._dir_fd = -1
        self._walked = 0
        self._total = 0
        self._last: str | None = None
        self._relist = False
        self._live_changed = False

    # ---- reading ------------------------------------------------------------------------

    def summaries(self) -> Iterator[RunSummary]:
        """Every run's summary, newest first (run ids sort by time), checking only what may have changed.

        Streams, and saves the index when the iteration ends, also when the caller stops early.
        """
        try:
            self._dir_fd = os.open(self.store.runs_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            runs_dir, racy = _dir_identity(self._dir_fd)
            self._prepare(runs_dir, shard_sizes(self.store.root / ANCHOR_DIR))
            if racy:
                self._relist = True
            yield from self._walk()
        finally:
            os.close(self._dir_fd)
            self.save()

    def refresh(self) -> int:
        """Bring the whole index up to date and save it; return the number of runs."""
        return sum(1 for _ in self.summaries())

    def _prepare(self, runs_dir: list[int], anchors: list[list[int]]) -> None:
        """Load the manifest and settle, before the walk, everything that is not a live or new run."""
        manifest = load_manifest(self.directory)
        segments = SegmentSet(self.directory, manifest.segments)
        if not manifest.cold and not segments.all_present():
            manifest, segments = Manifest(), SegmentSet(self.directory, [])  # a segment was removed: rebuild
        self._manifest, self._segments = manifest, segments
        stored_dir, stored_anchors = manifest.runs_dir, manifest.anchors
        manifest.runs_dir, manifest.anchors = runs_dir, anchors
        if manifest.cold:
            self._pending = set(self.store.run_ids())
            return
        noticed = None if stored_anchors is None else runs_noticed(self.store.root / ANCHOR_DIR, stored_anchors,
                                                                   anchors)
        if noticed is None:
            self._sweep(range(len(manifest.segments)))  # the anchor log was replaced or cut: check every run
        else:
            self._recheck(noticed)
            if manifest.segments:
                self._sweep([manifest.sweep % len(manifest.segments)])
                manifest.sweep = (manifest.sweep + 1) % len(manifest.segments)
        if stored_dir != runs_dir:
            self._diff_listing()

    def _walk(self) -> Iterator[RunSummary]:
        """Segments, live runs and new runs merged newest first: the hot loop of every history call."""
        segments = self._segments
        assert segments is not None
        live = sorted(self._manifest.live, reverse=True)
        pending = sorted(self._pending, reverse=True)
        self._total = segments.count + len(live) + len(pending)
        sources = [segments.newest_first(), ((r, _CHECK) for r in live), ((r, _CHECK) for r in pending)]
        make = tuple.__new__
        try:
            for run_id, line in heapq.merge(*sources, key=_run_id, reverse=True):
                if run_id == self._last:
                    continue
                self._last = run_id
                self._walked += 1
                if line is _CHECK:
                    entry = self._checked(run_id)
                else:
                    entry = None if line is None else parse_entry(line, run_id)  # a finished run: as saved
                if entry is not None:
                    yield make(RunSummary, (run_id, *entry[_SUMMARY]))
        except LostSegment:
            yield from self._walk_listing()

    def _walk_listing(self) -> Iterator[RunSummary]:
        """A segment could not be read: go on with every listed run below the last one yielded, folding each."""
        last = self._last
        self._segments = SegmentSet(self.directory, [])
        self._relist = True
        self._pending = {r for r in self.store.run_ids() if last is None or r < last}
        make = tuple.__new__
        for run_id in sorted(self._pending, reverse=True):
            entry = self._checked(run_id)
            if entry is not None:
                yield make(RunSummary, (run_id, *entry[_SUMMARY]))

    # ---- one run ------------------------------------------------------------------------

    def _checked(self, run_id: str) -> list[Any] | None:
        """A live or new run: ``lstat`` it and fold what changed; None if its file is gone."""
        self._pending.discard(run_id)
        self.counts["checked"] += 1
        try:
            info = os.stat(run_id + RUN_SUFFIX, dir_fd=self._dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            self._forget(run_id)
            return None
        line = self._manifest.live.get(run_id)
        old = None if line is None else parse_entry(line, run_id)
        if old is not None and identity(old) == stat_identity(info):
            return old
        return self._fold(run_id, old, info)

    def _fold(self, run_id: str, old: list[Any] | None, info: os.stat_result | None) -> list[Any]:
        if self.progress is not None:
            self.progress(self._walked, self._total)
        entry, head, resumed = fold_entry(self.store, self.projector, run_id, old, info)
        self.counts["appended" if resumed else "refolded"] += 1
        if head is not None:
            self._tofu.append((run_id, head))
        if entry[3] != RETRY:
            self._keep(run_id, entry)
        return entry

    def _keep(self, run_id: str, entry: list[Any]) -> None:
        assert self._segments is not None
        line = orjson.dumps(entry)
        self._live_changed = True
        if entry[_TAIL] is None:
            self._manifest.live.pop(run_id, None)
            self._segments.put(run_id, line)
        else:
            self._segments.put(run_id, None)
            self._manifest.live[run_id] = line

    def _forget(self, run_id: str) -> None:
        assert self._segments is not None
        self._live_changed = True
        self._manifest.live.pop(run_id, None)
        self._segments.put(run_id, None)

    # ---- what changed behind our back ----------------------------------------------------

    def _recheck(self, run_ids: set[str]) -> None:
        """Finished runs someone may have changed: ``lstat`` each, fold the changed ones again."""
        assert self._segments is not None
        for run_id in sorted(run_ids):
            if run_id in self._manifest.live:
                continue  # checked in the walk anyway
            entry = self._segments.entry(run_id)
            if entry is None:
                continue  # not indexed: a new run, found by the listing
            self.counts["checked"] += 1
            try:
                info = os.stat(run_id + RUN_SUFFIX, dir_fd=self._dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                self._forget(run_id)
                continue
            if identity(entry) != stat_identity(info):
                self._fold(run_id, entry, info)

    def _sweep(self, positions: Any) -> None:
        assert self._segments is not None
        for position in positions:
            self._recheck(set(self._segments.ids_at(position)))

    def _diff_listing(self) -> None:
        """The directory changed: list it; new runs are folded in the walk, deleted ones dropped."""
        assert self._segments is not None
        listed = set(self.store.run_ids())
        for run_id in [r for r in self._manifest.live if r not in listed]:
            self._manifest.live.pop(run_id)
            self._live_changed = True
        new, gone = self._segments.diff(listed - set(self._manifest.live))
        for run_id in gone:
            self._segments.put(run_id, None)
        self._pending = new

    # ---- storage ------------------------------------------------------------------------

    def save(self) -> None:
        """Write what changed: new segments, then the manifest; a journal root we cannot write to is not an error."""
        segments = self._segments
        if segments is None or not self.save_enabled:
            return
        if not self.store.owned_by_us():
            self.problem = f"history index not saved in {self.directory}: the journal belongs to another user"
            return
        self._anchor_first_sight()
        manifest = self._manifest
        if self._pending or self._relist:
            manifest.runs_dir = None  # not every listed run was indexed (or a change may hide): list again next time
        try:
            ensure_private_dir(self.directory)
            entries_changed = segments.changed or self._live_changed
            manifest.segments = segments.save()
            write_manifest(self.directory, manifest, sync=entries_changed)
            remove_leftovers(self.directory, manifest)
        except (OSError, JournalError) as exc:
            self.problem = f"history index not saved in {self.directory}: {exc}"

    def _anchor_first_sight(self) -> None:
        """Anchor the finished runs found without an anchor; our own lines in the log are no news next time."""
        if not self._tofu:
            return
        try:
            appended = self.store.anchor_log.append(self._tofu, by="reader", sync=False)
        except (OSError, JournalError) as exc:
            self.problem = f"anchors not saved: {exc}"
            return
        self._tofu.clear()
        positions = self._manifest.anchors or []
        for number, (ino, before, after) in appended.items():
            if number < len(positions) and positions[number][1] == before and positions[number][0] in (0, ino):
                positions[number] = [ino, after]


_CHECK: Any = object()
"""Marks a live or new run in the walk (its entry is checked, not taken as saved)."""


def _run_id(item: tuple[str, Any]) -> str:
    return item[0]


def _dir_identity(fd: int) -> tuple[list[int], bool]:
    """``[st_dev, st_ino, st_mtime_ns]`` of the runs directory, and whether it changed too recently to trust."""
    info = os.fstat(fd)
    return [info.st_dev, info.st_ino, info.st_mtime_ns], time.time_ns() - info.st_mtime_ns < RACY_SECONDS * 1e9
