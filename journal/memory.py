"""The in-memory store: runs held in this process, for fast tests of code that writes or reads runs.

Like the in-memory recorder of the eventsourcing library, it keeps the real format (every
run is its exact JSONL lines, hash chain included, checked on every read) and the real
rules (one writer per run, refusals, reconciliation), with none of the durability: the runs
vanish with the process. It is written only against :mod:`runjournal.journal.store`, which
makes it the proof that the interface is the whole interface::

    from runjournal import MemoryStore, start_run

    store = MemoryStore()
    with start_run("deploy", steps=["build"], store=store) as run:
        run.step_started("build")

Ownership is a writer object: a run is owned while the writer that created or took it
over is open, and a writer that is closed (or whose run was taken over) is refused. A run's
"writer process" for liveness verdicts is the identity recorded in ``started``, observed
on this host as for the JSONL store. Step logs and cancel requests go to ``side_files``
(a directory under the system's temporary directory unless given).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runjournal.journal.anchors import AnchorCheck, finished_head
from runjournal.journal.codec import decode_line, encode_line
from runjournal.journal.errors import (
    AmbiguousRunIdError,
    CorruptLineError,
    RunExistsError,
    RunLockedError,
    RunNotFoundError,
    StoreUnavailableError,
    WriterFencedError,
)
from runjournal.journal.events import Abandoned, Started
from runjournal.journal.ids import validate_prefix, validate_run_id
from runjournal.journal.lines import RawLine
from runjournal.journal.liveness import HostFacts, observe_host
from runjournal.journal.readmodel import Folded, LiveFold, summary_of
from runjournal.journal.records import GENESIS_HASH, Anchor, Cursor, Record, check_sequence
from runjournal.journal.sidefiles import SideFiles
from runjournal.journal.status import TERMINAL_TYPES
from runjournal.journal.store import (
    Clock,
    Durability,
    LockedRun,
    Pruned,
    RunReader,
    RunWriter,
    Store,
    utc_now,
)
from runjournal.journal.verify import verify_lines

if TYPE_CHECKING:
    from runjournal.journal.events import Event, WriterIdentity
    from runjournal.journal.readmodel import HistoryQuery, Progress, Projector, RunSummary
    from runjournal.journal.verify import Problem

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Runs in this process's memory (see the module docstring). Thread-safe."""

    def __init__(self, side_files: Path | str | None = None) -> None:
        self.where = f"memory:{id(self):x}"
        root = side_files if side_files is not None else Path(tempfile.gettempdir()) / f"runjournal-{self.where[7:]}"
        self.side_files = SideFiles(root)
        self._lines: dict[str, list[bytes]] = {}
        self._owners: dict[str, MemoryRunWriter] = {}
        self._versions: dict[str, int] = {}
        self._cached: dict[str, tuple[int, list[Any]]] = {}  # run id -> (lines folded, summary row)
        self._live: dict[str, LiveFold] = {}  # runs the last listing yielded as not finished
        self._anchors: dict[str, list[Anchor]] = {}  # kept apart from the lines, as the JSONL anchor log is
        self._workflow_locks: dict[str, threading.Lock] = {}
        self._changed = threading.Condition()

    def location(self, run_id: str) -> str:
        """``memory:<id>#<run_id>``."""
        return f"{self.where}#{validate_run_id(run_id)}"

    def address(self) -> str:
        """Refused: no other process can open this store."""
        raise StoreUnavailableError(
            f"the in-memory store {self.where} lives in this process only; use a directory or a database "
            "for anything another process must open (a detached run, a CLI command)"
        )

    # -- create and append ------------------------------------------------------------

    def create(self, started: Started, *, durability: Durability = "state", clock: Clock = utc_now) -> RunWriter:
        """Store the run's ``started`` line and return its writer, which owns the run."""
        run_id = validate_run_id(started.run_id)
        line, digest = encode_line(started, GENESIS_HASH)
        with self._changed:
            if run_id in self._lines:
                raise RunExistsError(run_id)
            self._lines[run_id] = [line[:-1]]
            writer = MemoryRunWriter(self, run_id, Cursor(len(line), 2, 1, digest), durability, clock)
            self._owners[run_id] = writer
            self._bump(run_id)
        return writer

    def open_writer(self, run_id: str, *, durability: Durability = "state", clock: Clock = utc_now) -> RunWriter:
        """Take over a run nobody owns; RunLockedError while its writer is open."""
        with self._changed:
            self._refuse_if_owned(run_id)
            reader = MemoryRunReader(self, run_id, None)
            ended = False
            for record in reader:
                ended = ended or record.event.type in TERMINAL_TYPES
            writer = MemoryRunWriter(self, run_id, reader.cursor, durability, clock)
            writer.ended = ended
            self._owners[run_id] = writer
        return writer

    def _refuse_if_owned(self, run_id: str) -> None:
        self._require(run_id)
        if run_id in self._owners:
            pid, host = self._writer_of(run_id)
            raise RunLockedError(run_id, pid, host)

    def _writer_of(self, run_id: str) -> tuple[int | None, str | None]:
        try:
            event, _ = decode_line(self._lines[run_id][0], GENESIS_HASH)
        except ValueError:
            return None, None
        return (event.writer.pid, event.writer.host) if isinstance(event, Started) else (None, None)

    def _append_line(self, writer: MemoryRunWriter, event: Event, line: bytes) -> None:
        """Store one encoded line for ``writer``, which must still own the run at its seq."""
        with self._changed:
            lines = self._lines.get(writer.run_id)
            if lines is None or self._owners.get(writer.run_id) is not writer or len(lines) != event.seq:
                raise WriterFencedError(f"run {writer.run_id}: this writer no longer owns the run; the append was refused")
            lines.append(line)
            self._bump(writer.run_id)

    def _release(self, writer: MemoryRunWriter) -> None:
        with self._changed:
            if self._owners.get(writer.run_id) is writer:
                del self._owners[writer.run_id]

    def _bump(self, run_id: str) -> None:
        self._versions[run_id] = self._versions.get(run_id, 0) + 1
        self._changed.notify_all()

    # -- read -------------------------------------------------------------------------

    def read(self, run_id: str, cursor: Cursor | None = None) -> RunReader:
        """A reader of the run's lines from ``cursor``."""
        self._require(run_id)
        return MemoryRunReader(self, run_id, cursor)

    def _require(self, run_id: str) -> None:
        if validate_run_id(run_id) not in self._lines:
            raise RunNotFoundError(run_id, self.where)

    def _snapshot(self, run_id: str, start: int) -> list[bytes]:
        with self._changed:
            return self._lines[run_id][start:]

    def run_ids(self) -> Iterator[str]:
        """Every run id."""
        with self._changed:
            return iter(list(self._lines))

    def exists(self, run_id: str) -> bool:
        """Whether the run exists."""
        return validate_run_id(run_id) in self._lines

    def resolve(self, ref: str) -> str:
        """An id or a unique prefix of one, as a run id."""
        validate_prefix(ref)
        if ref in self._lines:
            return ref
        matches = sorted(run_id for run_id in self.run_ids() if run_id.startswith(ref))
        if not matches:
            raise RunNotFoundError(ref, self.where)
        if len(matches) > 1:
            raise AmbiguousRunIdError(ref, matches)
        return matches[0]

    # -- repair -----------------------------------------------------------------------

    @contextmanager
    def locked_run(self, run_id: str, resume: Cursor | None = None) -> Iterator[LockedRun]:
        """Own the run for the ``with`` block (RunLockedError while its writer is open); ``resume`` is not needed."""
        writer = self.open_writer(run_id)
        try:
            yield MemoryLockedRun(writer)
        finally:
            writer.close()

    # -- history ----------------------------------------------------------------------

    def summaries(
        self, query: HistoryQuery, projector: Projector, *, progress: Progress | None = None
    ) -> Iterator[RunSummary]:
        """Every run's summary, newest first; a run is folded again only after it grew."""
        run_ids = sorted(self.run_ids(), reverse=True)
        self._live = {}
        for position, run_id in enumerate(run_ids):
            lines = self._snapshot(run_id, 0)
            cached = self._cached.get(run_id)
            if cached is None or cached[0] != len(lines):
                if progress is not None:
                    progress(position, len(run_ids))
                cached = (len(lines), self._fold(run_id, projector))
                self._cached[run_id] = cached
            summary = summary_of(run_id, cached[1])
            if not summary.is_terminal and summary.error is None:
                self._live[run_id] = LiveFold(None, lambda run_id=run_id: self._fold_state(run_id, projector))
            if query.matches(summary):
                yield summary

    def take_fold(self, run_id: str) -> LiveFold | None:
        """The fold of a run the last listing yielded as not finished (folded when asked for), once."""
        return self._live.pop(run_id, None)

    def _fold_state(self, run_id: str, projector: Projector) -> Folded:
        reader = MemoryRunReader(self, run_id, None)
        return Folded(projector.fold(reader.events()), reader.cursor)

    def _fold(self, run_id: str, projector: Projector) -> list[Any]:
        errors: list[str] = []
        state = projector.fold(_until_corrupt(MemoryRunReader(self, run_id, None).events(), errors))
        return projector.row(state, errors[0] if errors else None)

    # -- follow -----------------------------------------------------------------------

    def watch(self, run_id: str, *, poll_seconds: float) -> Iterator[bool]:
        """True as soon as the run gets a line, False after ``poll_seconds`` without one."""
        seen = self._versions.get(run_id, 0)
        while True:
            with self._changed:
                grew = self._changed.wait_for(lambda: self._versions.get(run_id, 0) != seen, timeout=poll_seconds)
                seen = self._versions.get(run_id, 0)
            yield bool(grew)

    # -- liveness ---------------------------------------------------------------------

    def writer_facts(self, run_id: str, identity: WriterIdentity, *, lock_held: bool | None = None) -> HostFacts:
        """This host's facts about ``identity``; the "lock" is whether a writer object owns the run."""
        return observe_host(identity, self.writer_alive(run_id) if lock_held is None else lock_held)

    def writer_alive(self, run_id: str) -> bool:
        """Whether an open writer owns the run."""
        self._require(run_id)
        return run_id in self._owners

    # -- start ------------------------------------------------------------------------

    @contextmanager
    def workflow_lock(self, workflow: str) -> Iterator[None]:
        """A lock per workflow name, for this process."""
        with self._changed:
            lock = self._workflow_locks.setdefault(workflow, threading.Lock())
        with lock:
            yield

    # -- verify and transfer ----------------------------------------------------------

    def verify(self, run_id: str) -> Iterator[Problem]:
        """Every problem in the run's lines, anchors included."""
        self._require(run_id)
        return verify_lines(self._snapshot(run_id, 0), run_id, self.location(run_id), self.anchors(run_id))

    def anchors(self, run_id: str) -> list[Anchor]:
        """The heads anchored as the run finished (and after each late event)."""
        validate_run_id(run_id)
        with self._changed:
            return list(self._anchors.get(run_id, ()))

    def _anchor(self, run_id: str, head: Anchor) -> None:
        with self._changed:
            self._anchors.setdefault(run_id, []).append(head)

    def raw_lines(self, run_id: str) -> Iterator[bytes]:
        """The run's lines as stored."""
        self._require(run_id)
        return iter(self._snapshot(run_id, 0))

    def import_lines(self, run_id: str, lines: list[bytes]) -> None:
        """Store a whole, already verified run (stored as given: readers check it)."""
        validate_run_id(run_id)
        with self._changed:
            if run_id in self._lines:
                raise RunExistsError(run_id)
            self._lines[run_id] = list(lines)
            self._bump(run_id)
        head = finished_head(list(lines))
        if head is not None:
            self._anchor(run_id, head)

    # -- retention --------------------------------------------------------------------

    def prune(self, run_ids: Collection[str]) -> list[Pruned]:
        """Forget each finished run nobody owns."""
        return [self._prune_one(run_id) for run_id in sorted(set(run_ids))]

    def _prune_one(self, run_id: str) -> Pruned:
        with self._changed:
            if validate_run_id(run_id) not in self._lines:
                return Pruned(run_id, "missing")
            if run_id in self._owners:
                return Pruned(run_id, "locked")
            if not self._finished(run_id):
                return Pruned(run_id, "unfinished")
            for table in (self._lines, self._anchors, self._cached, self._versions, self._live):
                table.pop(run_id, None)  # type: ignore[attr-defined]
            self._changed.notify_all()
        return Pruned(run_id, "pruned")

    def _finished(self, run_id: str) -> bool:
        """Whether the run's lines hold a terminal event (read up to the first bad line)."""
        try:
            return any(event.type in TERMINAL_TYPES for event in MemoryRunReader(self, run_id, None).events())
        except CorruptLineError:
            return False


class MemoryRunWriter(RunWriter):
    """The writer that owns one run of a :class:`MemoryStore` while it is open."""

    def __init__(self, store: MemoryStore, run_id: str, cursor: Cursor, durability: Durability, clock: Clock) -> None:
        super().__init__(run_id, store.location(run_id), cursor, durability=durability, clock=clock)
        self.store = store

    def _write(self, event: Event) -> None:
        line, digest = encode_line(event, self.cursor.prev_hash)
        try:
            self.store._append_line(self, event, line[:-1])
        except WriterFencedError:
            self._refusal = "another writer took the run over"
            raise
        c = self.cursor
        self.cursor = Cursor(c.offset + len(line), c.line + 1, c.seq + 1, digest)

    def _record_anchor(self, head: Anchor) -> None:
        self.store._anchor(self.run_id, head)

    def close(self) -> None:
        """Give the run up."""
        with self._lock:
            self.store._release(self)
            self._refusal = self._refusal or "the writer is closed"


class MemoryRunReader(RunReader):
    """The run's lines from a cursor, each checked as a file reader checks it."""

    def __init__(self, store: MemoryStore, run_id: str, cursor: Cursor | None) -> None:
        self.store = store
        self.run_id = run_id
        self.cursor = cursor or Cursor()

    def __iter__(self) -> Iterator[Record]:
        where = self.store.location(self.run_id)
        anchors = AnchorCheck(self.store.anchors(self.run_id), where, self.cursor.seq)
        for data in self.store._snapshot(self.run_id, self.cursor.seq):
            cur = self.cursor
            raw = RawLine(cur.line, cur.offset, data)
            event, digest = decode_line(data, cur.prev_hash, path=where, line_no=cur.line, offset=cur.offset)
            check_sequence(event, raw, self.run_id, cur.seq, where)
            anchors.check_line(cur.seq, digest, raw.end, raw.line_no, raw.offset)
            self.cursor = Cursor(raw.end, cur.line + 1, cur.seq + 1, digest)
            yield Record(event, raw.line_no, raw.offset, raw.end)
        anchors.finish(self.cursor)


class MemoryLockedRun(LockedRun):
    """A run owned for reconciliation (no torn tails in memory)."""

    writer: MemoryRunWriter

    def _records(self, after: Cursor | None = None) -> Iterator[Record]:
        return iter(MemoryRunReader(self.writer.store, self.writer.run_id, after))

    def append_abandoned(self, **fields: Any) -> Abandoned:
        """Append ``abandoned`` (``fields``: all but the envelope); refuse a terminal or empty run."""
        self.check_reconcilable()
        return self.writer.append(Abandoned, tail_quarantined=None, **fields)  # type: ignore[return-value]


def _until_corrupt(events: Iterator[Event], errors: list[str]) -> Iterator[Event]:
    try:
        yield from events
    except CorruptLineError as exc:
        errors.append(str(exc))

