"""Every error the journal raises. A leaf module: it imports nothing from the project.

Each error inherits the root :class:`JournalError` and the builtin it naturally is, so
callers can catch either. ``str(error)`` is always one line a user can act on.
"""

from __future__ import annotations

import errno
import os


class JournalError(Exception):
    """Root of every error raised by runjournal."""


class InvalidRunIdError(JournalError, ValueError):
    """A run id from outside does not match the safe id pattern."""

    def __init__(self, run_id: str, why: str) -> None:
        self.run_id = run_id
        super().__init__(f"invalid run id {run_id!r}: {why}")


class RunNotFoundError(JournalError, LookupError):
    """No run matches the given id or prefix."""

    def __init__(self, ref: str, root: str | os.PathLike[str]) -> None:
        self.ref = ref
        super().__init__(f"no run matches {ref!r} in {os.fspath(root)} (see 'runjournal history')")


class AmbiguousRunIdError(JournalError, LookupError):
    """A prefix matches more than one run."""

    def __init__(self, ref: str, matches: list[str]) -> None:
        self.ref = ref
        self.matches = matches
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        super().__init__(f"run id prefix {ref!r} is ambiguous: {len(matches)} runs match ({shown})")


class RunExistsError(JournalError, FileExistsError):
    """A run file with this id already exists."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} already exists")


class RunLockedError(JournalError, BlockingIOError):
    """Another live process holds the run's writer lock."""

    def __init__(self, run_id: str, pid: int | None, host: str | None) -> None:
        self.run_id = run_id
        self.pid = pid
        self.host = host
        who = f"pid {pid} on host {host}" if pid is not None else "another process"
        super().__init__(f"run {run_id} is locked by {who}; only one writer may append to a run")


class CorruptLineError(JournalError, ValueError):
    """A line in the middle of a journal cannot be trusted.

    Carries the file, the 1-based line number, the byte offset where the line starts and
    the reason, because the user has to find it with an editor or ``dd``.
    """

    def __init__(self, path: str | os.PathLike[str], line: int, offset: int, reason: str) -> None:
        self.path = os.fspath(path)
        self.line = line
        self.offset = offset
        self.reason = reason
        super().__init__(f"{self.path}:{line} (byte {offset}): {reason}")


class SequenceError(CorruptLineError):
    """A line is well formed but its ``seq`` or ``run_id`` does not continue the stream."""


class IntegrityError(CorruptLineError):
    """A line's hash does not match its bytes: it was modified after it was written."""


class UnsupportedVersionError(CorruptLineError):
    """A line was written with a schema version newer than this reader knows."""


class WriterClosedError(JournalError, RuntimeError):
    """The writer was closed, or refuses to write after an earlier failure."""


class FsyncFailedError(JournalError, OSError):
    """fsync/fdatasync failed: the kernel may have dropped the data, so the writer stops for good."""


class ShortWriteError(JournalError, OSError):
    """The kernel accepted only part of a line; the partial line was cut off again."""


class JournalWriteError(JournalError, OSError):
    """Writing to the journal failed (disk full, read-only, permission denied ...)."""


class UnsafePathError(JournalError, PermissionError):
    """A journal path is a symlink, not a regular file, or has unsafe ownership or mode."""


class NotReconcilableError(JournalError, RuntimeError):
    """A run cannot be reconciled (it is live, terminal, or has no ``started`` event)."""


class WriterFencedError(WriterClosedError):
    """The store refused an append because this writer no longer owns the run.

    PostgreSQL store: the writer's session lost the run's advisory lock (the server dropped
    it), or another writer (a reconciler recording ``abandoned``) took the next seq.
    """


class StoreUnavailableError(JournalError, ConnectionError):
    """The store cannot be reached (a database that refuses connections, a missing driver)."""


class SameStoreError(JournalError, ValueError):
    """A copy was asked to go into the store it comes from (an archive that is the store being pruned)."""


READ_ONLY_ERRNOS = frozenset({errno.EACCES, errno.EROFS, errno.EPERM})
"""Errors that mean "this journal cannot be written by us", not "something broke"."""


def is_read_only_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the journal (file or directory) is not writable by this process."""
    return isinstance(exc, OSError) and exc.errno in READ_ONLY_ERRNOS
