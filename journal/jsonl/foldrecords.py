"""Fold records: how far a run file is verified, and the fold there, kept in the disposable index.

``<root>/index/folds/<run_id>.json`` (0600), one small JSON document per run that is worth
it (over :attr:`~runjournal.journal.jsonl.store.JsonlStore.fold_record_min_bytes`)::

    {"format": "runjournal-fold-record", "version": 1,
     "identity": [st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns],
     "exact_to": [offset, line, seq, h],      every line before it verified and exact
     "state_at": [offset, line, seq, h] | null, "state": <the fold there> | null}

A later read trusts a record's prefix only while the file still holds it (:func:`trusted`):
the same device and inode; not shorter than when recorded; if the same size, the same
``mtime`` *and* ``ctime`` (``utime`` can restore an mtime, not a ctime), else it only grew;
and the line ending at each prefix still carries the recorded hash, as does every anchored
line inside it (one ``pread`` each). Anything else and the run is read strictly from its
first byte. Deleting the directory loses nothing: the next read verifies again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from runjournal.journal.errors import JournalError
from runjournal.journal.fsio import ensure_private_dir, open_regular
from runjournal.journal.records import Anchor, Cursor

FOLDS_DIR = "folds"
FORMAT = "runjournal-fold-record"
VERSION = 1

Identity = tuple[int, int, int, int, int]


def identity_of(info: os.stat_result) -> Identity:
    """What proves a file unchanged: device, inode, size, mtime and ctime (ns)."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


@dataclass(frozen=True)
class FoldRecord:
    """One run's record (see the module docstring)."""

    identity: Identity
    exact_to: Cursor
    state_at: Cursor | None = None
    state: Any = None

    def to_json(self) -> bytes:
        """The record as its file holds it."""
        return orjson.dumps({
            "format": FORMAT, "version": VERSION, "identity": list(self.identity),
            "exact_to": list(_fields(self.exact_to)),
            "state_at": None if self.state_at is None else list(_fields(self.state_at)), "state": self.state,
        })


def _fields(cursor: Cursor) -> tuple[int, int, int, str]:
    return (cursor.offset, cursor.line, cursor.seq, cursor.prev_hash)


def _cursor(value: Any) -> Cursor:
    offset, line, seq, prev = value
    if not (type(offset) is int and type(line) is int and type(seq) is int and type(prev) is str and len(prev) == 64):
        raise ValueError("not a cursor")
    return Cursor(offset, line, seq, prev)


def record_path(directory: Path, run_id: str) -> str:
    """The record file of ``run_id`` in ``directory`` (the index's ``folds/``)."""
    return f"{directory}{os.sep}{run_id}.json"


def load(directory: Path, run_id: str) -> FoldRecord | None:
    """The saved record of ``run_id``; None if there is none or it cannot be read (then the run is verified again)."""
    try:
        fd = open_regular(record_path(directory, run_id), os.O_RDONLY)
    except (OSError, JournalError):
        return None
    try:
        with os.fdopen(fd, "rb") as file:
            data = orjson.loads(file.read())
        if data["format"] != FORMAT or data["version"] != VERSION:
            return None
        identity = tuple(data["identity"])
        if len(identity) != 5 or not all(type(n) is int for n in identity):
            return None
        state_at = None if data["state_at"] is None else _cursor(data["state_at"])
        return FoldRecord(identity, _cursor(data["exact_to"]), state_at, data["state"])  # type: ignore[arg-type]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(directory: Path, run_id: str, record: FoldRecord) -> str | None:
    """Write ``record`` atomically (temporary file, rename; no fsync: a lost record is only re-verified).

    Returns why it could not be saved, or None.
    """
    try:
        ensure_private_dir(directory)
        tmp = directory / f".tmp-{run_id}-{os.getpid()}-{os.urandom(4).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            data = record.to_json()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, record_path(directory, run_id))
    except (OSError, JournalError) as exc:
        return f"fold record of {run_id} not saved in {directory}: {exc}"
    return None


def trusted(fd: int, info: os.stat_result, record: FoldRecord) -> bool:
    """Whether the file (``fd``, whose ``fstat`` is ``info``) still holds the record's prefix, by its metadata."""
    dev, ino, size, mtime, ctime = record.identity
    if (info.st_dev, info.st_ino) != (dev, ino) or info.st_size < size:
        return False
    return info.st_size > size or (info.st_mtime_ns, info.st_ctime_ns) == (mtime, ctime)


def heads_match(fd: int, prefix: Cursor, anchors: Iterable[Anchor]) -> bool:
    """Whether the line ending at ``prefix`` has its recorded hash, and every anchored line within it its anchored one."""
    if not _line_ends_with(fd, prefix.offset, prefix.prev_hash):
        return False
    return all(_line_ends_with(fd, a.offset, a.hash) for a in anchors if a.offset <= prefix.offset)


def _line_ends_with(fd: int, end: int, digest: str) -> bool:
    if end == 0:
        return True
    tail = b',"h":"' + digest.encode("ascii") + b'"}\n'
    return end >= len(tail) and os.pread(fd, len(tail), end - len(tail)) == tail
