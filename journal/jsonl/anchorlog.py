"""The JSONL store's anchor log: every finished run's head, appended outside the run files.

``<root>/anchors/`` (0700) holds :data:`SHARDS` files (0600), a run's shard chosen by a CRC
of its id. Each is append-only and hash-chained like a run file::

    {"run_id":"...","seq":41,"h":"<run head hash>","offset":9120,"by":"writer","ts":"..."},"c":"<64 hex>"}

``c = sha256(prev_c + body)`` with ``body`` every byte before ``,"c":"`` and ``prev_c`` the
previous line's ``c`` (64 zeros first). ``by`` says who anchored: ``writer`` (the run's
writer or a reconciler, as it appended a terminal or late event), ``import`` or ``reader``
(a history refresh that found a finished run without an anchor: trust on first use).

Appends take the shard's ``flock`` (short: read the last line's ``c``, one ``write``,
``fdatasync`` for writers), so concurrent writers chain correctly. A torn final line (a
crash mid-append) is cut off by the next appender; readers ignore it. The history read
model also reads the shards' sizes to notice runjournal's own changes to finished runs
(:func:`shard_sizes`, :func:`runs_noticed`).

What the log detects and does not is in ``docs/format.md`` ("Anchors"). This module has no
key: the log is in the journal root, so someone who can rewrite a run file can rewrite the
log too; it makes truncation and re-hashing detectable, not impossible.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from runjournal.journal.errors import JournalError, JournalWriteError
from runjournal.journal.fsio import ensure_private_dir, fsync_dir, open_regular, sync_data
from runjournal.journal.records import GENESIS_HASH, Anchor

ANCHOR_DIR = "anchors"
SHARDS = 64
_SUFFIX_LEN = len(b',"c":"') + 64 + len(b'"}')
_TAIL_PROBE = 4096


def shard_of(run_id: str) -> int:
    """Which anchor shard holds ``run_id``."""
    return zlib.crc32(run_id.encode()) % SHARDS


def shard_file(directory: Path, number: int) -> Path:
    """The file of anchor shard ``number``."""
    return directory / f"{number:02x}.jsonl"


def _now() -> str:
    m = datetime.now(UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (m.year, m.month, m.day, m.hour, m.minute, m.second, m.microsecond)


def _entry_line(run_id: str, anchor: Anchor, by: str, prev: str) -> tuple[bytes, str]:
    body = orjson.dumps({"run_id": run_id, "seq": anchor.seq, "h": anchor.hash, "offset": anchor.offset,
                         "by": by, "ts": _now()})[:-1]
    chained = hashlib.sha256(prev.encode("ascii") + body).hexdigest()
    return body + b',"c":"' + chained.encode("ascii") + b'"}\n', chained


# ---- appending --------------------------------------------------------------------------------


Appended = dict[int, tuple[int, int, int]]
"""Shard number -> ``(inode, size before, size after)`` of an append."""


def append_anchors(directory: Path, entries: Iterable[tuple[str, Anchor]], *, by: str, sync: bool) -> Appended:
    """Append ``(run_id, anchor)`` entries to their shards, chained, under each shard's lock.

    Raises :class:`JournalWriteError` if a shard cannot be written.
    """
    shards: dict[int, list[tuple[str, Anchor]]] = {}
    for run_id, anchor in entries:
        shards.setdefault(shard_of(run_id), []).append((run_id, anchor))
    appended: Appended = {}
    if not shards:
        return appended
    try:
        created = not directory.exists()
        ensure_private_dir(directory)
        for number, group in sorted(shards.items()):
            appended[number] = _append_shard(shard_file(directory, number), group, by, sync)
        if created and sync:
            fsync_dir(directory)
        return appended
    except JournalError:
        raise
    except OSError as exc:
        raise JournalWriteError(exc.errno or errno.EIO, f"cannot write the anchor log in {directory}: "
                                f"{exc.strerror or exc}") from None


def _append_shard(path: Path, group: list[tuple[str, Anchor]], by: str, sync: bool) -> tuple[int, int, int]:
    fd = open_regular(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        prev = _last_chain(fd)
        lines = []
        for run_id, anchor in group:
            line, prev = _entry_line(run_id, anchor, by, prev)
            lines.append(line)
        data = b"".join(lines)
        info = os.fstat(fd)
        if os.write(fd, data) != len(data):
            os.ftruncate(fd, info.st_size)
            raise JournalWriteError(errno.ENOSPC, f"short write to the anchor log {path}")
        if sync:
            sync_data(fd)
        return info.st_ino, info.st_size, info.st_size + len(data)
    finally:
        os.close(fd)  # releases the flock


def _last_chain(fd: int) -> str:
    """The ``c`` of the shard's last whole line (genesis if none); a torn final line is cut off."""
    size = os.fstat(fd).st_size
    if size == 0:
        return GENESIS_HASH
    start = max(0, size - _TAIL_PROBE)
    tail = os.pread(fd, size - start, start)
    end = tail.rfind(b"\n") + 1
    if end < len(tail):
        os.ftruncate(fd, start + end)  # a torn line left by a crashed appender: never chain onto it
    if end == 0:
        return GENESIS_HASH if start == 0 else _scan_last_chain(fd, start)
    last = tail[tail.rfind(b"\n", 0, end - 1) + 1 : end - 1]
    return _claimed_chain(last)


def _scan_last_chain(fd: int, limit: int) -> str:
    """The last line's ``c`` when the last line is longer than the probe (a damaged shard)."""
    prev = GENESIS_HASH
    for line in _lines(fd, limit):
        prev = _claimed_chain(line)
    return prev


def _claimed_chain(line: bytes) -> str:
    claimed = line[-66:-2]
    if len(line) > _SUFFIX_LEN and line.endswith(b'"}') and len(claimed) == 64:
        return claimed.decode("ascii", "replace")
    return hashlib.sha256(line).hexdigest()  # a damaged line: chain on its bytes (verify reports it)


# ---- reading ----------------------------------------------------------------------------------


@dataclass
class ShardState:
    """What a reader knows of one shard: anchors by run, how far it read, and chain breaks seen."""

    ino: int = -1
    read_to: int = 0
    prev: str = GENESIS_HASH
    line_no: int = 0
    anchors: dict[str, list[Anchor]] = field(default_factory=dict)
    breaks: list[tuple[int, str]] = field(default_factory=list)
    """``(line number, reason)`` of every line whose chain value or form is wrong."""


def read_shard(path: Path | str, state: ShardState | None = None) -> ShardState:
    """Read a shard from where ``state`` stopped (from the start if it was replaced or cut)."""
    try:
        fd = open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        return ShardState()
    try:
        info = os.fstat(fd)
        if state is None or state.ino != info.st_ino or info.st_size < state.read_to:
            state = ShardState(ino=info.st_ino)
        for line in _lines(fd, info.st_size, state.read_to):
            state.read_to += len(line) + 1
            state.line_no += 1
            _take(state, line)
    finally:
        os.close(fd)
    return state


def _take(state: ShardState, line: bytes) -> None:
    body, claimed = line[:-_SUFFIX_LEN], line[-66:-2]
    expected = hashlib.sha256(state.prev.encode("ascii") + body).hexdigest().encode("ascii")
    try:
        obj = orjson.loads(line)
        anchor = Anchor(obj["seq"], obj["h"], obj["offset"])
        run_id = obj["run_id"]
        ok = type(run_id) is str and type(anchor.seq) is int and type(anchor.offset) is int and type(anchor.hash) is str
    except (orjson.JSONDecodeError, KeyError, TypeError):
        ok = False
    if not ok:
        state.breaks.append((state.line_no, "not an anchor line"))
    elif claimed != expected:
        state.breaks.append((state.line_no, "chain mismatch: this line, or one before it, was changed or removed"))
    if ok:
        state.anchors.setdefault(run_id, []).append(anchor)
    state.prev = _claimed_chain(line)


def _lines(fd: int, size: int, start: int = 0) -> Iterator[bytes]:
    """The whole lines of ``fd`` between ``start`` and ``size`` (a torn last line is left out)."""
    buf, pos = b"", start
    while pos < size:
        chunk = os.pread(fd, min(1 << 20, size - pos), pos)
        if not chunk:
            break
        pos += len(chunk)
        parts = (buf + chunk).split(b"\n")
        buf = parts.pop()
        yield from parts


class AnchorLog:
    """The anchor log of one journal root, with the shards this process has read cached."""

    def __init__(self, root: Path) -> None:
        self.directory = Path(root) / ANCHOR_DIR
        self._shards: dict[int, ShardState] = {}
        self._prefix = str(self.directory) + os.sep

    def shard(self, run_id: str) -> ShardState:
        """The current state of ``run_id``'s shard (reading only what was appended since last time)."""
        number = shard_of(run_id)
        path = f"{self._prefix}{number:02x}.jsonl"  # a string: this runs once per run a read folds
        known = self._shards.get(number)
        try:
            info = os.stat(path)
        except FileNotFoundError:
            info = None
        except OSError:
            return ShardState()  # not ours to read (another user's root): no anchors known
        if known is not None and (info is None and known.ino == -1 or info is not None and
                                  (info.st_ino, info.st_size) == (known.ino, known.read_to)):
            return known  # one stat: unchanged since we read it
        state = read_shard(path, known) if info is not None else ShardState()
        self._shards[number] = state
        return state

    def anchors(self, run_id: str) -> list[Anchor]:
        """The heads anchored for ``run_id``, oldest first."""
        return list(self.shard(run_id).anchors.get(run_id, ()))

    def append(self, entries: Iterable[tuple[str, Anchor]], *, by: str, sync: bool) -> Appended:
        """See :func:`append_anchors`; nothing is written in a journal root another user owns.

        (A reconciler running as root in a user's journal must not leave an anchor log the
        user cannot append to, read or remove; the run is anchored by its owner's next
        history instead.)
        """
        if not _owned_by_us(self.directory.parent):
            return {}
        return append_anchors(self.directory, entries, by=by, sync=sync)


def _owned_by_us(root: Path) -> bool:
    try:
        return os.stat(root).st_uid == os.geteuid()
    except OSError:
        return False


def shard_sizes(directory: Path) -> list[list[int]]:
    """``[inode, size]`` of every shard (``[0, 0]`` for a missing one): what history compares to notice changes."""
    sizes = []
    for number in range(SHARDS):
        try:
            info = os.stat(shard_file(directory, number))
            sizes.append([info.st_ino, info.st_size])
        except OSError:
            sizes.append([0, 0])
    return sizes


def runs_noticed(directory: Path, before: list[list[int]], now: list[list[int]]) -> set[str] | None:
    """Run ids anchored between two :func:`shard_sizes` readings; None if a shard was replaced or cut."""
    noticed: set[str] = set()
    for number, (old, new) in enumerate(zip(before, now, strict=True)):
        if old == new:
            continue
        if old[0] not in (0, new[0]) or new[1] < old[1]:
            return None
        try:
            fd = open_regular(shard_file(directory, number), os.O_RDONLY)
        except (OSError, JournalError):
            return None
        try:
            for line in _lines(fd, new[1], old[1] if old[0] == new[0] else 0):
                end = line.find(b'"', 11)
                if line.startswith(b'{"run_id":"') and end > 11:
                    noticed.add(line[11:end].decode("ascii", "replace"))
        finally:
            os.close(fd)
    return noticed
