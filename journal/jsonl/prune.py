"""Pruning finished runs from the JSONL store: the run file, its quarantined torn tails, its index entry.

Each run is pruned while this process holds its ``flock`` (a writer, which may still append
late events, or a reconciler holds it: ``locked``), after checking that its lines hold a
terminal event. The index entry of an unchanged file vouches for that (same device, inode,
size, mtime and ctime as when it was folded, and a terminal summary); otherwise the file is read.
The index's manifest is then rewritten without the pruned runs (new segments for theirs), so it stays consistent with the files
(a later listing would drop the entries anyway; this keeps the index small meanwhile).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import TYPE_CHECKING

from runjournal.journal.errors import CorruptLineError, JournalError
from runjournal.journal.fsio import fsync_dir, open_regular, try_flock
from runjournal.journal.ids import validate_run_id
from runjournal.journal.jsonl.foldrecords import record_path
from runjournal.journal.jsonl.index import INDEX_DIR
from runjournal.journal.jsonl.index_files import _SUMMARY, load_manifest, write_manifest
from runjournal.journal.jsonl.index_fold import identity, stat_identity
from runjournal.journal.jsonl.index_segments import SegmentSet
from runjournal.journal.status import TERMINAL_STATUSES, TERMINAL_TYPES
from runjournal.journal.store import Pruned

if TYPE_CHECKING:
    from runjournal.journal.jsonl.store import JsonlStore


def prune_runs(store: JsonlStore, run_ids: Collection[str]) -> list[Pruned]:
    """Delete the finished, unlocked runs of ``run_ids``; one outcome per run (see the module docstring)."""
    ids = sorted({validate_run_id(run_id) for run_id in run_ids})
    store.check_not_symlinked()
    segments = SegmentSet(store.root / INDEX_DIR, load_manifest(store.root / INDEX_DIR).segments)
    outcomes = [Pruned(run_id, _prune_one(store, run_id, segments)) for run_id in ids]
    pruned = [p.run_id for p in outcomes if p.outcome == "pruned"]
    if pruned:
        fsync_dir(store.runs_dir)
        if store.owned_by_us():
            _forget(segments, pruned)
    return outcomes


def _prune_one(store: JsonlStore, run_id: str, segments: SegmentSet) -> str:
    path = store.path(run_id)
    try:
        fd = open_regular(path, os.O_RDWR)
    except FileNotFoundError:
        return "missing"
    try:
        if not try_flock(fd):
            return "locked"
        if not _finished(store, run_id, fd, segments):
            return "unfinished"
        os.unlink(path)  # holding the lock: a writer taking the run over would find it locked, then gone
        for leftover in store.runs_dir.glob(f"{run_id}.jsonl.torn-*"):
            leftover.unlink(missing_ok=True)
        try:
            os.unlink(record_path(store.folds_dir, run_id))  # a fold record kept while it ran
        except FileNotFoundError:
            pass
    finally:
        os.close(fd)
    return "pruned"


def _finished(store: JsonlStore, run_id: str, fd: int, segments: SegmentSet) -> bool:
    """Whether the run's lines hold a terminal event: from its index entry when the file is unchanged, else read."""
    entry = segments.entry(run_id)
    if entry is not None and identity(entry) == stat_identity(os.fstat(fd)):
        summary = entry[_SUMMARY]
        if summary[-1] is None:  # no read error: the summary is the fold of every line
            return summary[0] in TERMINAL_STATUSES
    from runjournal.journal.jsonl.reader import JsonlRunReader  # the event models only when a file must be read

    try:
        for event in JsonlRunReader(store.path(run_id), run_id, fd=fd).events():
            if event.type in TERMINAL_TYPES:
                return True
    except CorruptLineError:
        return False
    return False


def _forget(segments: SegmentSet, run_ids: list[str]) -> None:
    """Drop the index entries of ``run_ids`` (new segments for the ones they were in); a failure is harmless."""
    directory = segments.directory
    manifest = load_manifest(directory)
    if manifest.cold:
        return
    for run_id in run_ids:
        manifest.live.pop(run_id, None)
        segments.put(run_id, None)
    try:
        manifest.segments = segments.save()
        write_manifest(directory, manifest)
    except (OSError, JournalError):
        return  # a stale entry of a missing file is dropped by the next listing (the directory changed)
