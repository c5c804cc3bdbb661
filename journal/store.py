"""Where runs live. The interface is small on purpose (see :class:`Store`), so a database-backed
store can sit behind it; :class:`JsonlStore` is the embedded default: one JSONL file per run,
laid out as :mod:`journal.layout` describes.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from runjournal.journal.codec import GENESIS_HASH, decode_line, encode_line
from runjournal.journal.errors import (
    CorruptLineError,
    JournalError,
    JournalWriteError,
    RunExistsError,
    RunLockedError,
    RunNotFoundError,
)
from runjournal.journal.events import Started
from runjournal.journal.fsio import ensure_private_dir, fsync_dir, open_regular, sync_data, try_flock, unlock
from runjournal.journal.ids import validate_run_id
from runjournal.journal.layout import RUN_SUFFIX, StoreLayout
from runjournal.journal.lines import RawLine, TornTail, iter_raw_lines
from runjournal.journal.reader import Cursor, RunReader, scan_to_end
from runjournal.journal.writer import Clock, Durability, RunWriter, utc_now

__all__ = ["RUN_SUFFIX", "JsonlStore", "Store", "StoreLayout"]


class Store(Protocol):
    """A place runs live in: JSONL files (:class:`JsonlStore`) or PostgreSQL (``journal.pgstore``).

    ``create`` appends a run's ``started`` event and returns its writer, which owns the run
    (appends continue the hash chain; a second writer is refused); ``read`` streams a run's
    events from a cursor; ``run_ids``/``resolve`` list and find runs; ``open_writer`` takes
    ownership of a run whose writer is gone and ``locked_run`` does so for reconciling;
    ``writer_alive`` probes whether some process owns the run now. ``lock_scope`` says how
    far that probe sees: ``"host"`` (a ``flock``, certain on the writer's own host only) or
    ``"server"`` (a database session lock, certain for every host). ``raw_lines`` and
    ``import_lines`` move a run's exact lines in and out (export, import, verify).
    """

    root: Any
    lock_scope: str

    def create(self, started: Started, *, durability: Durability = "state", clock: Clock = utc_now) -> RunWriter: ...
    def open_writer(self, run_id: str, *, durability: Durability = "state", clock: Clock = utc_now) -> RunWriter: ...
    def read(self, run_id: str, cursor: Cursor | None = None) -> Any: ...
    def run_ids(self) -> Iterator[str]: ...
    def resolve(self, ref: str) -> str: ...
    def exists(self, run_id: str) -> bool: ...
    def writer_alive(self, run_id: str) -> bool: ...
    def writer_of(self, run_id: str) -> tuple[int | None, str | None]: ...
    def locked_run(self, run_id: str) -> AbstractContextManager[Any]: ...
    def raw_lines(self, run_id: str) -> Iterator[bytes]: ...
    def location(self, run_id: str) -> str: ...
    def import_lines(self, run_id: str, lines: list[bytes]) -> None: ...


class JsonlStore(StoreLayout):
    """One JSONL file per run under ``root/runs`` (see :mod:`journal.layout`)."""

    lock_scope = "host"
    """A run's ``flock`` is only seen by processes on the writer's own host."""

    def location(self, run_id: str) -> str:
        """Where the run is, for messages and ``--json`` output: its file."""
        return str(self.path(run_id))

    def locked_run(self, run_id: str) -> AbstractContextManager[Any]:
        """Hold ``run_id``'s lock for a ``with`` block, to repair and reconcile it (:mod:`journal.repair`)."""
        from runjournal.journal.repair import locked_run  # repair builds on this module

        return locked_run(self, run_id)

    def raw_lines(self, run_id: str) -> Iterator[bytes]:
        """The run file's whole lines, each without its newline (a torn tail is left out)."""
        self.check_not_symlinked()
        fd = open_regular(self.path(run_id), os.O_RDONLY)
        try:
            for item in iter_raw_lines(fd):
                if isinstance(item, RawLine):
                    yield item.data
                elif not isinstance(item, TornTail):
                    raise CorruptLineError(str(self.path(run_id)), item.line_no, item.offset, "line over the size cap")
        finally:
            os.close(fd)

    def import_lines(self, run_id: str, lines: list[bytes]) -> None:
        """Write a whole, already verified run as a new file: temp file, fsync, link, fsync dir."""
        validate_run_id(run_id)
        final = self.path(run_id)
        self.check_not_symlinked()
        ensure_private_dir(self.runs_dir)
        tmp = self.runs_dir / f".{run_id}.importing-{os.getpid()}-{secrets.token_hex(4)}"
        fd = open_regular(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            data = b"".join(line + b"\n" for line in lines)
            if os.write(fd, data) != len(data):
                raise JournalWriteError(errno.ENOSPC, f"short write importing {final}")
            sync_data(fd)
            os.link(tmp, final)
        except FileExistsError:
            raise RunExistsError(run_id) from None
        finally:
            os.close(fd)
            _unlink_quietly(tmp)
        fsync_dir(self.runs_dir)

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
        tmp = self.runs_dir / f".{started.run_id}.creating-{os.getpid()}-{secrets.token_hex(4)}"  # unique per thread too
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
