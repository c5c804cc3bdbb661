"""The store contract: what every :class:`~runjournal.journal.store.Store` must do, as a test suite to subclass.

A backend plugs in with one method (pytest collects the ``test_*`` methods)::

    from runjournal.journal.jsonl import JsonlStore
    from runjournal.journal.testing.contract import StoreContract

    class TestJsonlStore(StoreContract):
        def make_store(self) -> JsonlStore:
            return JsonlStore(self.tmp_path / "journal")

``self.tmp_path`` is pytest's temporary directory for the test. Optional hooks, with
defaults that suit a store other processes can open: :meth:`StoreContract.reopen` (another
store object on the same runs: another session, for a database), and the class attributes
:attr:`~StoreContract.abandon_reason` (the reason a closed writer's run is abandoned with)
and :attr:`~StoreContract.shared_between_processes`; for a store whose writers keep each
run's summary, :attr:`~ReadModelContract.keeps_summaries` and
:meth:`~ReadModelContract.recorded_summary` (in :mod:`.contract_readmodel`).

The suite needs pytest (and imports no database driver: a backend's own subclass does).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runjournal.journal.errors import (
    AmbiguousRunIdError,
    IntegrityError,
    InvalidRunIdError,
    NotReconcilableError,
    RunExistsError,
    RunLockedError,
    RunNotFoundError,
    SequenceError,
    StoreUnavailableError,
)
from runjournal.journal.events import AbandonReason, Heartbeat, StepProgress
from runjournal.journal.identity import writer_identity
from runjournal.journal.readmodel import HistoryQuery
from runjournal.journal.records import Cursor
from runjournal.journal.store import Store
from runjournal.journal.stores import open_store
from runjournal.journal.testing.builders import (
    exited_writer_identity,
    journal_lines,
    make_checker,
    make_identity,
    make_started,
)
from runjournal.journal.testing.contract_readmodel import ReadModelContract
from runjournal.journal.testing.contract_support import (
    LEASE_RUN_OUT,
    RID,
    begin,
    fresh_summaries,
    head_of,
    make_run,
    race,
    refused_at_import_or_read,
    seqs,
    stream_lines,
    take_lock,
    write_run,
    writer_alive_after_close,
)
from runjournal.projections.fold import fold
from runjournal.projections.reconcile import current_state, reconcile_run
from runjournal.projections.summary import PROJECTOR


class StoreContract(ReadModelContract):
    """The contract suite; subclass it as ``Test<Backend>`` and implement :meth:`make_store`.

    The history read model's and retention's half is :class:`ReadModelContract`.
    """

    abandon_reason: AbandonReason = AbandonReason.ORIGINATING_PROCESS_NOT_ALIVE
    """The reason a run whose writer closed (its recorded process gone) is abandoned with."""

    shared_between_processes: bool = True
    """Whether another process can open the store (:meth:`Store.address`); False skips the process race."""

    anchors_heads: bool = True
    """Whether the store anchors a finished run's head (:meth:`Store.anchors`); False skips those tests."""

    tmp_path: Path

    def make_store(self) -> Store:
        """A new, empty store (called once per test)."""
        raise NotImplementedError

    def reopen(self, store: Store) -> Store:
        """Another store object on the same runs (for a database: another session), given no projector.

        A store that lives in this process only (its :meth:`Store.address` raises
        :class:`StoreUnavailableError`) is its own reopening: ownership there is per writer.
        """
        try:
            address = store.address()
        except StoreUnavailableError:
            return store
        return open_store(address, local_root=store.side_files.root)

    def drop_last_line(self, store: Store, run_id: str) -> None:
        """Tamper with the store behind its back: remove the run's last line (a backend's hook; skipped without one)."""
        pytest.skip("no tampering hook for this store")

    # -- fixtures ---------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _contract_tmp_path(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        """The store under test; every store object the test made is closed afterwards."""
        made = [self.make_store()]
        self._made = made
        yield made[0]
        for store in made:
            store.close()

    def other(self, store: Store) -> Store:
        """:meth:`reopen`, closed after the test."""
        reopened = self.reopen(store)
        self._made.append(reopened)
        return reopened

    # -- create, append, read ---------------------------------------------------------

    def test_create_writes_started_at_seq_zero(self, store: Store) -> None:
        """``create`` stores exactly its ``started`` event at seq 0 and returns a writer whose next seq is 1."""
        started = make_started(RID)
        with store.create(started, durability="none") as writer:
            assert writer.next_seq == 1
            assert list(store.read(RID).events()) == [started]
            assert store.exists(RID)

    def test_appends_get_consecutive_seqs_read_in_order(self, store: Store) -> None:
        """Appends get seqs 1, 2, ... and ``read`` yields them in order, each record ending where its line's newline does."""
        write_run(store)
        records = list(store.read(RID))
        assert [r.event.seq for r in records] == [0, 1, 2, 3, 4]
        assert [r.event.type for r in records] == ["started", "step-progress", "step-progress", "heartbeat", "succeeded"]
        ends = list(itertools.accumulate(len(line) + 1 for line in store.raw_lines(RID)))
        assert [r.end for r in records] == ends
        assert [r.line_no for r in records] == [1, 2, 3, 4, 5]
        assert [r.offset for r in records] == [0, *ends[:-1]]

    def test_lines_are_the_canonical_jsonl_of_the_events(self, store: Store) -> None:
        """A store keeps each event as exactly the line the codec makes of it, so every store exports the same bytes."""
        write_run(store)
        events = list(store.read(RID).events())
        assert [line + b"\n" for line in store.raw_lines(RID)] == journal_lines(events)

    def test_read_checks_the_hash_chain(self, store: Store) -> None:
        """A line changed after it was written is refused with IntegrityError naming it: at import or at read."""
        lines = stream_lines()
        lines[2] = lines[2].replace(b'"build"', b'"bxild"')
        reader_error = refused_at_import_or_read(store, RID, lines, IntegrityError)
        if reader_error is not None:
            assert (reader_error.line, reader_error.offset) == (3, len(lines[0]) + len(lines[1]) + 2)

    def test_read_checks_the_run_id_of_every_line(self, store: Store) -> None:
        """Lines of another run under this id are refused with SequenceError: at import or at read."""
        refused_at_import_or_read(store, RID, stream_lines("some-other-run"), SequenceError)

    def test_read_resumes_exactly_after_a_cursor(self, store: Store) -> None:
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

    # -- import ------------------------------------------------------------------------

    def test_import_lines_reads_back_identical(self, store: Store) -> None:
        """Imported lines read back byte for byte and event for event, with no writer owning the run."""
        lines = stream_lines("imported")
        store.import_lines("imported", lines)
        assert list(store.raw_lines("imported")) == lines
        assert [e.seq for e in store.read("imported").events()] == list(range(len(lines)))
        assert store.writer_alive("imported") is False

    def test_import_of_an_existing_id_raises_run_exists(self, store: Store) -> None:
        """Importing lines under an id the store already has raises RunExistsError and leaves the run unchanged."""
        write_run(store)
        before = list(store.raw_lines(RID))
        with pytest.raises(RunExistsError):
            store.import_lines(RID, stream_lines(terminal="failed"))
        assert list(store.raw_lines(RID)) == before

    # -- ids and lookup ----------------------------------------------------------------

    @pytest.mark.parametrize("first_writer", ["open", "closed"])
    def test_create_of_an_existing_id_raises_run_exists(self, store: Store, first_writer: str) -> None:
        """A second ``create`` of a run id from another store object raises RunExistsError, whether or not the first writer is open."""
        writer = store.create(make_started(RID), durability="none")
        if first_writer == "closed":
            writer.close()
        with pytest.raises(RunExistsError):
            self.other(store).create(make_started(RID, workflow="other"), durability="none")
        assert [e.workflow for e in store.read(RID).events()] == ["wf"]  # type: ignore[attr-defined]
        writer.close()

    def test_missing_run_raises_not_found(self, store: Store) -> None:
        """``read``, ``open_writer`` and ``resolve`` of a run that does not exist raise RunNotFoundError."""
        make_run(store, "present")
        for call in (store.read, store.open_writer, store.resolve):
            with pytest.raises(RunNotFoundError):
                call("absent")
        assert not store.exists("absent")

    @pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "x\x00y"], ids=["dotdot", "slash", "empty", "dot", "nul"])
    def test_hostile_run_ids_are_refused(self, store: Store, bad: str) -> None:
        """Ids that could name a path outside the store raise InvalidRunIdError from every entry point and create nothing."""
        calls: list[Callable[[], Any]] = [
            lambda: store.read(bad),
            lambda: store.resolve(bad),
            lambda: store.open_writer(bad),
            lambda: store.exists(bad),
            lambda: store.location(bad),
            lambda: store.create(make_started().model_copy(update={"run_id": bad})),
            lambda: store.import_lines(bad, stream_lines()),
        ]
        for call in calls:
            with pytest.raises(InvalidRunIdError):
                call()
        assert list(store.run_ids()) == []

    def test_resolve_exact_unique_ambiguous_and_missing(self, store: Store) -> None:
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

    def test_run_ids_lists_exactly_the_created_runs(self, store: Store) -> None:
        """``run_ids`` is empty at first, then lists each created or imported run once, open writers included."""
        assert list(store.run_ids()) == []
        make_run(store, "r1")
        open_writer = store.create(make_started("r2"), durability="none")
        store.import_lines("r3", stream_lines("r3"))
        with pytest.raises(RunExistsError):
            store.create(make_started("r1"), durability="none")
        assert sorted(store.run_ids()) == ["r1", "r2", "r3"]
        open_writer.close()

    # -- ownership ---------------------------------------------------------------------

    def test_open_writer_is_refused_while_a_writer_is_open(self, store: Store) -> None:
        """While a writer is open another store object sees it alive and is refused; after close it takes over at the next seq."""
        writer = store.create(make_started(RID), durability="none")
        writer.append(Heartbeat)
        other = self.other(store)
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

    def test_locked_run_reads_and_appends_abandoned(self, store: Store) -> None:
        """``locked_run`` holds the run's lock, reads its events and appends ``abandoned`` with the given fields at the next seq."""
        writer = store.create(make_started(RID), durability="none")
        writer.append(StepProgress, step="build", state="started")
        writer.close()
        assert writer_alive_after_close(store, RID) is False
        with store.locked_run(RID) as locked:
            assert [e.seq for e in locked.events()] == [0, 1]
            assert self.other(store).writer_alive(RID) is True
            with pytest.raises(RunLockedError):
                self.other(store).open_writer(RID)
            event = locked.append_abandoned(
                reason=AbandonReason.OPERATOR, evidence={"why": "test"}, checker=make_checker(), last_seq=1
            )
        assert (event.seq, event.last_seq, event.evidence) == (2, 1, {"why": "test"})
        assert list(store.read(RID).events())[-1] == event
        assert fold(store.read(RID).events()).status == "abandoned"
        assert writer_alive_after_close(store, RID) is False

    def test_locked_run_refuses_to_abandon_a_terminal_run(self, store: Store) -> None:
        """``append_abandoned`` on a run that already ended raises NotReconcilableError and writes nothing."""
        write_run(store)
        before = list(store.raw_lines(RID))
        with store.locked_run(RID) as locked, pytest.raises(NotReconcilableError):
            locked.append_abandoned(reason=AbandonReason.OPERATOR, evidence={}, checker=make_checker(), last_seq=4)
        assert list(store.raw_lines(RID)) == before

    # -- reconciliation ----------------------------------------------------------------

    def test_reconcile_abandons_a_closed_writer_exactly_once(self, store: Store) -> None:
        """A run whose writer closed without a terminal event is reconciled to ``abandoned`` once; again, it is terminal."""
        run = begin(store, identity=exited_writer_identity())
        run.close()
        assert writer_alive_after_close(store, RID) is False
        # A lease this short has run out already: a store that judges by the lock and the lease
        # (a database, whose writer may reconnect within it) abandons the run too.
        first = reconcile_run(store, RID, lease_intervals=LEASE_RUN_OUT)
        assert (first.action, first.state.status) == ("abandoned", "abandoned")
        events = list(store.read(RID).events())
        assert [e.type for e in events] == ["started", "step-progress", "abandoned"]
        assert events[-1].reason is self.abandon_reason  # type: ignore[attr-defined]
        assert events[-1].last_seq == 1  # type: ignore[attr-defined]
        lines = list(store.raw_lines(RID))
        assert reconcile_run(store, RID).action == "terminal"
        assert current_state(store, RID).status == "abandoned"
        assert list(store.raw_lines(RID)) == lines

    @pytest.mark.parametrize("recorded", ["this-process", "dead-pid"])
    def test_reconcile_never_abandons_an_open_writer(self, store: Store, recorded: str) -> None:
        """While its writer is open a run is never abandoned, even by an operator or with a dead recorded pid."""
        run = begin(store, identity=writer_identity() if recorded == "this-process" else exited_writer_identity())
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

    # -- the history read model, follow, verify, start lock -----------------------------

    def test_summaries_equal_the_fold_newest_first_and_follow_appends(self, store: Store) -> None:
        """``summaries`` gives each run's fold summary, newest id first, and sees a run that grew since the last call."""
        for run_id in ("r1", "r3", "r2"):
            write_run(store, run_id)
        live = begin(store, "r4")
        assert list(store.summaries(HistoryQuery(), PROJECTOR)) == fresh_summaries(store)
        live.succeed()
        live.close()
        again = list(store.summaries(HistoryQuery(), PROJECTOR))
        assert again == fresh_summaries(store) and again[0].status == "succeeded"

    def test_summaries_yield_at_least_what_the_query_matches(self, store: Store) -> None:
        """Whatever a store pushes down, every run whose summary matches the query is yielded."""
        write_run(store, "a-1")
        begin(store, "a-2").close()
        store.import_lines("b-1", stream_lines("b-1", terminal="failed"))
        for query in (HistoryQuery(workflow="wf"), HistoryQuery(statuses=frozenset({"failed"})),
                      HistoryQuery(statuses=frozenset({"running"}), workflow="wf")):
            wanted = [s for s in fresh_summaries(store) if query.matches(s)]
            got = [s for s in store.summaries(query, PROJECTOR) if query.matches(s)]
            assert got == wanted and wanted

    def test_watch_wakes_on_an_append_and_times_out_without(self, store: Store) -> None:
        """``watch`` yields True soon after the run grows, and False after its poll interval when nothing happens."""
        run = begin(store)
        watch = store.watch(RID, poll_seconds=0.2)
        try:
            quiet = [next(watch) for _ in range(2)]
            assert quiet[-1] is False
            threading.Timer(0.05, run.heartbeat).start()
            assert any(next(watch) for _ in range(60)), "no wake within 60 polls after an append"
        finally:
            watch.close()  # type: ignore[attr-defined]
            run.close()

    def test_verify_reports_nothing_for_a_clean_run_and_the_bad_line_of_a_damaged_one(self, store: Store) -> None:
        """``verify`` is silent on a clean run and names the first bad line of a run imported damaged."""
        write_run(store)
        assert list(store.verify(RID)) == []
        lines = stream_lines("damaged")
        lines[1] = lines[1].replace(b'"build"', b'"bxild"')
        try:
            store.import_lines("damaged", lines)
        except IntegrityError:
            return  # a store that checks at import never holds it
        problems = list(store.verify("damaged"))
        assert [(p.line, p.kind) for p in problems] == [(2, "integrity")]

    # -- anchors -----------------------------------------------------------------------

    def _anchoring(self) -> None:
        if not self.anchors_heads:
            pytest.skip("this store does not anchor runs (yet)")

    def test_a_finished_run_is_anchored_at_its_head(self, store: Store) -> None:
        """A running run has no anchor; once its terminal event is synced, its head (seq, h, end offset) is one."""
        self._anchoring()
        run = begin(store, durability="state")
        assert store.anchors(RID) == []
        run.succeed()
        run.close()
        assert store.anchors(RID) == [head_of(list(store.raw_lines(RID)))]

    def test_late_events_and_imports_are_anchored(self, store: Store) -> None:
        """An event appended after the terminal one anchors the new head too (a store may keep only the newest
        head: the chain ties the older one to it); an imported finished run is anchored."""
        self._anchoring()
        write_run(store, durability="state")
        writer = store.open_writer(RID, durability="state")
        writer.append(Heartbeat)
        writer.close()
        lines = list(store.raw_lines(RID))
        assert store.anchors(RID) in ([head_of(lines[:-1]), head_of(lines)], [head_of(lines)])
        store.import_lines("imported", stream_lines("imported"))
        assert store.anchors("imported") == [head_of(stream_lines("imported"))]
        store.import_lines("unfinished", stream_lines("unfinished", terminal=None))
        assert store.anchors("unfinished") == []

    def test_a_finished_run_cut_short_is_refused_by_every_read(self, store: Store) -> None:
        """With its last line gone, a finished run still chains, but every read, the fold and verify name the anchor."""
        self._anchoring()
        write_run(store, durability="state")
        self.drop_last_line(store, RID)
        with pytest.raises(IntegrityError, match="cut short"):
            list(store.read(RID))
        with pytest.raises(IntegrityError, match="cut short"):
            list(store.read_plain(RID))
        damage = store.project(RID, PROJECTOR).damage
        assert isinstance(damage, IntegrityError) and "cut short" in str(damage)
        assert [p.kind for p in store.verify(RID)] == ["anchor"]
        if not self.keeps_summaries:  # else the listing shows the summary its writer kept, read no line
            (summary,) = store.summaries(HistoryQuery(), PROJECTOR)
            assert summary.error is not None and "cut short" in summary.error

    def test_workflow_lock_excludes_a_second_holder(self, store: Store) -> None:
        """While one thread holds a workflow's start lock another waits for it; other workflows are not blocked."""
        order: list[str] = []
        with store.workflow_lock("deploy"):
            waiter = threading.Thread(target=take_lock, args=(store, "deploy", order))
            waiter.start()
            with store.workflow_lock("other"):
                order.append("other")
            time.sleep(0.1)
            order.append("first released")
        waiter.join(timeout=10)
        assert order == ["other", "first released", "second"]

    def test_side_files_are_a_directory_of_this_host(self, store: Store) -> None:
        """Every store hands out side files: a log directory per run below one root, validated like run ids."""
        side = store.side_files
        assert side.log_dir(RID).parent == side.logs_dir and side.logs_dir.parent == side.root
        with pytest.raises(InvalidRunIdError):
            side.log_dir("../x")

    # -- concurrency -------------------------------------------------------------------

    @pytest.mark.parametrize("racers", ["threads", "processes"])
    def test_racing_creates_of_one_id_have_exactly_one_winner(self, store: Store, racers: str) -> None:
        """Contenders racing to ``create`` one run id: exactly one wins, the others get RunExistsError, one ``started`` is stored."""
        if racers == "processes" and not self.shared_between_processes:
            pytest.skip("this store lives in one process")
        for round_no in range(5):
            run_id = f"race-{round_no}"
            assert sorted(race(racers, store, self.reopen, run_id, 3)) == ["exists", "exists", "won"]
            assert seqs(store, run_id) == [0]
        assert sorted(store.run_ids()) == [f"race-{i}" for i in range(5)]
