"""The store contract: what every store (JSONL files, PostgreSQL) must do, run against both."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from runjournal.journal.errors import (
    AmbiguousRunIdError,
    CorruptLineError,
    IntegrityError,
    InvalidRunIdError,
    JournalError,
    JournalWriteError,
    NotReconcilableError,
    RunExistsError,
    RunLockedError,
    RunNotFoundError,
    SequenceError,
    WriterClosedError,
    WriterFencedError,
)
from runjournal.journal.events import AbandonReason, Heartbeat, StepProgress, WriterIdentity
from runjournal.journal.identity import writer_identity
from runjournal.journal.pgstore import PgStore
from runjournal.journal.reader import Cursor
from runjournal.journal.run import Run, start_run
from runjournal.journal.store import JsonlStore, Store
from runjournal.journal.stores import open_store
from runjournal.journal.testing import DEFAULT_RUN_ID, make_checker, make_identity, make_started, make_stream
from runjournal.journal.testing.builders import exited_writer_identity, raw_stream_lines, ticking_clock
from runjournal.projections.fold import fold
from runjournal.projections.reconcile import current_state, reconcile_run

RID = DEFAULT_RUN_ID
LOCK_RELEASE_TIMEOUT = 5.0
"""PostgreSQL releases a closed session's advisory lock asynchronously: poll this long at most."""
EXPECTED_ABANDON_REASON = {
    "host": AbandonReason.ORIGINATING_PROCESS_NOT_ALIVE,  # JSONL: the recorded pid is gone, the flock free
    "server": AbandonReason.WRITER_SESSION_ENDED,  # PostgreSQL: the server released the session lock
}


@pytest.fixture(params=["jsonl", "postgres"], ids=["jsonl", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store of each kind."""
    if request.param == "jsonl":
        yield JsonlStore(request.getfixturevalue("journal_dir"))
        return
    pg = PgStore(request.getfixturevalue("pg_url"), local_root=tmp_path / "local")
    yield pg
    pg.close()


@pytest.fixture
def reopen(store: Store) -> Iterator[Callable[[], Store]]:
    """Make another store object on the same runs (for PostgreSQL: another session)."""
    made: list[Store] = []

    def make() -> Store:
        made.append(JsonlStore(store.root) if isinstance(store, JsonlStore) else PgStore(store.url))
        return made[-1]

    yield make
    for other in made:
        getattr(other, "close", lambda: None)()


@pytest.fixture
def both(journal_dir: Path, pg_url: str, tmp_path: Path) -> Iterator[tuple[JsonlStore, PgStore]]:
    """One empty store of each kind, for comparing them."""
    pg = PgStore(pg_url, local_root=tmp_path / "local")
    yield JsonlStore(journal_dir), pg
    pg.close()


@pytest.fixture(scope="module")
def dead_identity() -> WriterIdentity:
    """A writer identity on this host whose process has exited."""
    return exited_writer_identity()


def writer_alive_after_close(store: Store, run_id: str) -> bool:
    """``writer_alive`` once it says False, or its last answer after :data:`LOCK_RELEASE_TIMEOUT`."""
    deadline = time.monotonic() + LOCK_RELEASE_TIMEOUT
    while store.writer_alive(run_id) and time.monotonic() < deadline:
        time.sleep(0.01)
    return store.writer_alive(run_id)


def begin(store: Store, run_id: str = RID, identity: WriterIdentity | None = None) -> Run:
    """Start a run on a fixed clock and identity, with the first step started."""
    run = start_run("wf", ["build", "test"], store=store, run_id=run_id, identity=identity or make_identity(),
                    clock=ticking_clock(), durability="none")
    run.step_started("build")
    return run


def write_run(store: Store, run_id: str = RID) -> None:
    """A deterministic finished run (5 events), its writer closed and its lock released."""
    run = begin(store, run_id)
    run.step_succeeded("build", exit_code=0)
    run.heartbeat()
    run.succeed()
    run.close()
    assert writer_alive_after_close(store, run_id) is False


def make_run(store: Store, run_id: str) -> None:
    """A run of just ``started``, its writer closed."""
    store.create(make_started(run_id), durability="none").close()


def stream_lines(run_id: str = RID, terminal: str | None = "succeeded") -> list[bytes]:
    """A valid run's lines, without newlines, as ``raw_lines`` gives them."""
    return raw_stream_lines(make_stream(run_id, terminal=terminal))


def replace_line(store: Store, run_id: str, seq: int, data: bytes) -> None:
    """Overwrite one stored line behind the store's back (a disk or DBA accident)."""
    if isinstance(store, PgStore):
        store.connection.execute("UPDATE rj_events SET line = %s WHERE run_id = %s AND seq = %s", (data, run_id, seq))
        return
    lines = list(store.raw_lines(run_id))
    lines[seq] = data
    store.path(run_id).write_bytes(b"".join(line + b"\n" for line in lines))


def seqs(store: Store, run_id: str = RID) -> list[int]:
    return [event.seq for event in store.read(run_id).events()]


# ---------------------------------------------------------------------- create, append, read


def test_create_writes_started_at_seq_zero(store: Store) -> None:
    """``create`` stores exactly its ``started`` event at seq 0 and returns a writer whose next seq is 1."""
    started = make_started(RID)
    with store.create(started, durability="none") as writer:
        assert writer.next_seq == 1
        assert list(store.read(RID).events()) == [started]
        assert store.exists(RID)


def test_appends_get_consecutive_seqs_read_in_order(store: Store) -> None:
    """Appends get seqs 1, 2, ... and ``read`` yields them in order, each record ending where its line's newline does."""
    write_run(store)
    records = list(store.read(RID))
    assert [r.event.seq for r in records] == [0, 1, 2, 3, 4]
    assert [r.event.type for r in records] == ["started", "step-progress", "step-progress", "heartbeat", "succeeded"]
    ends = list(itertools.accumulate(len(line) + 1 for line in store.raw_lines(RID)))
    assert [r.end for r in records] == ends
    assert [r.line_no for r in records] == [1, 2, 3, 4, 5]
    assert [r.offset for r in records] == [0, *ends[:-1]]


def test_read_checks_the_hash_chain(store: Store) -> None:
    """``read`` ends on the last line's hash, and a line changed after it was written raises IntegrityError there."""
    write_run(store)
    lines = list(store.raw_lines(RID))
    reader = store.read(RID)
    assert len(list(reader)) == 5
    assert reader.cursor.prev_hash == json.loads(lines[-1])["h"]
    replace_line(store, RID, 2, lines[2].replace(b'"build"', b'"bxild"'))
    with pytest.raises(IntegrityError) as info:
        list(store.read(RID))
    assert (info.value.line, info.value.offset) == (3, len(lines[0]) + len(lines[1]) + 2)


def test_read_resumes_exactly_after_a_cursor(store: Store) -> None:
    """A cursor from a partly consumed reader resumes a new reader at the next event, including events appended since."""
    run = begin(store)
    run.step_succeeded("build", exit_code=0)
    first = store.read(RID)
    records = iter(first)
    head = [next(records), next(records)]
    records.close()  # type: ignore[attr-defined]
    lines = list(store.raw_lines(RID))
    assert first.cursor == Cursor(len(lines[0]) + len(lines[1]) + 2, 3, 2, json.loads(lines[1])["h"])
    run.heartbeat()
    run.close()
    rest = list(store.read(RID, first.cursor))
    assert [r.event.seq for r in rest] == [2, 3]
    assert rest[0].offset == first.cursor.offset
    assert head + rest == list(store.read(RID))


def test_same_events_give_identical_lines_and_cursors(both: tuple[JsonlStore, PgStore]) -> None:
    """The same run (fixed clock, identity, id) has byte-identical lines, records and cursors in both stores."""
    jsonl, pg = both
    write_run(jsonl)
    write_run(pg)
    lines = list(jsonl.raw_lines(RID))
    assert list(pg.raw_lines(RID)) == lines
    assert jsonl.path(RID).read_bytes() == b"".join(line + b"\n" for line in lines)
    readers = [jsonl.read(RID), pg.read(RID)]
    assert list(readers[0]) == list(readers[1])
    assert readers[0].cursor == readers[1].cursor
    assert readers[1].cursor.offset == sum(len(line) + 1 for line in lines)


# ------------------------------------------------------------------------------------- import


def test_import_lines_round_trips_between_stores(both: tuple[JsonlStore, PgStore]) -> None:
    """Lines exported from either store and imported into the other read back identical, lines and events."""
    jsonl, pg = both
    write_run(jsonl, "from-jsonl")
    write_run(pg, "from-pg")
    for source, target, run_id in ((jsonl, pg, "from-jsonl"), (pg, jsonl, "from-pg")):
        lines = list(source.raw_lines(run_id))
        target.import_lines(run_id, lines)
        assert list(target.raw_lines(run_id)) == lines
        assert list(target.read(run_id).events()) == list(source.read(run_id).events())
        assert target.writer_alive(run_id) is False


def test_import_of_an_existing_id_raises_run_exists(store: Store) -> None:
    """Importing lines under an id the store already has raises RunExistsError and leaves the run unchanged."""
    write_run(store)
    before = list(store.raw_lines(RID))
    with pytest.raises(RunExistsError):
        store.import_lines(RID, stream_lines(terminal="failed"))
    assert list(store.raw_lines(RID)) == before


@pytest.mark.parametrize(
    ("damage", "error"), [("broken-chain", IntegrityError), ("wrong-run-id", SequenceError)], ids=["chain", "run_id"]
)
def test_import_of_damaged_lines(store: Store, damage: str, error: type[CorruptLineError]) -> None:
    """Damaged lines raise the CorruptLineError subclass naming the damage: PostgreSQL at import, JSONL at read."""
    if damage == "broken-chain":
        lines = stream_lines()
        lines[2] = lines[2].replace(b'"build"', b'"bxild"')
    else:
        lines = stream_lines("some-other-run")
    if isinstance(store, PgStore):
        with pytest.raises(error):
            store.import_lines(RID, lines)
        assert not store.exists(RID) and list(store.run_ids()) == []
        return
    # JsonlStore.import_lines trusts already verified input (its docstring) and does not
    # validate: the damage is stored as given and caught by the reader.
    store.import_lines(RID, lines)
    with pytest.raises(error):
        list(store.read(RID))


# ------------------------------------------------------------------------- ids and lookup


@pytest.mark.parametrize("first_writer", ["open", "closed"])
def test_create_of_an_existing_id_raises_run_exists(store: Store, reopen: Callable[[], Store], first_writer: str) -> None:
    """A second ``create`` of a run id from another store object raises RunExistsError, whether or not the first writer is open."""
    writer = store.create(make_started(RID), durability="none")
    if first_writer == "closed":
        writer.close()
    with pytest.raises(RunExistsError):
        reopen().create(make_started(RID, workflow="other"), durability="none")
    assert [e.workflow for e in store.read(RID).events()] == ["wf"]  # type: ignore[attr-defined]
    writer.close()


def test_missing_run_raises_not_found(store: Store) -> None:
    """``read``, ``open_writer`` and ``resolve`` of a run that does not exist raise RunNotFoundError."""
    make_run(store, "present")
    for call in (store.read, store.open_writer, store.resolve):
        with pytest.raises(RunNotFoundError):
            call("absent")
    assert not store.exists("absent")


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "x\x00y"], ids=["dotdot", "slash", "empty", "dot", "nul"])
def test_hostile_run_ids_are_refused(store: Store, bad: str) -> None:
    """Ids that could name a path outside the store raise InvalidRunIdError from every entry point and create nothing."""
    calls: list[Callable[[], Any]] = [
        lambda: store.read(bad),
        lambda: store.resolve(bad),
        lambda: store.open_writer(bad),
        lambda: store.create(make_started().model_copy(update={"run_id": bad})),
        lambda: store.import_lines(bad, stream_lines()),
    ]
    for call in calls:
        with pytest.raises(InvalidRunIdError):
            call()
    assert list(store.run_ids()) == []


def test_resolve_exact_unique_ambiguous_and_missing(store: Store) -> None:
    """``resolve`` prefers an exact id, completes a unique prefix, and refuses ambiguous or unmatched prefixes."""
    for run_id in ("abc", "abc-1", "abc-2", "abd-1"):
        make_run(store, run_id)
    assert store.resolve("abc") == "abc"
    assert store.resolve("abc-1") == "abc-1"
    assert store.resolve("abd") == "abd-1"
    with pytest.raises(AmbiguousRunIdError) as info:
        store.resolve("abc-")
    assert sorted(info.value.matches) == ["abc-1", "abc-2"]
    for unmatched in ("abe", "ab_", "ab."):  # '_' and '.' are id characters, never wildcards
        with pytest.raises(RunNotFoundError):
            store.resolve(unmatched)


def test_run_ids_lists_exactly_the_created_runs(store: Store) -> None:
    """``run_ids`` is empty at first, then lists each created or imported run once, open writers included."""
    assert list(store.run_ids()) == []
    make_run(store, "r1")
    open_writer = store.create(make_started("r2"), durability="none")
    store.import_lines("r3", stream_lines("r3"))
    with pytest.raises(RunExistsError):
        store.create(make_started("r1"), durability="none")
    assert sorted(store.run_ids()) == ["r1", "r2", "r3"]
    open_writer.close()


# -------------------------------------------------------------------------------- ownership


def test_open_writer_is_refused_while_a_writer_is_open(store: Store, reopen: Callable[[], Store]) -> None:
    """While a writer is open another session sees it alive and is refused; after close it takes over at the next seq."""
    writer = store.create(make_started(RID), durability="none")
    writer.append(Heartbeat)
    other = reopen()
    assert other.writer_alive(RID) is True
    with pytest.raises(RunLockedError) as info:
        other.open_writer(RID)
    assert (info.value.pid, info.value.host) == (make_identity().pid, make_identity().host)
    writer.close()
    assert writer_alive_after_close(other, RID) is False
    with other.open_writer(RID, durability="none") as second:
        assert second.next_seq == 2
        assert second.append(Heartbeat).seq == 2
        assert store.writer_alive(RID) is True
    assert seqs(store) == [0, 1, 2]


def test_locked_run_reads_and_appends_abandoned(store: Store, reopen: Callable[[], Store]) -> None:
    """``locked_run`` holds the run's lock, reads its events and appends ``abandoned`` with the given fields at the next seq."""
    writer = store.create(make_started(RID), durability="none")
    writer.append(StepProgress, step="build", state="started")
    writer.close()
    assert writer_alive_after_close(store, RID) is False
    with store.locked_run(RID) as locked:
        assert [e.seq for e in locked.events()] == [0, 1]
        assert reopen().writer_alive(RID) is True
        with pytest.raises(RunLockedError):
            reopen().open_writer(RID)
        event = locked.append_abandoned(
            reason=AbandonReason.OPERATOR, evidence={"why": "test"}, checker=make_checker(), last_seq=1
        )
    assert (event.seq, event.last_seq, event.evidence) == (2, 1, {"why": "test"})
    assert list(store.read(RID).events())[-1] == event
    assert fold(store.read(RID).events()).status == "abandoned"
    assert writer_alive_after_close(store, RID) is False


def test_locked_run_refuses_to_abandon_a_terminal_run(store: Store) -> None:
    """``append_abandoned`` on a run that already ended raises NotReconcilableError and writes nothing."""
    write_run(store)
    before = list(store.raw_lines(RID))
    with store.locked_run(RID) as locked, pytest.raises(NotReconcilableError):
        locked.append_abandoned(reason=AbandonReason.OPERATOR, evidence={}, checker=make_checker(), last_seq=4)
    assert list(store.raw_lines(RID)) == before


# ---------------------------------------------------------------------------- reconciliation


def test_reconcile_abandons_a_closed_writer_exactly_once(store: Store, dead_identity: WriterIdentity) -> None:
    """A run whose writer closed without a terminal event is reconciled to ``abandoned`` once; again, it is terminal."""
    run = begin(store, identity=dead_identity)
    run.close()
    assert writer_alive_after_close(store, RID) is False
    first = reconcile_run(store, RID)
    assert (first.action, first.state.status) == ("abandoned", "abandoned")
    events = list(store.read(RID).events())
    assert [e.type for e in events] == ["started", "step-progress", "abandoned"]
    assert events[-1].reason is EXPECTED_ABANDON_REASON[store.lock_scope]  # type: ignore[attr-defined]
    assert events[-1].last_seq == 1  # type: ignore[attr-defined]
    lines = list(store.raw_lines(RID))
    assert reconcile_run(store, RID).action == "terminal"
    assert current_state(store, RID).status == "abandoned"
    assert list(store.raw_lines(RID)) == lines


@pytest.mark.parametrize("recorded", ["this-process", "dead-pid"])
def test_reconcile_never_abandons_an_open_writer(store: Store, dead_identity: WriterIdentity, recorded: str) -> None:
    """While its writer is open a run is never abandoned, even by an operator or with a dead recorded pid."""
    run = begin(store, identity=writer_identity() if recorded == "this-process" else dead_identity)
    before = list(store.raw_lines(RID))
    for operator in (None, "cleanup"):
        result = reconcile_run(store, RID, operator=operator)
        assert result.action in ("alive", "unknown", "busy")
        assert result.state.status == "running"
    assert current_state(store, RID).status == "running"
    assert list(store.raw_lines(RID)) == before
    run.succeed()
    run.close()
    assert fold(store.read(RID).events()).status == "succeeded"


@pytest.mark.parametrize("lost", ["terminated", "reconnected", "relocked"])
def test_stale_pg_writer_is_fenced_after_abandon(pg_url: str, tmp_path: Path, lost: str) -> None:
    """A PostgreSQL writer whose session was killed, then reconciled ``abandoned``, cannot append: the run stays abandoned."""
    store = PgStore(pg_url, local_root=tmp_path)
    stale = begin(store).writer
    store.connection.execute("SELECT pg_terminate_backend(%s)", (stale.conn.info.backend_pid,))
    assert writer_alive_after_close(store, RID) is False
    assert reconcile_run(store, RID).action == "abandoned"
    lines = list(store.raw_lines(RID))
    expected: type[JournalError] = JournalWriteError
    if lost != "terminated":  # the stale writer got a new session: without the lock, or relocked after reconcile
        stale.conn = psycopg.connect(pg_url, autocommit=True)
        assert lost == "reconnected" or stale.try_lock() is True
        expected = WriterFencedError
    with pytest.raises(expected):
        stale.append(Heartbeat)
    with pytest.raises(WriterClosedError):  # and refuses for good
        stale.append(Heartbeat)
    assert list(store.raw_lines(RID)) == lines
    assert current_state(store, RID).status == "abandoned"
    stale.close()
    store.close()


# ------------------------------------------------------------------------------ concurrency


def _contend(target: str, run_id: str, barrier: Any, results: Any) -> None:
    """One contender: its own store object (another session), ``create`` at the barrier, report the outcome."""
    store = open_store(target)
    barrier.wait()
    try:
        store.create(make_started(run_id), durability="none").close()
        results.put("won")
    except RunExistsError:
        results.put("exists")
    except JournalError as exc:
        results.put(repr(exc))
    getattr(store, "close", lambda: None)()


def race(racers: str, target: str, run_id: str, n: int) -> list[str]:
    """Run ``n`` contenders as threads of this process or as forked processes; their outcomes."""
    ctx: Any = multiprocessing.get_context("fork")
    if racers == "threads":
        ctx = SimpleNamespace(Barrier=threading.Barrier, Queue=queue.Queue, Process=threading.Thread)
    barrier, results = ctx.Barrier(n), ctx.Queue()
    workers = [ctx.Process(target=_contend, args=(target, run_id, barrier, results)) for _ in range(n)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    return outcomes


@pytest.mark.parametrize("racers", ["threads", "processes"])
def test_racing_creates_of_one_id_have_exactly_one_winner(store: Store, racers: str) -> None:
    """Contenders racing to ``create`` one run id: exactly one wins, the others get RunExistsError, one ``started`` is stored."""
    target = str(store.root) if isinstance(store, JsonlStore) else store.url
    for round_no in range(5):
        run_id = f"race-{round_no}"
        assert sorted(race(racers, target, run_id, 3)) == ["exists", "exists", "won"]
        assert seqs(store, run_id) == [0]
    assert sorted(store.run_ids()) == [f"race-{i}" for i in range(5)]

