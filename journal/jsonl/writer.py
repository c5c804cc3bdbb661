"""The single writer of a run: appends whole lines, one ``os.write`` each, under the run's flock.

Durability is a choice made per writer (documented in ``docs/format.md``):

* ``"state"`` (default): every state-changing event (``started``, ``step-progress``, the
  terminals) is fdatasync'ed before :meth:`RunWriter.append` returns; heartbeats are not,
  since losing the last heartbeat to a power cut changes no status (a late heartbeat, after
  the run ended, is: it is anchored).
* ``"all"``: heartbeats too.
* ``"none"``: nothing is synced (tests, benchmarks, scratch runs). A process crash still
  loses nothing the kernel accepted; a power cut may.

A short write is cut back to the last whole line and raised. A failed fsync is final: the
kernel may have thrown the dirty pages away and a later fsync would "succeed" without them
(fsyncgate), so the writer refuses every later append.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from runjournal.journal.codec import encode_line
from runjournal.journal.crashpoints import crash_point
from runjournal.journal.errors import FsyncFailedError, JournalWriteError, ShortWriteError, WriterClosedError
from runjournal.journal.events import SYNCED_TYPES, Event
from runjournal.journal.fsio import sync_data
from runjournal.journal.jsonl.anchorlog import AnchorLog
from runjournal.journal.lines import TornTail
from runjournal.journal.records import Anchor, Cursor
from runjournal.journal.store import Clock, Durability, RunWriter, utc_now


class FileOps:
    """The system calls the writer makes, as a seam for fault injection.

    Tests swap in a layer that fails, shortens or withholds writes (power-loss simulation);
    production uses these plain calls.
    """

    write = staticmethod(os.write)
    sync = staticmethod(sync_data)
    truncate = staticmethod(os.ftruncate)

    @staticmethod
    def size(fd: int) -> int:
        """The file's current size."""
        return os.fstat(fd).st_size


REAL_OPS = FileOps()

PATH_CHECK_SECONDS = 1.0
"""How long a durable append trusts the run file's path to still lead to the writer's inode
(its link count is checked every time: see :meth:`JsonlRunWriter._check_still_ours`)."""


class JsonlRunWriter(RunWriter):
    """Appends events to one run file whose exclusive ``flock`` this writer's fd holds."""

    def __init__(
        self,
        fd: int,
        path: Path,
        run_id: str,
        cursor: Cursor,
        *,
        torn_tail: TornTail | None = None,
        durability: Durability = "state",
        clock: Clock = utc_now,
        ops: FileOps = REAL_OPS,
        anchor_log: AnchorLog | None = None,
    ) -> None:
        super().__init__(run_id, str(path), cursor, durability=durability, clock=clock)
        self.fd = fd
        self.ops = ops
        self.path = path
        self.torn_tail = torn_tail
        self.anchor_log = anchor_log if anchor_log is not None else AnchorLog(path.parent.parent)
        self._path_checked_until = 0.0

    def _write(self, event: Event) -> None:
        if self.torn_tail is not None:
            raise WriterClosedError(
                f"{self.path} ends in a torn line at byte {self.torn_tail.offset}; "
                "run 'runjournal reconcile' to quarantine it before appending"
            )
        synced = self._durable(event)
        if synced:
            self._check_still_ours()  # two syscalls: cheap next to the fsync, so only where durability is promised
        line, digest = encode_line(event, self.cursor.prev_hash)
        crash_point("before-write")
        self._write_line(line)
        crash_point("after-write")
        if synced:
            self._sync()
            crash_point("after-sync")
        c = self.cursor
        self.cursor = Cursor(c.offset + len(line), c.line + 1, c.seq + 1, digest)

    def _check_still_ours(self) -> None:
        """Refuse for good if the run file was deleted or replaced under this writer.

        Appends to an unlinked or renamed-over inode would "succeed" where no reader ever
        looks (SQLite's How To Corrupt: a file unlinked or renamed while in use). Our inode's
        link count, one ``fstat``, catches both at every durable append; the path itself is
        looked up (a ``stat`` that costs more than the rest of an append's own work) at most
        every :data:`PATH_CHECK_SECONDS`, which also catches the file moved to another name.
        """
        if os.fstat(self.fd).st_nlink > 0 and time.monotonic() < self._path_checked_until:
            return
        try:
            on_disk = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            on_disk = None
        mine = os.fstat(self.fd)
        if on_disk is not None and (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino):
            self._path_checked_until = time.monotonic() + PATH_CHECK_SECONDS
            return
        what = "deleted" if on_disk is None else "replaced by another file"
        self._refusal = f"{self.path} was {what} under this writer"
        raise JournalWriteError(errno.ESTALE, f"refusing to append: {self._refusal}; nothing more is written to it")

    def _write_line(self, line: bytes) -> None:
        try:
            written = self.ops.write(self.fd, line)
        except OSError as exc:
            self._cut_back()
            raise JournalWriteError(exc.errno or errno.EIO, f"cannot append to {self.path}: {exc.strerror}") from None
        if written != len(line):
            self._cut_back()
            raise ShortWriteError(
                errno.EIO,
                f"short write to {self.path}: {written} of {len(line)} bytes (disk full or file size limit?); "
                "the partial line was removed",
            )

    def _cut_back(self) -> None:
        """Remove any partial line so the file again ends with a whole line."""
        try:
            if self.ops.size(self.fd) != self.cursor.offset:
                self.ops.truncate(self.fd, self.cursor.offset)
        except OSError as exc:
            self._refusal = f"could not remove a partial line ({exc.strerror}); the file may end in a torn line"

    def _sync(self) -> None:
        try:
            self.ops.sync(self.fd)
        except OSError as exc:
            self._refusal = f"an earlier fsync failed ({exc.strerror}); data may be lost, start a new run"
            raise FsyncFailedError(exc.errno or errno.EIO, f"fsync of {self.path} failed: {exc.strerror}") from None

    def _durable(self, event: Event) -> bool:
        """Whether the append of ``event`` is fdatasync'ed (see the durability modes above).

        Under ``state``, once the run has ended every append is (a late event is rare, and
        synced it can be anchored, which is how history notices it at once).
        """
        if self.durability == "state":
            return event.type in SYNCED_TYPES or self.ended
        return self.durability == "all"

    def _record_anchor(self, head: Anchor) -> None:
        """Append ``head`` (a synced line's) to the store's anchor log, synced too."""
        self.anchor_log.append([(self.run_id, head)], by="writer", sync=True)

    def close(self) -> None:
        """Release the lock and close the file (the kernel does both if the process dies)."""
        with self._lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
                self._refusal = self._refusal or "the writer is closed"

