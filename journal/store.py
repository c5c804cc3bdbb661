"""Where runs live. The interface is small on purpose (see :class:`Store`), so a database-backed
store can sit behind it; :class:`JsonlStore` is the embedded default: one JSONL file per run,
laid out as :mod:`journal.layout` describes.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from journal.codec import GENESIS_HASH, decode_line, encode_line
from journal.errors import (
    JournalError,
    JournalWriteError,
    RunExistsError,
    RunLockedError,
    RunNotFoundError,
)
from journal.events import Started
from journal.fsio import ensure_private_dir, fsync_dir, open_regular, sync_data, try_flock, unlock
from journal.layout import RUN_SUFFIX, StoreLayout
from journal.lines import RawLine, iter_raw_lines
from journal.reader import Cursor, RunReader, scan_to_end
from journal.writer import Clock, Durability, RunWriter, utc_now

__all__ = ["RUN_SUFFIX", "JsonlStore", "Store", "StoreLayout"]


class Store(Protocol):
    """A place runs live in.

    ``create`` starts a run and returns its (locked) writer; ``open_writer`` takes over the
    writer role of an existing run whose writer is gone; ``read`` streams a run's events from
    a cursor; ``run_ids`` lists runs; ``writer_alive`` probes whether some process holds the
    run's writer lock.
    """

    def create(self, started: Started, *, durability: Durability = "state", clock: Clock = utc_now) -> RunWriter: ...
    def open_writer(self, run_id: str, *, durability: Durability = "state", clock: Clock = utc_now) -> RunWriter: ...
    def read(self, run_id: str, cursor: Cursor | None = None) -> RunReader: ...
    def run_ids(self) -> Iterator[str]: ...
    def writer_alive(self, run_id: str) -> bool: ...


class JsonlStore(StoreLayout):
    """One JSONL file per run under ``root/runs`` (see :mod:`journal.layout`)."""

    def read(self, run_id: str, cursor: Cursor | None = None) -> RunReader:
        """A reader of ``run_id`` from ``cursor`` (the start by default)."""
        path = self.path(run_id)
        self.check_not_symlinked()
        if not os.path.lexists(path):
            raise RunNotFoundError(run_id, self.root)
        return RunReader(path, run_id, cursor)

    def create(self, started: Started, *, durability: Durability = "state", clock: Clock = utc_now) -> RunWriter:
        """Create the run file with its ``started`` line and return its writer, lock held.

        The file is built under a temporary name, locked, written and synced, then linked
        into place: a reader never sees a run file without its ``started`` line, and a
        reconciler never sees one unlocked while its writer lives.
        """
        final = self.path(started.run_id)
        self.check_not_symlinked()
        ensure_private_dir(self.runs_dir)
        tmp = self.runs_dir / f".{started.run_id}.creating-{os.getpid()}"
        try:
            fd = open_regular(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND)
        except OSError as exc:
            if isinstance(exc, JournalError):
                raise
            raise JournalWriteError(
                exc.errno or errno.EIO, f"cannot create run {started.run_id} in {self.runs_dir}: {exc.strerror}"
            ) from None
        try:
            try_flock(fd)
            line, digest = encode_line(started, GENESIS_HASH)
            if os.write(fd, line) != len(line):
                raise JournalWriteError(errno.ENOSPC, f"short write creating {final}")
            sync_data(fd)
            os.link(tmp, final)
        except FileExistsError:
            os.close(fd)
            raise RunExistsError(started.run_id) from None
        except JournalWriteError:
            os.close(fd)
            raise
        except OSError as exc:
            os.close(fd)
            raise JournalWriteError(exc.errno or errno.EIO, f"cannot create {final}: {exc.strerror}") from None
        finally:
            _unlink_quietly(tmp)
        fsync_dir(self.runs_dir)
        cursor = Cursor(len(line), 2, 1, digest)
        return RunWriter(fd, final, started.run_id, cursor, durability=durability, clock=clock)

    def open_writer(self, run_id: str, *, durability: Durability = "state", clock: Clock = utc_now) -> RunWriter:
        """Take the writer role of an existing run (for reconcilers and importers).

        Raises :class:`RunLockedError` if a live process holds the run's lock. The returned
        writer knows the run's last seq and hash, and any torn tail it must repair first.
        """
        path = self.path(run_id)
        self.check_not_symlinked()
        try:
            fd = open_regular(path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            raise RunNotFoundError(run_id, self.root) from None
        if not try_flock(fd):
            os.close(fd)
            pid, host = self.writer_of(run_id)
            raise RunLockedError(run_id, pid, host)
        try:
            reader = scan_to_end(path, run_id, fd=fd)
        except BaseException:
            os.close(fd)
            raise
        return RunWriter(fd, path, run_id, reader.cursor, torn_tail=reader.torn_tail, durability=durability, clock=clock)

    def writer_alive(self, run_id: str) -> bool:
        """True if some process holds the run's writer lock right now."""
        fd = open_regular(self.path(run_id), os.O_RDONLY)
        try:
            if try_flock(fd):
                unlock(fd)
                return False
            return True
        finally:
            os.close(fd)

    def writer_of(self, run_id: str) -> tuple[int | None, str | None]:
        """``(pid, host)`` recorded in the run's ``started`` line, if it can be read."""
        try:
            fd = open_regular(self.path(run_id), os.O_RDONLY)
        except OSError:
            return None, None
        try:
            first = next(iter_raw_lines(fd), None)
            if not isinstance(first, RawLine):
                return None, None
            event, _ = decode_line(first.data, GENESIS_HASH)
        except (ValueError, OSError):
            return None, None
        finally:
            os.close(fd)
        if isinstance(event, Started):
            return event.writer.pid, event.writer.host
        return None, None


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
