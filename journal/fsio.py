"""Low-level file operations with the crash-safety rules baked in.

Paths are opened with ``O_NOFOLLOW | O_CLOEXEC`` and checked with ``fstat`` so a symlink
planted in the journal directory is refused; new directories are 0700 and new files 0600.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
from pathlib import Path

from runjournal.journal.errors import JournalWriteError, UnsafePathError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def sync_data(fd: int) -> None:
    """Flush a file's data to stable storage (``F_FULLFSYNC`` on macOS, else fdatasync)."""
    if sys.platform == "darwin" and hasattr(fcntl, "F_FULLFSYNC"):
        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
    elif hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:  # pragma: no cover - platforms without fdatasync
        os.fsync(fd)


def fsync_dir(path: Path) -> None:
    """fsync a directory so a newly created or renamed entry in it survives power loss."""
    fd = os.open(path, os.O_RDONLY | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as 0700 if missing; refuse a symlink or unsafe owner/mode."""
    # mkdir(parents=True) would create missing parents with the umask's mode, not 0700.
    missing = [p for p in (path, *path.parents) if not os.path.lexists(p)]
    try:
        for directory in reversed(missing):
            directory.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise JournalWriteError(exc.errno or errno.EIO, f"cannot create directory {path}: {exc.strerror}") from None
    check_dir(path)
    return path


def check_dir(path: Path, also_owner: int | None = None) -> None:
    """Raise :class:`UnsafePathError` if ``path`` is a symlink, not a directory, or writable by others.

    It must be owned by this process's user, or by ``also_owner`` (a reader of another
    user's journal passes that user's uid).
    """
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePathError(f"{path} is a symlink; refusing to use it as a journal directory")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePathError(f"{path} is not a directory")
    if info.st_uid not in (os.geteuid(), also_owner):
        raise UnsafePathError(f"{path} is owned by uid {info.st_uid}, not by you (uid {os.geteuid()})")
    if info.st_mode & 0o022:
        raise UnsafePathError(
            f"{path} is writable by group or others (mode {stat.S_IMODE(info.st_mode):o}); run 'chmod 700 {path}'"
        )


def open_regular(path: Path | str, flags: int, mode: int = 0o600) -> int:
    """Open ``path`` without following a symlink and check that it is a regular file."""
    try:
        # O_NONBLOCK: opening a FIFO planted where a run file should be must not hang (it is refused below).
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | _NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(f"{path} is a symlink; refusing to open it") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafePathError(f"{path} is not a regular file")
    return fd


def try_flock(fd: int) -> bool:
    """Take an exclusive ``flock`` without blocking; return False if someone else holds it.

    ``flock`` (not ``lockf``) because its lock belongs to the open file description: closing
    another fd of the same file does not drop it, and the kernel drops it when the holder dies.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def unlock(fd: int) -> None:
    """Release a ``flock`` taken with :func:`try_flock`."""
    fcntl.flock(fd, fcntl.LOCK_UN)
