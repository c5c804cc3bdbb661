"""The JSONL store, the embedded default: one JSONL file per run, as :mod:`~runjournal.journal.jsonl.layout` lays out.

A run's writer holds an exclusive ``flock`` on its file for as long as it lives; the
kernel drops the lock with the process, however it dies, so a free lock on this host means
no writer. The history read model is the index in ``index/``
(:mod:`~runjournal.journal.jsonl.index`); follow watches the file with inotify (watchfiles).

The event models, the codec and the reader are imported when a method needs them, not at
import: a ``history`` that only reads the index never pays the ~100 ms they cost.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runjournal.journal.errors import (
    CorruptLineError,
    JournalError,
    JournalWriteError,
    RunExistsError,
    RunLockedError,
    RunNotFoundError,
)
from runjournal.journal.fsio import ensure_private_dir, fsync_dir, open_regular, sync_data, try_flock, unlock
from runjournal.journal.ids import validate_run_id
from runjournal.journal.jsonl.layout import RUN_SUFFIX, StoreLayout
from runjournal.journal.readmodel import Folded, LiveFold
from runjournal.journal.records import GENESIS_HASH, Anchor, Cursor
from runjournal.journal.sidefiles import SideFiles
from runjournal.journal.store import Clock, Durability, Projection, Pruned, Store, utc_now

if TYPE_CHECKING:
    from runjournal.journal.events import Started, WriterIdentity
    from runjournal.journal.jsonl.anchorlog import AnchorLog
    from runjournal.journal.jsonl.reader import JsonlRunReader
    from runjournal.journal.jsonl.repair import JsonlLockedRun
    from runjournal.journal.jsonl.writer import JsonlRunWriter
    from runjournal.journal.liveness import HostFacts
    from runjournal.journal.readmodel import HistoryQuery, Progress, Projector, RunSummary
    from runjournal.journal.verify import Problem

__all__ = ["RUN_SUFFIX", "JsonlStore"]

# watchfiles' default debounce (1.6 s) suits rebuilds, not tailing a log.
_WATCH_OPTIONS: dict[str, Any] = {"debounce": 10, "step": 5, "yield_on_timeout": True, "watch_filter": None}


class JsonlStore(StoreLayout, Store):
    """One JSONL file per run under ``root/runs`` (see :mod:`~runjournal.journal.jsonl.layout`)."""

    fold_record_min_bytes = 64 * 1024
    """Runs at least this long get a fold record (:mod:`~runjournal.journal.jsonl.foldrecords`):
    shorter ones are cheaper to verify again than to keep a file for."""

    def __init__(self, root: Path | str | None = None) -> None:
        super().__init__(root)
        self.where = str(self.root)
        self.side_files = SideFiles(self.root)
        self._runs_prefix = str(self.runs_dir) + os.sep
        self.index_problem: str | None = None
        """Why a cache (index, fold record) could not be saved, if one could not: reads go on without it."""
        self._live: tuple[Projector | None, set[str]] = (None, set())  # the last listing's unfinished runs

    @cached_property
    def anchor_log(self) -> AnchorLog:
        """The store's anchor log (:mod:`~runjournal.journal.jsonl.anchorlog`), loaded when first used."""
        from runjournal.journal.jsonl.anchorlog import AnchorLog  # not at import: an empty history never needs it

        return AnchorLog(self.root)

    def location(self, run_id: str) -> str:
        """Where the run is, for messages and ``--json`` output: its file."""
        # String work, not a Path: history prints one per run, tens of thousands per call.
        return self._runs_prefix + validate_run_id(run_id) + RUN_SUFFIX

    def address(self) -> str:
        """The journal directory, absolute (another process opens the same store from it)."""
        return str(self.root.resolve())

    # -- create and append ------------------------------------------------------------

    def create(self, started: Started, *, durability: Durability = "state", clock: Clock = utc_now) -> JsonlRunWriter:
        """Create the run file with its ``started`` line and return its writer, lock held.

        The file is built under a temporary name, locked, written and synced, then linked
        into place: a reader never sees a run file without its ``started`` line, and a
        reconciler never sees one unlocked while its writer lives.
        """
        from runjournal.journal.codec import encode_line
        from runjournal.journal.jsonl.writer import JsonlRunWriter

        final = self.path(started.run_id)
        self.check_not_symlinked()
        ensure_private_dir(self.runs_dir)
        import secrets  # new files only: reads never need it

        tmp = self.runs_dir / f".{started.run_id}.creating-{os.getpid()}-{secrets.token_hex(4)}"  # unique per thread too
        fd = _create_exclusive(tmp, started.run_id, self.runs_dir)
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
        return JsonlRunWriter(fd, final, started.run_id, cursor, durability=durability, clock=clock,
                              anchor_log=self.anchor_log)

    def open_writer(self, run_id: str, *, durability: Durability = "state", clock: Clock = utc_now,
                    resume: Cursor | None = None) -> JsonlRunWriter:
        """Take the writer role of an existing run (for reconcilers and importers).

        Raises :class:`RunLockedError` if a live process holds the run's lock. The returned
        writer knows the run's last seq and hash, and any torn tail it must repair first.
        ``resume`` is a cursor the caller read up to: only the lines after it are scanned
        (they must continue its hash chain), so a long run is not read twice.
        """
        from runjournal.journal.jsonl.reader import scan_to_end
        from runjournal.journal.jsonl.writer import JsonlRunWriter

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
            reader = scan_to_end(path, run_id, fd=fd, cursor=resume, anchors=self.anchors(run_id))
        except BaseException:
            os.close(fd)
            raise
        writer = JsonlRunWriter(fd, path, run_id, reader.cursor, torn_tail=reader.torn_tail, durability=durability,
                                clock=clock, anchor_log=self.anchor_log)
        writer.ended = reader.ended
        return writer

    # -- read -------------------------------------------------------------------------

    def read(self, run_id: str, cursor: Cursor | None = None) -> JsonlRunReader:
        """A reader of ``run_id`` from ``cursor`` (the start by default)."""
        from runjournal.journal.jsonl.reader import JsonlRunReader

        path = self.path(run_id)
        self.check_not_symlinked()
        if not os.path.lexists(path):
            raise RunNotFoundError(run_id, self.root)
        return JsonlRunReader(path, run_id, cursor, anchors=self.anchors(run_id))

    def read_plain(self, run_id: str) -> Iterator[dict[str, Any]]:
        """Plain events: the verified exact prefix at ``orjson`` speed (:mod:`~runjournal.journal.jsonl.fastpath`)."""
        from runjournal.journal.jsonl.fastpath import read_plain

        return read_plain(self, run_id)

    def project(self, run_id: str, projector: Projector) -> Projection:
        """The run's fold: from its fold record while that holds (:mod:`~runjournal.journal.jsonl.fastpath`)."""
        from runjournal.journal.jsonl.fastpath import project

        return project(self, run_id, projector)

    # -- repair -----------------------------------------------------------------------

    def locked_run(self, run_id: str, resume: Cursor | None = None) -> AbstractContextManager[JsonlLockedRun]:
        """Hold ``run_id``'s lock for a ``with`` block, to repair and reconcile it (:mod:`~runjournal.journal.jsonl.repair`)."""
        from runjournal.journal.jsonl.repair import locked_run

        return locked_run(self, run_id, resume)

    # -- history ----------------------------------------------------------------------

    def summaries(
        self, query: HistoryQuery, projector: Projector, *, progress: Progress | None = None
    ) -> Iterator[RunSummary]:
        """Summaries from the index, newest first; the filters are applied to the indexed summaries."""
        self._live = (projector, set())
        if not os.path.lexists(self.runs_dir):
            return  # an empty journal: not even the index's modules are loaded (start-up time)
        from runjournal.journal.jsonl.index import HistoryIndex

        live = self._live[1]
        unfiltered = query == type(query)()
        for summary in HistoryIndex(self, projector, progress=progress).summaries():
            if not summary.is_terminal and summary.error is None:
                live.add(summary.run_id)
            if unfiltered or query.matches(summary):
                yield summary

    def take_fold(self, run_id: str) -> LiveFold | None:
        """The fold of a run the last listing yielded as not finished (from its fold record while that holds,
        :meth:`project`), once. No facts: a host lock is probed per run, when it is judged."""
        projector, live = self._live
        if projector is None or run_id not in live:
            return None
        live.discard(run_id)

        def fold() -> Folded:
            projection = self.project(run_id, projector)
            if projection.damage is not None:
                raise projection.damage
            return Folded(projection.state, projection.cursor)

        return LiveFold(None, fold)

    # -- retention --------------------------------------------------------------------

    def prune(self, run_ids: Collection[str]) -> list[Pruned]:
        """Delete each finished run nobody holds the lock of: its file, a quarantined torn tail, its index entry."""
        from runjournal.journal.jsonl.prune import prune_runs

        return prune_runs(self, run_ids)

    # -- follow -----------------------------------------------------------------------

    def watch(self, run_id: str, *, poll_seconds: float) -> Iterator[bool]:
        """inotify on the run file (watchfiles), a poll every ``poll_seconds`` without news."""
        import watchfiles  # only follow needs it; it costs start-up time elsewhere

        options = _WATCH_OPTIONS | {"rust_timeout": int(poll_seconds * 1000)}
        return (bool(changes) for changes in watchfiles.watch(self.path(run_id), **options))

    # -- liveness ---------------------------------------------------------------------

    def writer_facts(self, run_id: str, identity: WriterIdentity, *, lock_held: bool | None = None) -> HostFacts:
        """The host's facts about ``identity`` and whether the run file's ``flock`` is held (None: unknown)."""
        if lock_held is None:
            lock_held = self._probe_lock(run_id)
        from runjournal.journal.liveness import observe_host  # /proc and socket: only a verdict needs them

        return observe_host(identity, lock_held)

    def _probe_lock(self, run_id: str) -> bool | None:
        try:
            return self.writer_alive(run_id)
        except OSError:
            return None

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
        from runjournal.journal.codec import decode_line
        from runjournal.journal.events import Started
        from runjournal.journal.lines import RawLine, iter_raw_lines

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

    # -- start ------------------------------------------------------------------------

    @contextmanager
    def workflow_lock(self, workflow: str) -> Iterator[None]:
        """An exclusive ``flock`` per workflow name (``locks/`` under the root), held while inside."""
        locks = ensure_private_dir(self.root / "locks")
        import hashlib

        key = hashlib.sha256(workflow.encode()).hexdigest()[:24]
        fd = open_regular(locks / f"workflow-{key}.lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- verify and transfer ----------------------------------------------------------

    def verify(self, run_id: str) -> Iterator[Problem]:
        """Every problem in the run file, torn tail included, and in its anchors and their log."""
        from runjournal.journal.jsonl.anchorlog import shard_of
        from runjournal.journal.verify import Problem, verify_file

        shard = self.anchor_log.shard(run_id)
        yield from verify_file(self.path(run_id), run_id, shard.anchors.get(run_id, ()))
        where = str(self.anchor_log.directory / f"{shard_of(run_id):02x}.jsonl")
        for line_no, reason in shard.breaks:
            yield Problem(where, line_no, 0, "anchor-log",
                          f"{reason}; the anchors of the runs in this file can no longer be vouched for")

    def anchors(self, run_id: str) -> list[Anchor]:
        """The heads anchored for ``run_id`` in the anchor log (:mod:`~runjournal.journal.jsonl.anchorlog`)."""
        validate_run_id(run_id)
        return self.anchor_log.anchors(run_id)

    def raw_lines(self, run_id: str) -> Iterator[bytes]:
        """The run file's whole lines, each without its newline (a torn tail is left out)."""
        from runjournal.journal.lines import RawLine, TornTail, iter_raw_lines

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
        import secrets

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
        from runjournal.journal.anchors import finished_head

        head = finished_head(lines)
        if head is not None:
            self.anchor_log.append([(run_id, head)], by="import", sync=True)


def _create_exclusive(tmp: Path, run_id: str, runs_dir: Path) -> int:
    """Open a new temporary run file for writing, or say in one line why it cannot be created."""
    try:
        return open_regular(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND)
    except OSError as exc:
        if isinstance(exc, JournalError):
            raise
        raise JournalWriteError(exc.errno or errno.EIO, f"cannot create run {run_id} in {runs_dir}: {exc.strerror}") from None


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
