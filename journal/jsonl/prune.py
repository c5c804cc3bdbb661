"""Pruning finished runs from the JSONL store: the run file, its quarantined torn tails, its index entry.

Each run is pruned while this process holds its ``flock`` (a writer, which may still append
late events, or a reconciler holds it: ``locked``), after checking that its lines hold a
terminal event. The index entry of an unchanged file vouches for that (same device, inode,
size and mtime as when it was folded, and a terminal summary); otherwise the file is read.
The index is then rewritten without the pruned runs, so it stays consistent with the files
(a later listing would drop the entries anyway; this keeps the index small meanwhile).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import TYPE_CHECKING

from runjournal.journal.errors import CorruptLineError
from runjournal.journal.fsio import fsync_dir, open_regular, try_flock
from runjournal.journal.ids import validate_run_id
from runjournal.journal.jsonl.index import INDEX_DIR
from runjournal.journal.jsonl.index_shards import (
    _DEV,
    _SUMMARY,
    load_shard,
    parse_entry,
    shard_of,
    write_shard,
)
from runjournal.journal.status import TERMINAL_STATUSES, TERMINAL_TYPES
from runjournal.journal.store import Pruned

if TYPE_CHECKING:
    from runjournal.journal.jsonl.store import JsonlStore


def prune_runs(store: JsonlStore, run_ids: Collection[str]) -> list[Pruned]:
    """Delete the finished, unlocked runs of ``run_ids``; one outcome per run (see the module docstring)."""
    ids = sorted({validate_run_id(run_id) for run_id in run_ids})
    store.check_not_symlinked()
    outcomes = [Pruned(run_id, _prune_one(store, run_id)) for run_id in ids]
    pruned = [p.run_id for p in outcomes if p.outcome == "pruned"]
    if pruned:
        fsync_dir(store.runs_dir)
        forget(store, pruned)
    return outcomes


def _prune_one(store: JsonlStore, run_id: str) -> str:
    path = store.path(run_id)
    try:
        fd = open_regular(path, os.O_RDWR)
    except FileNotFoundError:
        return "missing"
    try:
        if not try_flock(fd):
            return "locked"
        if not _finished(store, run_id, fd):
            return "unfinished"
        os.unlink(path)  # holding the lock: a writer taking the run over would find it locked, then gone
        for leftover in store.runs_dir.glob(f"{run_id}.jsonl.torn-*"):
            leftover.unlink(missing_ok=True)
    finally:
        os.close(fd)
    return "pruned"


def _finished(store: JsonlStore, run_id: str, fd: int) -> bool:
    """Whether the run's lines hold a terminal event: from its index entry when the file is unchanged, else read."""
    info = os.fstat(fd)
    line = load_shard(store.root / INDEX_DIR, shard_of(run_id)).get(run_id)
    entry = None if line is None else parse_entry(line, run_id)
    if entry is not None and entry[_DEV:_SUMMARY] == [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns]:
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


def forget(store: JsonlStore, run_ids: list[str]) -> None:
    """Drop the index entries of ``run_ids`` (each shard they are in rewritten once); a failure is harmless."""
    directory = store.root / INDEX_DIR
    shards: dict[int, list[str]] = {}
    for run_id in run_ids:
        shards.setdefault(shard_of(run_id), []).append(run_id)
    for number, members in shards.items():
        lines = load_shard(directory, number)
        removed = [lines.pop(run_id, None) for run_id in members]
        if any(entry is not None for entry in removed):
            try:
                write_shard(directory, number, lines)
            except OSError:
                return  # a stale entry of a missing file is dropped by the next complete listing
