"""A power-loss layer under the writer, in the style of SQLite's crash VFS (``src/test6.c``) and
LevelDB's ``fault_injection_test``.

:class:`PowerLossOps` is a :class:`journal.writer.FileOps` that keeps every unsynced write
aside instead of handing it to the kernel. A sync moves the pending bytes into the real file.
At a simulated power cut (:meth:`PowerLossOps.crash`) the pending bytes meet one of these
fates, chosen at random:

``drop``          none of them reached the disk;
``prefix``        a random byte prefix of them did (the last line may be torn);
``zero-fill``     a prefix did, then the file grew over NUL bytes (size updated, data not);
``garbage``       a prefix did, then random bytes without a newline (garbage sectors).

These are the outcomes an ordered-data file system (ext4 ``data=ordered``, XFS) allows for
an append-only file: what was fsynced stays, and the unsynced tail is cut or garbled. Two
harsher modes, beyond that model, check that damage is at least *detected*:

``garbage-nl``    the lost part is replaced by random bytes that may contain newlines;
``holes``         each pending write independently lands, vanishes (NUL hole) or is garbled
                  (SQLite's unordered sector model).

The layer can also "crash" in the middle of the writer's work: after a chosen number of
operations it raises :class:`SimulatedCrash`, a ``BaseException`` the writer does not catch,
so the writer stops exactly there, as a machine losing power would.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

from runjournal.journal.jsonl.writer import FileOps

SAFE_MODES = ("drop", "prefix", "zero-fill", "garbage")
"""Crash outcomes an ordered-data file system allows: the promise is checked under these."""

HARSH_MODES = ("garbage-nl", "holes")
"""Outcomes beyond that model: the promise is only that the damage is detected."""


class SimulatedCrash(BaseException):
    """The machine lost power at this operation (a BaseException so the writer cannot swallow it)."""


@dataclass
class CrashReport:
    """What a simulated crash did to the file."""

    mode: str
    pending_bytes: int
    kept_bytes: int
    added_bytes: int
    synced_size: int


@dataclass
class PowerLossOps(FileOps):
    """File operations that withhold unsynced writes until ``sync`` and can lose them at a crash.

    ``crash_after``: raise :class:`SimulatedCrash` at that operation (1-based count of
    write/sync calls); ``None`` never. Writes are never handed to the kernel before a sync, so
    the real file always holds exactly the synced bytes until :meth:`crash` applies damage.
    """

    synced_size: int
    rng: random.Random
    crash_after: int | None = None
    ops_done: int = 0
    pending: list[bytes] = field(default_factory=list)
    crashed: bool = False

    @classmethod
    def attach(cls, writer: object, rng: random.Random, crash_after: int | None = None) -> PowerLossOps:
        """Put a fresh layer under ``writer`` (a :class:`~runjournal.journal.jsonl.writer.JsonlRunWriter`) and return it."""
        size = os.fstat(writer.fd).st_size  # type: ignore[attr-defined]
        ops = cls(synced_size=size, rng=rng, crash_after=crash_after)
        writer.ops = ops  # type: ignore[attr-defined]
        return ops

    def _tick(self) -> None:
        if self.crashed:
            raise SimulatedCrash("the machine is already off")
        self.ops_done += 1
        if self.crash_after is not None and self.ops_done >= self.crash_after:
            self.crashed = True
            raise SimulatedCrash(f"power lost at operation {self.ops_done}")

    def write(self, fd: int, data: bytes) -> int:  # type: ignore[override]
        """Accept ``data`` into the page cache (kept aside, not yet in the file)."""
        self._tick()
        self.pending.append(bytes(data))
        return len(data)

    def sync(self, fd: int) -> None:  # type: ignore[override]
        """Make every pending byte durable: it is written to the real file now."""
        self._tick()
        for chunk in self.pending:
            _write_all(fd, chunk)
        self.synced_size += sum(len(c) for c in self.pending)
        self.pending.clear()

    def size(self, fd: int) -> int:
        """The size the writer sees: durable bytes plus the page cache."""
        return self.synced_size + sum(len(c) for c in self.pending)

    def truncate(self, fd: int, length: int) -> None:  # type: ignore[override]
        """Cut the file back; cutting into durable bytes is applied (and counted durable) at once."""
        if length >= self.synced_size:
            joined = b"".join(self.pending)[: length - self.synced_size]
            self.pending = [joined] if joined else []
            return
        os.ftruncate(fd, length)
        self.synced_size = length
        self.pending.clear()

    def crash(self, fd: int, mode: str | None = None) -> CrashReport:
        """Lose power: apply a random fate to the pending bytes and write the result to ``fd``.

        ``fd`` must still be the writer's (append) descriptor; the caller closes it afterwards,
        which is what the kernel does to a dead process's files.
        """
        self.crashed = True
        mode = mode or self.rng.choice(SAFE_MODES)
        pending = b"".join(self.pending)
        if mode == "holes":
            damaged = self._holes()
        else:
            keep = self.rng.randint(0, len(pending))
            damaged = pending[:keep] + self._filler(mode, len(pending) - keep)
        _write_all(fd, damaged)
        kept = _common_prefix(pending, damaged)
        self.pending.clear()
        return CrashReport(mode, len(pending), kept, len(damaged) - kept, self.synced_size)

    def _filler(self, mode: str, room: int) -> bytes:
        if mode in ("drop", "prefix") or room == 0:
            return b""
        length = self.rng.randint(1, max(1, min(room, 4096)))
        if mode == "zero-fill":
            return b"\0" * length
        data = bytearray(self.rng.randbytes(length))
        if mode == "garbage":
            data = data.replace(b"\n", b"?")
        return bytes(data)

    def _holes(self) -> bytes:
        """Each pending write lands, vanishes (NULs) or is garbled, independently; the file ends
        at the last write that landed or was garbled."""
        out = bytearray()
        end = 0
        for chunk in self.pending:
            fate = self.rng.choice(("land", "hole", "garble"))
            if fate == "land":
                out += chunk
            else:
                out += b"\0" * len(chunk) if fate == "hole" else self.rng.randbytes(len(chunk))
            if fate != "hole":
                end = len(out)
        return bytes(out[:end])


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _common_prefix(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
