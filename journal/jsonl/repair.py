"""The write half of reconciliation: take a run's lock, repair a torn tail, append ``abandoned``.

Everything here happens while this process holds the run's ``flock`` (taken through
:meth:`~runjournal.journal.jsonl.store.JsonlStore.open_writer`), which proves that no writer on this host is
alive and that no other reconciler is at work. The decision *whether* to abandon is not
made here (it needs the fold and the liveness verdict, in ``projections``); this module
only makes the append safe:

1. A torn final fragment is copied to ``runs/<run_id>.jsonl.torn-<offset>`` (0600, written
   under a temporary name, fsynced, then linked into place, and the directory fsynced), so
   it is kept for forensics and never half-written.
2. The run file is truncated to its last whole line and fsynced, so the ``abandoned`` line
   is never glued to a fragment.
3. ``abandoned`` is appended (and fdatasync'ed) with the quarantine recorded in it.

A crash between any two steps leaves a journal that reads, and the next reconciler redoes
the remaining steps (the quarantine file already there with the same bytes is reused). The
crash points ``reconcile-quarantined`` and ``reconcile-truncated`` (see
:mod:`runjournal.journal.crashpoints`) mark the two moments in between.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runjournal.journal.crashpoints import crash_point
from runjournal.journal.errors import JournalWriteError, is_read_only_error
from runjournal.journal.events import Abandoned, QuarantinedTail
from runjournal.journal.fsio import fsync_dir, open_regular
from runjournal.journal.jsonl.reader import JsonlRunReader
from runjournal.journal.jsonl.writer import JsonlRunWriter
from runjournal.journal.lines import TornTail
from runjournal.journal.records import Cursor, Record
from runjournal.journal.store import LockedRun

if TYPE_CHECKING:
    from runjournal.journal.jsonl.store import JsonlStore  # the store calls locked_run()

_COPY_CHUNK = 1 << 20


class JsonlLockedRun(LockedRun):
    """A run file whose ``flock`` this process holds, opened for repair and one append."""

    writer: JsonlRunWriter

    def __init__(self, writer: JsonlRunWriter) -> None:
        super().__init__(writer)

    @property
    def torn_tail(self) -> TornTail | None:
        """The fragment after the last whole line, if the file ends in one."""
        return self.writer.torn_tail

    def _records(self, after: Cursor | None = None) -> Iterator[Record]:
        """The run's records (after ``after``, if given), validated, read through the locked fd."""
        run_id = self.writer.run_id
        anchors = self.writer.anchor_log.anchors(run_id)
        return iter(JsonlRunReader(self.writer.path, run_id, after, fd=self.writer.fd, anchors=anchors))

    def append_abandoned(self, **fields: Any) -> Abandoned:
        """Quarantine a torn tail if there is one, then append and sync ``abandoned``.

        ``fields`` are the Abandoned fields other than the envelope and ``tail_quarantined``.
        Raises :class:`NotReconcilableError` if the run already has a terminal event or has
        no ``started`` event.
        """
        self.check_reconcilable()
        quarantined = self._quarantine_tail() if self.writer.torn_tail is not None else self._earlier_quarantine()
        event = self.writer.append(Abandoned, tail_quarantined=quarantined, **fields)
        return event  # type: ignore[return-value]

    def _repair_tail(self) -> dict[str, Any] | None:
        """Quarantine a torn tail before a canceller's append (:meth:`LockedRun.append_cancelled`)."""
        return self._quarantine_tail().model_dump() if self.writer.torn_tail is not None else None

    def _earlier_quarantine(self) -> QuarantinedTail | None:
        """A quarantine file an interrupted reconciler left for the current end of the file."""
        offset = self.writer.cursor.offset
        name = f"{self.writer.path.name}.torn-{offset}"
        try:
            size = os.lstat(self.writer.path.parent / name).st_size
        except FileNotFoundError:
            return None
        return QuarantinedTail(file=name, offset=offset, length=size)

    def _quarantine_tail(self) -> QuarantinedTail:
        tail = self.writer.torn_tail
        assert tail is not None
        fd = self.writer.fd
        fragment_end = os.fstat(fd).st_size
        name = _write_quarantine(self.writer.path, fd, tail.offset, fragment_end)
        crash_point("reconcile-quarantined")
        try:
            os.ftruncate(fd, tail.offset)
            os.fsync(fd)
        except OSError as exc:
            raise JournalWriteError(
                exc.errno or errno.EIO, f"cannot cut the torn tail off {self.writer.path}: {exc.strerror}"
            ) from None
        crash_point("reconcile-truncated")
        self.writer.torn_tail = None
        return QuarantinedTail(file=name, offset=tail.offset, length=fragment_end - tail.offset)


@contextmanager
def locked_run(store: JsonlStore, run_id: str, resume: Cursor | None = None) -> Iterator[JsonlLockedRun]:
    """Hold ``run_id``'s writer lock for the ``with`` block (``resume``: see :meth:`JsonlStore.open_writer`).

    Raises :class:`~runjournal.journal.errors.RunLockedError` if a live writer or another
    reconciler holds it, and :class:`~runjournal.journal.errors.JournalWriteError` (with
    ``errno`` EACCES, EROFS or EPERM, see :func:`~runjournal.journal.errors.is_read_only_error`)
    if the journal cannot be opened for writing.
    """
    path = store.path(run_id)
    if os.path.lexists(path) and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        # A journal made read-only on purpose is left alone even where open() would work.
        raise JournalWriteError(errno.EACCES, f"{path} or its directory is not writable")
    try:
        writer = store.open_writer(run_id, resume=resume)
    except OSError as exc:
        if is_read_only_error(exc) and not isinstance(exc, JournalWriteError):
            raise JournalWriteError(exc.errno, f"cannot open {path} for writing: {exc.strerror}") from None
        raise
    try:
        yield JsonlLockedRun(writer)
    finally:
        writer.close()


def append_abandoned(store: JsonlStore, run_id: str, **fields: Any) -> Abandoned:
    """Under the run's lock, repair a torn tail and append ``abandoned`` with ``fields``.

    The low-level form: it checks only that the run is not terminal. Whether the writer is
    dead is the caller's decision (see :func:`runjournal.projections.reconcile.reconcile_run`).
    """
    with locked_run(store, run_id) as run:
        return run.append_abandoned(**fields)


def _write_quarantine(run_path: Path, fd: int, start: int, end: int) -> str:
    """Copy bytes ``[start, end)`` of ``fd`` to a quarantine file beside ``run_path``; return its name."""
    directory = run_path.parent
    base = f"{run_path.name}.torn-{start}"
    for attempt in range(100):
        name = base if attempt == 0 else f"{base}.{attempt}"
        same = _same_bytes(directory / name, fd, start, end)
        if same:
            return name  # an earlier reconciler got this far before it was interrupted
        if same is None:
            _create_synced(directory, name, fd, start, end)
            return name
    raise JournalWriteError(errno.EEXIST, f"too many quarantine files for {run_path} at byte {start}")


def _chunks(fd: int, start: int, end: int) -> Iterator[bytes]:
    """The bytes ``[start, end)`` of ``fd`` in bounded chunks (a torn tail can be huge)."""
    pos = start
    while pos < end:
        chunk = os.pread(fd, min(_COPY_CHUNK, end - pos), pos)
        if not chunk:
            return
        yield chunk
        pos += len(chunk)


def _same_bytes(path: Path, fd: int, start: int, end: int) -> bool | None:
    """Whether ``path`` holds exactly bytes ``[start, end)`` of ``fd``; None if it does not exist."""
    try:
        other = open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if os.fstat(other).st_size != end - start:
            return False
        offset = 0
        for chunk in _chunks(fd, start, end):
            if os.pread(other, len(chunk), offset) != chunk:
                return False
            offset += len(chunk)
        return True
    finally:
        os.close(other)


def _create_synced(directory: Path, name: str, src: int, start: int, end: int) -> None:
    """Create ``directory/name`` holding bytes ``[start, end)`` of ``src``: complete or not at all."""
    tmp = directory / f".{name}.tmp-{os.getpid()}"
    try:
        fd = open_regular(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            give_to_owner_of(fd, src)
            for chunk in _chunks(src, start, end):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, directory / name)
        fsync_dir(directory)
    except OSError as exc:
        raise JournalWriteError(
            exc.errno or errno.EIO, f"cannot write quarantine file {directory / name}: {exc.strerror}"
        ) from None
    finally:
        _unlink_quietly(tmp)


def give_to_owner_of(fd: int, model: int) -> None:
    """Give the new file ``fd`` the owner of the file ``model`` (the run file), where this process may.

    A reconciler running as another user (root, reading a user's root) must leave files the
    run's owner can still read and remove; without the privilege to change owners the
    reconciler is that owner anyway (a 0700 root admits no one else), so EPERM is ignored.
    """
    want = os.fstat(model)
    have = os.fstat(fd)
    if (have.st_uid, have.st_gid) != (want.st_uid, want.st_gid):
        try:
            os.fchown(fd, want.st_uid, want.st_gid)
        except PermissionError:
            pass


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
