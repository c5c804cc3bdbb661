"""How the history index is stored: a manifest, and immutable segments of finished runs in id order.

``<root>/index/`` (0700) holds, all 0600:

* ``manifest-v4.json``, the commit point, replaced atomically (temporary file, fsync,
  rename)::

      {"format": "runjournal-history-index", "version": 4,
       "runs_dir": [st_dev, st_ino, st_mtime_ns] | null,   the runs/ directory as last listed
       "anchors": [[inode, size], ...],                      how far each anchor shard was read
       "sweep": N,                                           the next segment to re-check
       "segments": [[lowest id, highest id, file, count, fingerprint], ...],   ascending
       "live": [entry, ...]}                                 the runs not finished

* ``seg-<random>.jsonl``: a header line, then one entry per finished (or unreadable) run,
  newest (highest id) first. A segment is written once, under a new name, and fsynced
  before the manifest that names it; a change to a run in it writes a new segment. Files no
  manifest names are removed once they are a minute old (a reader that still follows an
  old manifest and finds its segment gone lists the directory instead).

An entry is one JSON array: ``[run_id, st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns,
summary, tail]``, ``tail`` null for a finished run, else ``[offset, line, seq, prev_hash,
state]``: where the fold stopped and the fold there, to resume a live run. Entries stay
bytes until a run is looked at.
"""

from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from runjournal.journal.crashpoints import crash_point
from runjournal.journal.errors import JournalError
from runjournal.journal.fsio import open_regular
from runjournal.journal.jsonl.anchorlog import SHARDS as ANCHOR_SHARDS

FORMAT = "runjournal-history-index"
VERSION = 5
"""Bumped whenever the layout (or the fold state it keeps) changes; files of other versions are
ignored, then removed (4 was the last of the 64-shard layout)."""

MANIFEST = f"manifest-v{VERSION}.json"
SEGMENT_RUNS = 1000
"""Runs per segment when segments are (re)built; a segment is split once it holds twice as many."""
STALE_SECONDS = 60
"""A temporary file, or a segment no manifest names, older than this is removed."""

_ID, _DEV, _INO, _SIZE, _MTIME, _CTIME, _SUMMARY, _TAIL = range(8)
_ENTRY_LENGTH = 8
SUMMARY_LENGTH = 16
"""How many values a summary row holds (:data:`runjournal.journal.readmodel.SUMMARY_FIELDS`)."""


def fingerprint(run_id: str) -> int:
    """A 64-bit hash of a run id; a segment keeps the sum of its runs' (mod 2**64) to notice a changed listing."""
    data = run_id.encode()
    return zlib.crc32(data) | (zlib.adler32(data) << 32)


@dataclass
class Segment:
    """One segment as the manifest names it."""

    low: str
    high: str
    name: str
    count: int
    fp: int

    def to_json(self) -> list[Any]:
        """The manifest's form."""
        return [self.low, self.high, self.name, self.count, self.fp]


@dataclass
class Manifest:
    """The index's root document (see the module docstring); an empty one is a cold index."""

    runs_dir: list[int] | None = None
    anchors: list[list[int]] | None = None
    sweep: int = 0
    segments: list[Segment] = field(default_factory=list)
    live: dict[str, bytes] = field(default_factory=dict)
    cold: bool = True

    def to_json(self) -> bytes:
        """The manifest file's bytes."""
        head = orjson.dumps({
            "format": FORMAT, "version": VERSION, "runs_dir": self.runs_dir, "anchors": self.anchors,
            "sweep": self.sweep, "segments": [s.to_json() for s in self.segments], "live": [],
        })
        # Live entries are kept as the bytes they were saved as: spliced in, not re-encoded.
        return head[:-2] + b",".join(self.live.values()) + b"]}"


def load_manifest(directory: Path) -> Manifest:
    """The saved manifest; a missing, damaged or foreign one is a cold (empty) manifest."""
    data = _read(directory / MANIFEST)
    if data is None:
        return Manifest()
    try:
        doc = orjson.loads(data)
        if doc.get("format") != FORMAT or doc.get("version") != VERSION:
            return Manifest()
        segments = [_segment(row) for row in doc["segments"]]
        live = {entry[_ID]: orjson.dumps(entry) for entry in doc["live"] if parse_entry_list(entry) is not None}
        runs_dir, anchors, sweep = doc["runs_dir"], doc["anchors"], doc["sweep"]
        if not (runs_dir is None or _ints(runs_dir, 3)) or type(sweep) is not int:
            return Manifest()
        if not (type(anchors) is list and len(anchors) == ANCHOR_SHARDS and all(_ints(a, 2) for a in anchors)):
            anchors = None  # nothing known of the anchor log: every finished run is checked once
        return Manifest(runs_dir, anchors, sweep, segments, live, cold=False)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return Manifest()


def _ints(value: Any, length: int) -> bool:
    return type(value) is list and len(value) == length and all(type(n) is int for n in value)


def _segment(row: Any) -> Segment:
    low, high, name, count, fp = row
    if not (type(low) is str and type(high) is str and type(name) is str and name.startswith("seg-")
            and "/" not in name and type(count) is int and type(fp) is int):
        raise ValueError("not a segment")
    return Segment(low, high, name, count, fp)


def _read(path: Path) -> bytes | None:
    try:
        fd = open_regular(path, os.O_RDONLY)
    except (OSError, JournalError):
        return None
    try:
        with os.fdopen(fd, "rb") as file:
            return file.read()
    except OSError:
        return None


def load_segment(directory: Path, name: str) -> list[tuple[str, bytes]] | None:
    """A segment's ``(run_id, entry line)`` pairs, newest first; None if it is gone or damaged."""
    data = _read(directory / name)
    if data is None or not data.endswith(b"\n"):
        return None
    header, _, body = data.partition(b"\n")
    if header != _header(name):
        return None
    pairs = []
    for line in body[:-1].split(b"\n") if body else ():
        end = line.find(b'"', 2)
        if not (line.startswith(b'["') and end > 2):
            return None
        pairs.append((line[2:end].decode("ascii", "replace"), line))
    return pairs


def _header(name: str) -> bytes:
    return orjson.dumps({"format": FORMAT, "version": VERSION, "segment": name})


def parse_entry(line: bytes, run_id: str) -> list[Any] | None:
    """A saved entry, or None if it is damaged (then the run is folded again)."""
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    checked = parse_entry_list(entry)
    return checked if checked is not None and checked[_ID] == run_id else None


def parse_entry_list(entry: Any) -> list[Any] | None:
    """``entry`` if it has an entry's form, else None."""
    if type(entry) is not list or len(entry) != _ENTRY_LENGTH or type(entry[_ID]) is not str:
        return None
    summary, tail = entry[_SUMMARY], entry[_TAIL]
    if type(summary) is not list or len(summary) != SUMMARY_LENGTH or not (tail is None or type(tail) is list):
        return None
    return entry


def new_segment_name() -> str:
    """A name no other segment has."""
    return f"seg-{time.time_ns():x}-{os.urandom(6).hex()}.jsonl"


def write_segment(directory: Path, name: str, lines: list[bytes]) -> None:
    """Create segment ``name`` with ``lines`` (newest first), fsynced; it is new, so nobody reads it yet."""
    data = b"\n".join([_header(name), *lines]) + b"\n"
    _write_new(directory / name, data)
    crash_point("index-segment-written")


def write_manifest(directory: Path, manifest: Manifest, *, sync: bool = True) -> None:
    """Replace the manifest atomically: a temporary 0600 file, fsync, rename.

    ``sync=False`` for a save that changed only bookkeeping (the sweep's position, what was
    last seen): if a power cut garbles that manifest, the next history rebuilds the index.
    """
    tmp = directory / f".tmp-{os.getpid()}-{os.urandom(6).hex()}"
    try:
        _write_new(tmp, manifest.to_json(), sync=sync)
        crash_point("index-manifest-written")
        os.replace(tmp, directory / MANIFEST)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _write_new(path: Path, data: bytes, *, sync: bool = True) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def remove_leftovers(directory: Path, manifest: Manifest) -> None:
    """Remove stale temporary files, segments the manifest does not name, and files of other index versions."""
    named = {s.name for s in manifest.segments}
    now = time.time()
    with os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            if not entry.is_file(follow_symlinks=False):
                continue
            stale = now - entry.stat(follow_symlinks=False).st_mtime > STALE_SECONDS
            unnamed = name.startswith(("seg-", ".tmp-")) and name not in named
            foreign = (name.startswith("runs-v") or name.startswith("manifest-v")) and name != MANIFEST
            if (unnamed and stale) or foreign:
                _unlink_quietly(Path(entry.path))


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
