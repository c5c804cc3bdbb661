"""The history read model: a disposable index of every run's summary, folded incrementally.

For each run the index keeps a :class:`RunSummary` (what ``history`` lists), the
:class:`~journal.reader.Cursor` the fold stopped at, and the identity of the file it was
computed from (``st_dev``, ``st_ino``, ``st_size``, ``st_mtime_ns``, taken with ``fstat``
before reading, so bytes appended during the read are picked up next time). A refresh:

* lists the runs with one directory scan and ``lstat``\\ s each file (no read);
* reuses an entry whose file identity is unchanged: a finished run is never read again;
* folds only the appended bytes of a grown non-terminal run, resuming from the saved fold
  state and cursor (the hash chain of the first new line proves the tail continues the
  bytes folded before);
* folds a run from its first byte when it is new, replaced (other inode), shorter than
  the saved cursor, rewritten in place (same size, other mtime), or a finished run that
  grew (late events).

The index is only a cache: deleting it loses nothing (the next refresh rebuilds it and
yields the same summaries). It lives in ``<root>/index/`` (0700) as :data:`SHARDS` files
(0600) keyed by a hash of the run id, so a change rewrites 1/64 of it. Each shard is
replaced atomically (temporary file, fsync, rename): a reader sees the old or the new
shard, never a mix. Two refreshers racing may each rename their own shard; both are valid
(every entry carries the identity it was computed at), the later rename wins, and an
entry that is stale is folded forward by the next refresh. The directory is not fsynced:
losing a rename to a power cut only leaves an older, still valid, shard.

This module imports neither pydantic nor the fold at start-up (they cost ~100 ms); they
are imported the first time a run actually has to be folded.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from journal.errors import CorruptLineError, JournalError
from journal.fsio import ensure_private_dir, open_regular

if TYPE_CHECKING:
    from journal.reader import Cursor, RunReader
    from journal.store import JsonlStore
    from projections.state import RunState

INDEX_DIR = "index"
"""The index's directory under the journal root."""

SHARDS = 64
FORMAT = "runjournal-history-index"
VERSION = 1
"""Bumped whenever the entry layout changes; shards of another version are ignored and rebuilt."""

RUN_SUFFIX = ".jsonl"
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "abandoned"})

# An entry is a list, the cheapest shape to parse. A finished run (or one whose journal is
# corrupt) needs only what proves its file unchanged, and its summary:
#   [st_dev, st_ino, st_size, st_mtime_ns, summary]
# a live run adds where its fold stopped and the fold state to resume from:
#   [..., summary, cursor offset, cursor line, cursor seq, cursor prev_hash, state]
_DEV, _INO, _SIZE, _MTIME, _SUMMARY, _OFFSET, _LINE, _SEQ, _PREV, _STATE = range(10)
_SHORT, _LONG = 5, 10
_RETRY = -1
"""A size no file has: an entry whose read failed for a passing reason (EACCES, EIO) is retried."""

Progress = Callable[[int, int], None]
"""``progress(folded, total)``: called while runs are being folded (not for reused entries)."""


class RunSummary(NamedTuple):
    """What ``history`` shows of a run, as plain JSON-ready values.

    Timestamps are ISO 8601 UTC strings exactly as :func:`orjson.dumps` writes a UTC
    ``datetime`` with ``OPT_UTC_Z`` (``2026-01-02T03:04:05.123456Z``; no fraction when it
    is zero); :func:`parse_time` turns them back into datetimes. ``last_activity`` is the
    latest step or item start/end (the run's own progress). ``late_events`` and
    ``anomalies`` are counts. ``error`` is the one-line reason the journal could not be
    read to its end (the other fields then describe the part before the bad line).

    A named tuple because history builds one per run, tens of thousands per call.
    """

    run_id: str
    status: str
    workflow: str | None
    reason: str | None
    started_at: str | None
    ended_at: str | None
    last_event_at: str | None
    last_activity: str | None
    host: str | None
    pid: int | None
    steps_done: int
    steps_total: int
    rerun_of: str | None
    events: int
    late_events: int
    anomalies: int
    error: str | None

    @property
    def is_terminal(self) -> bool:
        """Whether the run has a terminal event."""
        return self.status in TERMINAL_STATUSES

    def to_json(self) -> dict[str, Any]:
        """The summary as a dict with the field names above."""
        return dict(zip(self._fields, self))


SUMMARY_FIELDS = RunSummary._fields[1:]
"""The fields of :class:`RunSummary` an index entry stores (all but ``run_id``), in order."""


def _summary(run_id: str, row: list[Any]) -> RunSummary:
    return tuple.__new__(RunSummary, (run_id, *row))


def parse_time(text: str | None) -> datetime | None:
    """A :class:`RunSummary` timestamp as an aware UTC datetime."""
    return None if text is None else datetime.fromisoformat(text)


def _time_text(moment: datetime | None) -> str | None:
    return None if moment is None else orjson.dumps(moment, option=orjson.OPT_UTC_Z)[1:-1].decode()


def summary_row(state: RunState, error: str | None = None) -> list[Any]:
    """The :data:`SUMMARY_FIELDS` values of a folded state (``error``: why the fold stopped early)."""
    started = state.started
    writer = started.writer if started is not None else None
    return [
        state.status, state.workflow, state.reason, _time_text(state.started_at), _time_text(state.ended_at),
        _time_text(state.last_event_at), _time_text(_last_activity(state)),
        writer.host if writer else None, writer.pid if writer else None,
        state.steps_done, state.steps_total, started.rerun_of if started else None,
        state.events, len(state.late_events), len(state.anomalies), error,
    ]


def summarize(state: RunState, run_id: str | None = None, error: str | None = None) -> RunSummary:
    """The :class:`RunSummary` of a folded state (what the index would hold for it)."""
    return _summary(run_id or state.run_id or "", summary_row(state, error))


def _last_activity(state: RunState) -> datetime | None:
    times = [state.started_at] if state.started_at else []
    for step in state.steps.values():
        times += [t for t in (step.started_at, step.ended_at) if t is not None]
        times += [t for i in step.items.values() for t in (i.started_at, i.ended_at) if t is not None]
    return max(times, default=None)


def fold_tail(
    store: JsonlStore, run_id: str, state: RunState | None = None, cursor: Cursor | None = None
) -> tuple[RunState, RunReader]:
    """Fold the events of ``run_id`` after ``cursor`` onto ``state`` (from the start by default).

    Returns the new state and the exhausted reader (its ``cursor`` is where the next call
    resumes, its ``torn_tail`` any fragment after the last whole line). Raises what the
    reader raises (corrupt line, broken chain, missing file).
    """
    # Imported here: the fold pulls in pydantic, which a warm, unchanged index never needs.
    from projections.fold import fold

    reader = store.read(run_id, cursor)
    return fold(reader.events(), start=state), reader


class HistoryIndex:
    """The history read model of one store. Not thread-safe; use one per thread or process.

    ``save=False`` keeps everything in memory (a read-only journal root is detected and
    treated the same way; :attr:`problem` then says why nothing was saved).
    """

    def __init__(self, store: JsonlStore, *, save: bool = True, progress: Progress | None = None) -> None:
        self.store = store
        self.directory = Path(store.root) / INDEX_DIR
        self.save_enabled = save
        self.progress = progress
        self.problem: str | None = None
        self.counts = {"appended": 0, "refolded": 0}
        """How many runs the last passes folded from a saved cursor, and from their first byte."""
        self._shards: dict[int, dict[str, list[Any]]] = {}
        self._dirty: set[int] = set()

    # ---- reading ------------------------------------------------------------------------

    def summaries(self) -> Iterator[RunSummary]:
        """Every run's summary, newest first (run ids sort by time), folding only what changed.

        Streams: a run is checked (and folded if needed) when it is reached. The index is
        saved when the iteration ends, also when the caller stops early (``--limit``);
        entries of deleted runs are dropped only after a complete pass.
        """
        run_ids = sorted(self.store.run_ids(), reverse=True)
        total = len(run_ids)
        complete = False
        try:
            dir_fd = os.open(self.store.runs_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            for n, run_id in enumerate(run_ids):
                entry = self._current(run_id, dir_fd, n, total)
                if entry is not None:
                    yield _summary(run_id, entry[_SUMMARY])
            complete = True
        finally:
            os.close(dir_fd)
            if complete:
                self._prune(set(run_ids))
            self.save()

    def refresh(self) -> int:
        """Bring the whole index up to date and save it; return the number of runs."""
        return sum(1 for _ in self.summaries())

    def state(self, run_id: str) -> tuple[RunState, RunReader]:
        """The run's full, current fold state, from the saved state of a live run when there is one.

        Raises like :func:`fold_tail`. Finished runs keep only a summary in the index, so
        their state is folded from the file.
        """
        from journal.reader import Cursor
        from projections.state import state_from_json

        entry = self._shard(run_id).get(run_id)
        if entry is not None and len(entry) == _LONG:
            try:
                cursor = Cursor(entry[_OFFSET], entry[_LINE], entry[_SEQ], entry[_PREV])
                return fold_tail(self.store, run_id, state_from_json(entry[_STATE]), cursor)
            except (JournalError, ValueError, TypeError):
                pass  # a stale or damaged entry: fold from the start, which raises if the journal is bad
        return fold_tail(self.store, run_id)

    def states(self) -> Iterator[RunState]:
        """Every run's full state, newest first (slow: see :meth:`state`; listings use :meth:`summaries`)."""
        for summary in self.summaries():
            yield self.state(summary.run_id)[0]

    # ---- one run ------------------------------------------------------------------------

    def _current(self, run_id: str, dir_fd: int, n: int, total: int) -> list[Any] | None:
        """The up-to-date entry of ``run_id`` (None if its file vanished)."""
        shard_no = shard_of(run_id)
        shard = self._shards.get(shard_no)
        if shard is None:
            shard = self._shards[shard_no] = load_shard(self.directory, shard_no)
        entry = shard.get(run_id)
        try:
            info = os.stat(run_id + RUN_SUFFIX, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if entry is not None and entry[:4] == [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns]:
            return entry
        if self.progress is not None:
            self.progress(n, total)
        fresh = self._fold(run_id, entry, info)
        shard[run_id] = fresh
        self._dirty.add(shard_no)
        return fresh

    def _fold(self, run_id: str, old: list[Any] | None, info: os.stat_result) -> list[Any]:
        """Fold the run forward from ``old`` if its file only grew, else from the start."""
        if old is not None and _resumable(old, info):
            try:
                entry = _fold_entry(self.store, run_id, old, strict=True)
                self.counts["appended"] += 1
                return entry
            except (JournalError, OSError, ValueError, TypeError, KeyError):
                pass  # the tail does not continue what was folded (or the entry is damaged): start over
        self.counts["refolded"] += 1
        return _fold_entry(self.store, run_id, None, strict=False, info=info)

    # ---- storage ------------------------------------------------------------------------

    def _shard(self, run_id: str) -> dict[str, list[Any]]:
        number = shard_of(run_id)
        shard = self._shards.get(number)
        if shard is None:
            shard = self._shards[number] = load_shard(self.directory, number)
        return shard

    def _prune(self, present: set[str]) -> None:
        """Drop entries of runs whose files are gone (loading every shard on disk to find them)."""
        for number in range(SHARDS):
            if number not in self._shards and shard_path(self.directory, number).exists():
                self._shards[number] = load_shard(self.directory, number)
            shard = self._shards.get(number, {})
            gone = [run_id for run_id in shard if run_id not in present]
            for run_id in gone:
                del shard[run_id]
            if gone:
                self._dirty.add(number)

    def save(self) -> None:
        """Write every changed shard atomically; a journal root we cannot write to is not an error."""
        if not self._dirty or not self.save_enabled:
            return
        try:
            ensure_private_dir(self.directory)
            for number in sorted(self._dirty):
                write_shard(self.directory, number, self._shards.get(number, {}))
        except (OSError, JournalError) as exc:
            self.problem = f"history index not saved in {self.directory}: {exc}"
            return
        self._dirty.clear()


def shard_of(run_id: str) -> int:
    """Which shard holds ``run_id`` (stable across processes and Python versions)."""
    return zlib.crc32(run_id.encode()) % SHARDS


def shard_path(directory: Path, number: int) -> Path:
    """The file of shard ``number``."""
    return directory / f"runs-v{VERSION}-{number:02x}.json"


def load_shard(directory: Path, number: int) -> dict[str, list[Any]]:
    """The entries of a shard; a missing, unreadable, foreign or damaged shard is empty (it is rebuilt)."""
    try:
        fd = open_regular(shard_path(directory, number), os.O_RDONLY)
    except (OSError, JournalError):
        return {}
    try:
        with os.fdopen(fd, "rb") as file:
            data = orjson.loads(file.read())
    except (OSError, orjson.JSONDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        return {}
    runs = data.get("runs")
    if not isinstance(runs, dict):
        return {}
    return {run_id: entry for run_id, entry in runs.items() if _well_formed(entry)}


def _well_formed(entry: Any) -> bool:
    return (
        isinstance(entry, list)
        and len(entry) in (_SHORT, _LONG)
        and isinstance(entry[_SUMMARY], list)
        and len(entry[_SUMMARY]) == len(SUMMARY_FIELDS)
    )


def write_shard(directory: Path, number: int, entries: dict[str, list[Any]]) -> None:
    """Replace shard ``number`` atomically: a temporary 0600 file, fsync, rename."""
    data = orjson.dumps({"format": FORMAT, "version": VERSION, "shard": number, "runs": entries})
    tmp = directory / f".tmp-{number:02x}-{os.getpid()}-{os.urandom(6).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, shard_path(directory, number))
    except BaseException:
        if fd >= 0:
            os.close(fd)
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass




def _resumable(entry: list[Any], info: os.stat_result) -> bool:
    """Whether the file can only have had bytes appended (or a torn tail cut) since ``entry``."""
    if len(entry) != _LONG or entry[_DEV] != info.st_dev or entry[_INO] != info.st_ino:
        return False
    if info.st_size < entry[_OFFSET]:
        return False  # truncated into what was folded
    # The same size with another mtime is a rewrite in place, not an append.
    return info.st_size != entry[_SIZE]


def _fold_entry(
    store: JsonlStore, run_id: str, old: list[Any] | None, *, strict: bool, info: os.stat_result | None = None
) -> list[Any]:
    """Fold ``run_id`` (from ``old``'s state and cursor, or from the start) into a fresh entry.

    ``strict``: raise on a bad line; otherwise keep the state before it and record the error
    (cached until the file changes, since the same bytes give the same error).
    """
    from journal.reader import Cursor, RunReader
    from projections.fold import fold
    from projections.state import state_from_json, state_to_json

    try:
        path = store.path(run_id)
        fd = open_regular(path, os.O_RDONLY)
    except (OSError, JournalError) as exc:
        return _error_entry(run_id, info, exc)
    try:
        identity = os.fstat(fd)
        start = None if old is None else state_from_json(old[_STATE])
        cursor = None if old is None else Cursor(old[_OFFSET], old[_LINE], old[_SEQ], old[_PREV])
        reader = RunReader(path, run_id, cursor, fd=fd)
        errors: list[str] = []
        events = reader.events() if strict else _until_corrupt(reader, errors)
        state = fold(events, start=start)
    except OSError as exc:
        if strict:
            raise
        return _error_entry(run_id, info, exc)
    finally:
        os.close(fd)
    error = errors[0] if errors else None
    entry = [identity.st_dev, identity.st_ino, identity.st_size, identity.st_mtime_ns, summary_row(state, error)]
    if not state.is_terminal and error is None:
        c = reader.cursor
        entry += [c.offset, c.line, c.seq, c.prev_hash, state_to_json(state)]
    return entry


def _until_corrupt(reader: RunReader, errors: list[str]) -> Iterator[Any]:
    """The reader's events up to the first bad line, whose error is appended to ``errors``."""
    try:
        yield from reader.events()
    except CorruptLineError as exc:
        errors.append(str(exc))


def _error_entry(run_id: str, info: os.stat_result | None, exc: BaseException) -> list[Any]:
    """An entry for a run that could not be opened (unsafe path, permission): retried every refresh."""
    dev, ino = (info.st_dev, info.st_ino) if info is not None else (0, 0)
    row = ["empty", None, None, None, None, None, None, None, None, 0, 0, None, 0, 0, 0, str(exc)]
    return [dev, ino, _RETRY, 0, row]
