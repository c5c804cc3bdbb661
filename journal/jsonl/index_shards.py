"""How the history index is stored: one file per shard, one line per run, replaced atomically.

A shard file is a header line ``{"format": ..., "version": ..., "shard": N}`` and then one
JSON array per run (see the entry layout below). Lines stay bytes until a run is looked at
(:func:`parse_entry`), so a 100,000-run index costs tens of MB of memory, not hundreds. A
shard is rewritten whole, through a temporary 0600 file that is fsynced and renamed over
the old one, so a reader sees the old or the new shard, never a mix.
"""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path
from typing import Any

import orjson

from runjournal.journal.crashpoints import crash_point
from runjournal.journal.errors import JournalError
from runjournal.journal.fsio import open_regular

SHARDS = 64
FORMAT = "runjournal-history-index"
VERSION = 4
"""Bumped whenever the entry layout changes; shards of another version are ignored, then removed."""

STALE_TEMP_SECONDS = 60
"""A temporary shard file older than this was left by a crashed refresher and is removed."""

# An entry is a list, the cheapest shape to parse, saved as one line of its shard. A
# finished run (or one whose journal is corrupt) needs only what proves its file unchanged,
# and its summary:
#   [run_id, st_dev, st_ino, st_size, st_mtime_ns, summary]
# a live run adds where its fold stopped and the fold state to resume from:
#   [..., summary, cursor offset, cursor line, cursor seq, cursor prev_hash, state]
_ID, _DEV, _INO, _SIZE, _MTIME, _SUMMARY, _OFFSET, _LINE, _SEQ, _PREV, _STATE = range(11)
_SHORT, _LONG = 6, 11
SUMMARY_LENGTH = 16
"""How many values a summary row holds (``projections.index.SUMMARY_FIELDS``)."""


def shard_of(run_id: str) -> int:
    """Which shard holds ``run_id`` (stable across processes and Python versions)."""
    return zlib.crc32(run_id.encode()) % SHARDS


def shard_path(directory: Path, number: int) -> Path:
    """The file of shard ``number``."""
    return directory / f"runs-v{VERSION}-{number:02x}.jsonl"


def _header(number: int) -> bytes:
    return orjson.dumps({"format": FORMAT, "version": VERSION, "shard": number})


def load_shard(directory: Path, number: int) -> dict[str, bytes]:
    """Run id -> saved line of a shard; a missing, unreadable or foreign shard is empty (it is rebuilt).

    Lines are not parsed here (see :func:`parse_entry`); the run id is read off the front
    of each line, which is safe because only valid run ids (no quotes, no escapes) are saved.
    """
    try:
        fd = open_regular(shard_path(directory, number), os.O_RDONLY)
    except (OSError, JournalError):
        return {}
    try:
        with os.fdopen(fd, "rb") as file:
            data = file.read()
    except OSError:
        return {}
    header, _, body = data.partition(b"\n")
    if header != _header(number):
        return {}
    lines = {}
    for line in body.split(b"\n"):
        end = line.find(b'"', 2)
        if line.startswith(b'["') and end > 2:
            lines[line[2:end].decode("ascii", "replace")] = line
    return lines


def parse_entry(line: bytes, run_id: str) -> list[Any] | None:
    """A saved line as an entry, or None if it is damaged (then the run is simply folded again)."""
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if (
        type(entry) is list
        and len(entry) in (_SHORT, _LONG)
        and entry[_ID] == run_id
        and type(entry[_SUMMARY]) is list
        and len(entry[_SUMMARY]) == SUMMARY_LENGTH
    ):
        return entry
    return None


def write_shard(directory: Path, number: int, lines: dict[str, bytes]) -> None:
    """Replace shard ``number`` atomically: a temporary 0600 file, fsync, rename."""
    data = b"\n".join([_header(number), *lines.values()]) + b"\n"
    tmp = directory / f"{_TEMP_PREFIX}{number:02x}-{os.getpid()}-{os.urandom(6).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        crash_point("index-shard-written")
        os.replace(tmp, shard_path(directory, number))
    except BaseException:
        if fd >= 0:
            os.close(fd)
        _unlink_quietly(tmp)
        raise


_TEMP_PREFIX = ".tmp-"


def remove_leftovers(directory: Path) -> None:
    """Remove temporary files of refreshers that crashed mid-write, and shards of other index versions."""
    current = f"runs-v{VERSION}-"
    now = time.time()
    with os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            stale_temp = name.startswith(_TEMP_PREFIX) and now - entry.stat().st_mtime > STALE_TEMP_SECONDS
            if stale_temp or (name.startswith("runs-v") and not name.startswith(current)):
                _unlink_quietly(Path(entry.path))


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
