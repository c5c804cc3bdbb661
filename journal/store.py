"""The store interface: every capability the CLI and the projections use, as abstract base classes.

A store is where runs live. Three implement this module and nothing else:
:class:`~runjournal.journal.jsonl.JsonlStore` (one JSONL file per run, the default),
:class:`~runjournal.journal.postgres.PgStore` (one database for many hosts) and
:class:`~runjournal.journal.memory.MemoryStore` (one process, for tests). Code outside a
store's own modules talks to a store only through what is named here, and never asks which
kind it has. ``runjournal.journal.testing.contract`` is the suite every store passes.

The capabilities, grouped as a caller needs them:

* **create and append**: :meth:`Store.create` writes a run's ``started`` event and returns the
  :class:`RunWriter` that owns the run; appends continue the hash chain; a second writer is
  refused.
* **read**: :meth:`Store.read` streams a run's events from a :class:`Cursor`;
  :meth:`Store.run_ids`, :meth:`Store.exists`, :meth:`Store.resolve` list and find runs.
  :meth:`Store.read_plain` streams them as plain JSON objects and :meth:`Store.project`
  gives a run's fold: both checked as ``read`` checks, but a store may skip re-checking
  what it verified before (the JSONL store does: verify once, then read at orjson speed).
* **repair**: :meth:`Store.locked_run` holds a dead writer's run for reconciliation (its
  :class:`LockedRun` appends ``abandoned``); :meth:`Store.open_writer` takes a run over.
* **history**: :meth:`Store.summaries` is the history read model (summaries newest first,
  with the :class:`~runjournal.journal.readmodel.HistoryQuery` filters the store can push
  down), folded with the projector the caller supplies; :meth:`Store.take_fold` hands over
  what it learned of a run that is not finished, so reconciling it reads nothing twice.
* **follow**: :meth:`Store.watch` says when a run may have grown.
* **liveness**: :meth:`Store.writer_facts` observes what a verdict on the run's writer needs.
* **start**: :meth:`Store.workflow_lock` serialises "is a run of this workflow live? start one".
* **verify and transfer**: :meth:`Store.verify` checks every line and the run's anchors;
  :meth:`Store.raw_lines` and :meth:`Store.import_lines` move a run's exact lines between stores.
* **anchors**: :meth:`Store.anchors` are the heads a run had when it finished (and after
  each late event), recorded outside its lines by its writer; every reader checks them
  (:mod:`runjournal.journal.anchors`), so a finished run cut short or rewritten is refused.
* **retention**: :meth:`Store.prune` deletes finished runs (archiving them first is the
  caller's business: :mod:`runjournal.projections.prune`).
* **side files**: :attr:`Store.side_files` is this host's directory for step logs and cancel
  requests, whatever the store.

This module imports no event model at run time (only for annotations), so a read that
finds nothing to fold never pays for pydantic.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from runjournal.journal.errors import (
    CorruptLineError,
    JournalError,
    NotReconcilableError,
    StoreUnavailableError,
    WriterClosedError,
)
from runjournal.journal.records import Anchor, Cursor, Record
from runjournal.journal.sidefiles import SideFiles
from runjournal.journal.status import TERMINAL_TYPES

if TYPE_CHECKING:
    from runjournal.journal.events import Abandoned, Cancelled, Event, Started, WriterIdentity
    from runjournal.journal.lines import TornTail
    from runjournal.journal.liveness import WriterFacts
    from runjournal.journal.readmodel import HistoryQuery, LiveFold, Progress, Projector, RunSummary
    from runjournal.journal.verify import Problem

__all__ = [
    "Anchor", "Clock", "Cursor", "Durability", "LockedRun", "Projection", "Pruned", "Record", "RunReader",
    "RunWriter", "SideFiles", "Store", "utc_now",
]

Durability = Literal["state", "all", "none"]
"""What an append waits for (``docs/format.md``): ``state`` syncs every state-changing event,
``all`` heartbeats too, ``none`` nothing (a process crash still loses nothing the store accepted)."""

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The default clock: now, in UTC."""
    return datetime.now(UTC)


PruneOutcome = Literal["pruned", "unfinished", "locked", "missing"]
"""What :meth:`Store.prune` did with one run: ``pruned`` (deleted); ``unfinished`` (no terminal
event in its lines, or lines that cannot be read to one: never deleted); ``locked`` (a process holds the run's lock: a writer that may still
append late events, or a reconciler); ``missing`` (no such run)."""


class Pruned(NamedTuple):
    """The outcome of pruning one run."""

    run_id: str
    outcome: PruneOutcome


class Projection(NamedTuple):
    """A run's fold as :meth:`Store.project` gives it."""

    state: Any
    cursor: Cursor
    """Where the lines folded end (just before the first bad line of a damaged run)."""
    damage: CorruptLineError | None = None
    """The first bad line's error, if the run has one (``state`` is the fold of the lines before it)."""


class RunReader(ABC):
    """A run's events from a cursor; afterwards :attr:`cursor` and :attr:`torn_tail` tell where it ended.

    Iterating yields :class:`Record` s, each line checked (hash chain, sequence, run id); a
    bad line raises :class:`~runjournal.journal.errors.CorruptLineError` naming where it is.
    """

    run_id: str
    cursor: Cursor
    torn_tail: TornTail | None = None
    """A final fragment without its newline (JSONL only: a database row is whole or absent)."""

    @abstractmethod
    def __iter__(self) -> Iterator[Record]:
        """Yield the records after :attr:`cursor`, advancing it past each one."""

    def events(self) -> Iterator[Event]:
        """Iterate only the events."""
        return (record.event for record in self)


class RunWriter(ABC):
    """The single writer of a run: appends events with the next seq, continuing the hash chain.

    Thread-safe (the workflow runner heartbeats from a second thread). A store's writer
    implements :meth:`_write`; once it refuses (a failed fsync, a lost lock) it refuses for
    good, because what reached the store after that can no longer be vouched for.

    After a terminal event, and after every event appended once the run has ended (late
    events), the writer anchors the run's new head (:meth:`_record_anchor`), if that event
    is durable (:meth:`_durable`): an anchor must never outlive, in a power cut, the line
    it anchors. A store that takes a writer role over an ended run sets :attr:`ended`.
    """

    def __init__(self, run_id: str, location: str, cursor: Cursor, *, durability: Durability, clock: Clock) -> None:
        self.run_id = run_id
        self.location = location
        """Where the run is, for messages (a file, or ``URL#run_id``)."""
        self.cursor = cursor
        self.durability: Durability = durability
        self._clock = clock
        self._lock = threading.Lock()
        self._refusal: str | None = None
        self.ended = False
        """Whether the run has a terminal event (from here on every append is anchored)."""
        self.anchor_problem: str | None = None
        """Why the last anchor could not be recorded (the event itself was written; the next
        reader that verifies the run anchors it)."""

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next appended event gets."""
        return self.cursor.seq

    def append(self, event_cls: type[Any], **fields: Any) -> Event:
        """Build an event of ``event_cls`` with the next seq and the current time, append it and return it."""
        with self._lock:
            event = event_cls(run_id=self.run_id, seq=self.cursor.seq, ts=self._clock(), **fields)
            self._append_locked(event)
            return event  # type: ignore[no-any-return]

    def append_event(self, event: Event) -> Event:
        """Append a fully built event (importers); its ``run_id`` and ``seq`` must continue the run."""
        with self._lock:
            if event.run_id != self.run_id or event.seq != self.cursor.seq:
                raise ValueError(
                    f"event {event.run_id}#{event.seq} does not continue run {self.run_id} at seq {self.cursor.seq}"
                )
            self._append_locked(event)
            return event

    def _append_locked(self, event: Event) -> None:
        if self._refusal is not None:
            raise WriterClosedError(f"refusing to append to {self.location}: {self._refusal}")
        self._write(event)
        if self.ended or event.type in TERMINAL_TYPES:
            self.ended = True
            if self._durable(event):
                self._anchor_head()

    def _anchor_head(self) -> None:
        head = Anchor(self.cursor.seq - 1, self.cursor.prev_hash, self.cursor.offset)
        try:
            self._record_anchor(head)
        except (JournalError, OSError) as exc:
            # The event is durable; failing the append now would tell the caller it was not.
            self.anchor_problem = str(exc)
        else:
            self.anchor_problem = None

    @abstractmethod
    def _write(self, event: Event) -> None:
        """Persist ``event`` as the run's next line and advance :attr:`cursor` (the writer's lock is held)."""

    def _durable(self, event: Event) -> bool:
        """Whether ``event`` survives a power cut now that it is written (so its head may be anchored)."""
        return True

    def _record_anchor(self, head: Anchor) -> None:  # noqa: B027 - optional: a store that keeps no anchors
        """Record ``head`` as an anchor of the run, outside its lines (see :meth:`Store.anchors`).

        The default records nothing: a store that does not anchor (yet) keeps its runs as
        the hash chain alone protects them.
        """

    @abstractmethod
    def close(self) -> None:
        """Give up the run: release its lock (the store does so too if the process dies)."""

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LockedRun(ABC):
    """A run whose writer lock this process holds, opened to repair it and append once (reconciliation)."""

    def __init__(self, writer: RunWriter) -> None:
        self.writer = writer
        self.terminal_seen: bool | None = None

    @property
    def torn_tail(self) -> TornTail | None:
        """The fragment after the last whole line, if the run ends in one (JSONL only)."""
        return None

    @abstractmethod
    def _records(self, after: Cursor | None = None) -> Iterator[Record]:
        """The run's records (after ``after``, if given), read through the lock holder's own handle."""

    def events(self, after: Cursor | None = None) -> Iterator[Event]:
        """Read the run's events and note whether one is terminal.

        ``after``: read only the events after that cursor (the caller folded the rest and
        knows it holds no terminal event).
        """
        self.terminal_seen = False
        for record in self._records(after):
            self.terminal_seen = self.terminal_seen or record.event.type in TERMINAL_TYPES
            yield record.event

    def check_reconcilable(self) -> None:
        """Raise :class:`NotReconcilableError` if the run has a terminal event or no ``started`` event."""
        if self.terminal_seen is None:
            for _ in self.events():
                pass
        if self.terminal_seen:
            raise NotReconcilableError(f"run {self.writer.run_id} already has a terminal event")
        if self.writer.next_seq == 0:
            raise NotReconcilableError(f"run {self.writer.run_id} has no 'started' event; nothing to abandon")

    @abstractmethod
    def append_abandoned(self, **fields: Any) -> Abandoned:
        """Repair what the store needs repaired (a torn tail), then append and sync ``abandoned``.

        ``fields`` are the Abandoned fields other than the envelope and ``tail_quarantined``.
        Raises :class:`NotReconcilableError` for a terminal run or one without ``started``.
        """

    def append_cancelled(self, by: str, reason: str | None, evidence: dict[str, Any]) -> Cancelled:
        """Repair what the store needs repaired (noted in ``evidence``), then append and sync ``cancelled``.

        For a canceller that stopped what a gone writer left running (``runjournal cancel``).
        On a terminal run it is a late event, which changes no status: that is how a kill
        after ``abandoned`` is documented. Raises :class:`NotReconcilableError` for a run
        without ``started``.
        """
        from runjournal.journal.events import Cancelled

        if self.writer.next_seq == 0:
            raise NotReconcilableError(f"run {self.writer.run_id} has no 'started' event; nothing to cancel")
        repaired = self._repair_tail()
        if repaired is not None:
            evidence = evidence | {"tail_quarantined": repaired}
        return self.writer.append(Cancelled, by=by, reason=reason, evidence=evidence)  # type: ignore[no-any-return]

    def _repair_tail(self) -> dict[str, Any] | None:
        """Make the run safe to append to (a JSONL torn tail moved aside); describe what was moved, if anything."""
        return None


class Store(ABC):
    """A place runs live in (see the module docstring for the capabilities, grouped)."""

    where: str
    """Where the runs are, for messages (a directory, or a URL without its password)."""

    side_files: SideFiles
    """This host's directory for step logs, cancel requests and supervisor output."""

    # -- create and append ------------------------------------------------------------

    @abstractmethod
    def create(self, started: Started, *, durability: Durability = "state", clock: Clock = utc_now) -> RunWriter:
        """Write the run's ``started`` event and return its writer, which owns the run.

        Raises :class:`~runjournal.journal.errors.RunExistsError` if the id is taken.
        """

    @abstractmethod
    def open_writer(self, run_id: str, *, durability: Durability = "state", clock: Clock = utc_now) -> RunWriter:
        """Take the writer role of an existing run whose writer is gone (reconcilers, importers).

        Raises :class:`~runjournal.journal.errors.RunLockedError` while someone owns the run.
        """

    # -- read -------------------------------------------------------------------------

    @abstractmethod
    def read(self, run_id: str, cursor: Cursor | None = None) -> RunReader:
        """A reader of ``run_id`` from ``cursor`` (the start by default); raises RunNotFoundError."""

    def read_plain(self, run_id: str) -> Iterator[dict[str, Any]]:
        """``run_id``'s events as plain objects (:mod:`runjournal.journal.plain`), checked as :meth:`read` checks them.

        The default dumps each model a strict read gives; a store may read what it verified
        before without checking it again (its docs say what it then relies on).
        """
        from runjournal.journal.plain import to_plain

        return (to_plain(record.event) for record in self.read(run_id))

    def project(self, run_id: str, projector: Projector) -> Projection:
        """The fold by ``projector`` of ``run_id``'s events up to the first bad line (all of them, if none is).

        The :class:`Projection` says where the fold stopped and, for a damaged run, why.
        Raises what :meth:`read` raises for a run that cannot be opened. The default folds a
        strict read; a store may answer from a fold it kept, as long as the run is unchanged
        since.
        """
        reader = self.read(run_id)
        failures: list[CorruptLineError] = []

        def events() -> Iterator[Event]:
            try:
                yield from reader.events()
            except CorruptLineError as exc:
                failures.append(exc)

        state = projector.fold(events())
        return Projection(state, reader.cursor, failures[0] if failures else None)

    @abstractmethod
    def run_ids(self) -> Iterator[str]:
        """Every run id, in no particular order."""

    @abstractmethod
    def exists(self, run_id: str) -> bool:
        """Whether a run with exactly this id exists (the id is validated first)."""

    @abstractmethod
    def resolve(self, ref: str) -> str:
        """A run id, or a unique prefix of one, as a run id (like git); raises on none or several."""

    @abstractmethod
    def location(self, run_id: str) -> str:
        """Where the run is, for messages and ``--json`` output (its file, or ``URL#run_id``)."""

    # -- repair -----------------------------------------------------------------------

    @abstractmethod
    def locked_run(self, run_id: str, resume: Cursor | None = None) -> AbstractContextManager[LockedRun]:
        """Hold ``run_id``'s writer lock for a ``with`` block, to repair and reconcile it.

        ``resume``: a cursor up to which the caller has read the run (and checked it); a
        store that must scan the run before appending scans only what follows it.

        Raises :class:`~runjournal.journal.errors.RunLockedError` if a live writer or another
        reconciler holds it, and a :class:`~runjournal.journal.errors.JournalWriteError` that
        :func:`~runjournal.journal.errors.is_read_only_error` recognises if the run cannot be
        written by this process.
        """

    # -- history ----------------------------------------------------------------------

    @abstractmethod
    def summaries(
        self, query: HistoryQuery, projector: Projector, *, progress: Progress | None = None
    ) -> Iterator[RunSummary]:
        """The history read model: each run's summary, newest first, folding only what changed.

        Yields at least every run whose *recorded* summary passes ``query`` (a store may push
        the filters down, or yield more: callers filter again). The summaries are folded by
        ``projector``; the cache behind them is disposable and rebuilt from the runs.
        """

    @abstractmethod
    def take_fold(self, run_id: str) -> LiveFold | None:
        """Hand over, once, what the last :meth:`summaries` learned of ``run_id``, yielded as not finished.

        None when the store kept nothing for it (not yielded, finished, already taken, or a
        store without such a cache): the caller then reads the run itself.
        """

    # -- follow -----------------------------------------------------------------------

    @abstractmethod
    def watch(self, run_id: str, *, poll_seconds: float) -> Iterator[bool]:
        """Yield True when the run may have grown, False after ``poll_seconds`` without news (forever)."""

    # -- liveness ---------------------------------------------------------------------

    @abstractmethod
    def writer_facts(self, run_id: str, identity: WriterIdentity, *, lock_held: bool | None = None) -> WriterFacts:
        """What this process can observe about the run's writer ``identity``, with no verdict.

        Pass ``lock_held=False`` when the caller itself holds the run's lock (taking it proved
        that nobody else did).
        """

    @abstractmethod
    def writer_alive(self, run_id: str) -> bool:
        """Whether some process owns the run right now (holds its writer lock)."""

    # -- start ------------------------------------------------------------------------

    @abstractmethod
    def workflow_lock(self, workflow: str) -> AbstractContextManager[None]:
        """Hold the lock of ``workflow`` (seen by every process that can start it) while inside."""

    # -- verify and transfer ----------------------------------------------------------

    @abstractmethod
    def verify(self, run_id: str) -> Iterator[Problem]:
        """Every problem in the run's lines (hash chain, sequence, framing, and its anchor), with where it is."""

    @abstractmethod
    def raw_lines(self, run_id: str) -> Iterator[bytes]:
        """The run's whole lines exactly as stored, each without its newline (a torn tail left out)."""

    @abstractmethod
    def import_lines(self, run_id: str, lines: list[bytes]) -> None:
        """Store a whole, already verified run; raises RunExistsError if the id is taken.

        A finished run is anchored as it is stored.
        """

    # -- anchors ----------------------------------------------------------------------

    @abstractmethod
    def anchors(self, run_id: str) -> list[Anchor]:
        """The heads anchored for ``run_id`` outside its lines, oldest first (empty while it runs).

        Readers check them (:class:`~runjournal.journal.anchors.AnchorCheck`): every anchored
        line must still be there with its hash, at its offset.
        """

    # -- retention --------------------------------------------------------------------

    @abstractmethod
    def prune(self, run_ids: Collection[str]) -> list[Pruned]:
        """Delete each of ``run_ids`` that is finished and that nobody holds the lock of; say what happened to each.

        Checked against the runs themselves under each run's lock (a terminal event in its
        lines), never against a cached summary: a run that is not finished is never deleted.
        Everything the store keeps of a run goes (its lines, its read-model entries, a
        quarantined torn tail); the host's side files are the caller's.
        """

    # -- sharing ----------------------------------------------------------------------

    @abstractmethod
    def address(self) -> str:
        """What :func:`runjournal.journal.stores.open_store` needs to open this store in another process.

        May hold a secret (a database password): pass it through the environment, never argv.
        Raises :class:`~runjournal.journal.errors.StoreUnavailableError` for a store that lives
        in this process only.
        """

    def identity(self) -> str:
        """What tells this store apart from every other, however it was named (compare two stores with it).

        The default is the store's kind and :meth:`address` (a JSONL store's resolved
        directory); a store reachable under several names (a database by host alias) says
        which one it is; a store of this process only is itself.
        """
        try:
            return f"{type(self).__name__}:{self.address()}"
        except StoreUnavailableError:
            return f"{type(self).__name__}:{id(self)}"

    def close(self) -> None:
        """Release what the store holds open (connections); a no-op by default."""
