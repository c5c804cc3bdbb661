"""The store contract's second half: the history read model (the summary row, filters pushed down, the
hand-over of a live run's fold), retention (prune) and anchors.

:class:`ReadModelContract` is a base of :class:`~runjournal.journal.testing.contract.StoreContract`:
subclass that, not this. Two hooks suit a store whose writers keep each run's summary with
every append (the database): :attr:`ReadModelContract.keeps_summaries` and
:meth:`ReadModelContract.recorded_summary`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from runjournal.journal.errors import SameStoreError
from runjournal.journal.events import Heartbeat, StepProgress
from runjournal.journal.memory import MemoryStore
from runjournal.journal.readmodel import HistoryQuery, RunSummary
from runjournal.journal.store import Store
from runjournal.journal.testing.builders import exited_writer_identity, ticking_clock
from runjournal.journal.testing.contract_support import (
    LEASE_RUN_OUT,
    RID,
    begin,
    fresh_summaries,
    started,
    stream_lines,
    write_run,
    writer_alive_after_close,
)
from runjournal.projections.fold import fold
from runjournal.projections.prune import prune, prune_candidates
from runjournal.projections.reconcile import current_state
from runjournal.projections.summary import PROJECTOR, summarize


class ReadModelContract:
    """The read-model, retention and anchor tests of the store contract (see the module docstring)."""

    keeps_summaries: bool = False
    """Whether the store's writers keep each run's summary with every append (:meth:`recorded_summary` then says what they kept)."""

    tmp_path: Path

    def recorded_summary(self, store: Store, run_id: str) -> RunSummary | None:
        """The summary the store keeps for ``run_id`` as its writers left it, when current (None: none kept)."""
        return None

    def other(self, store: Store) -> Store:
        """Another store object on the same runs, given no projector (:meth:`StoreContract.other`)."""
        raise NotImplementedError

    # -- the summary row, filters pushed down, the hand-over -------------------------------

    def test_summary_row_equals_the_fold_after_every_append(self, store: Store) -> None:
        """After every append (late events and a reconciler's ``abandoned`` included) the listed summary, and the one the writer kept, equal the fold."""
        run = begin(store, "r1")
        appends: list[Callable[[], Any]] = [
            run.heartbeat, lambda: run.step_succeeded("build", exit_code=0), lambda: run.fail(message="step test failed"),
            lambda: run.writer.append(Heartbeat), lambda: run.writer.append(StepProgress, step="x", state="started"),
        ]
        self._check_summary(store, "r1")
        for append in appends:
            append()
            self._check_summary(store, "r1")
        run.close()
        orphan = begin(store, "r2", identity=exited_writer_identity())
        orphan.heartbeat()
        orphan.close()
        assert writer_alive_after_close(store, "r2") is False
        assert current_state(store, "r2", lease_intervals=LEASE_RUN_OUT).status == "abandoned"
        self._check_summary(store, "r2")

    def test_a_writer_without_the_projector_leaves_the_summary_to_readers(self, store: Store) -> None:
        """Runs written through a store object given no projector list with their fold's summary, and a listing saves it."""
        other = self.other(store)
        write_run(other, "plain")
        assert [s for s in store.summaries(HistoryQuery(), PROJECTOR)] == fresh_summaries(store)
        recorded = self.recorded_summary(store, "plain")  # saved by the listing
        assert recorded == fresh_summaries(store)[0] or (recorded is None and not self.keeps_summaries)

    def _check_summary(self, store: Store, run_id: str) -> None:
        """What the writer kept (looked at before any listing could fold it), and what a listing yields, equal the fold."""
        expected = summarize(fold(store.read(run_id).events()), run_id)
        recorded = self.recorded_summary(store, run_id)
        assert recorded == expected or (recorded is None and not self.keeps_summaries)
        assert [s for s in store.summaries(HistoryQuery(), PROJECTOR) if s.run_id == run_id] == [expected]

    def test_filters_pushed_down_give_the_rows_of_the_fold_filter(self, store: Store) -> None:
        """Every filter (workflow, status, since, until, a limit hint) yields exactly the runs the fold-based filter keeps."""
        runs = [started(store, f"run-{minute:02d}", workflow, minute, end) for minute, workflow, end in [
            (0, "build", "succeeded"), (10, "deploy", "failed"), (20, "build", "failed"), (30, "deploy", None),
            (40, "build", "cancelled"), (50, "deploy", "succeeded")]]
        base = ticking_clock()()
        queries = [HistoryQuery(workflow="build"), HistoryQuery(statuses=frozenset({"failed"})),
                   HistoryQuery(statuses=frozenset({"running", "failed"}), workflow="deploy"),
                   HistoryQuery(since=base + timedelta(minutes=15)), HistoryQuery(until=base + timedelta(minutes=35)),
                   HistoryQuery(since=base + timedelta(minutes=5), until=base + timedelta(minutes=45), workflow="build"),
                   HistoryQuery(statuses=frozenset({"succeeded"}), limit=1), HistoryQuery(workflow="nothing")]
        fresh = fresh_summaries(store)
        for query in queries:
            got = [s for s in store.summaries(query, PROJECTOR) if query.matches(s)]
            assert got == [s for s in fresh if query.matches(s)], query
        runs[3].close()

    def test_take_fold_hands_over_a_run_listed_as_not_finished_once(self, store: Store) -> None:
        """After a listing, ``take_fold`` hands over a live run's full fold and end cursor (and facts, if any) once; nothing for a finished run."""
        live = begin(store, "live")
        live.heartbeat()
        write_run(store, "done")
        list(store.summaries(HistoryQuery(), PROJECTOR))
        handed = store.take_fold("live")
        assert handed is not None
        reader = store.read("live")
        state = fold(reader.events())
        assert handed.fold().state == state and handed.fold().cursor == reader.cursor
        assert handed.facts is None or handed.facts.lock_held is True
        assert store.take_fold("live") is None and store.take_fold("done") is None
        live.close()

    # -- retention and the anchor ---------------------------------------------------------

    def test_prune_deletes_only_finished_runs_nobody_holds(self, store: Store) -> None:
        """``prune`` deletes a finished run and keeps a live one, a finished one whose writer is still open, an unfinished one, and says so for each."""
        write_run(store, "done")
        live = begin(store, "live")
        held = begin(store, "held")
        held.succeed()
        begin(store, "orphan", identity=exited_writer_identity()).close()
        assert writer_alive_after_close(store, "orphan") is False
        kept = {run_id: list(store.raw_lines(run_id)) for run_id in ("live", "held", "orphan")}
        outcomes = {p.run_id: p.outcome for p in store.prune(["done", "live", "held", "orphan", "absent"])}
        assert outcomes == {"done": "pruned", "live": "locked", "held": "locked", "orphan": "unfinished",
                            "absent": "missing"}
        assert not store.exists("done") and sorted(store.run_ids()) == ["held", "live", "orphan"]
        assert [s.run_id for s in store.summaries(HistoryQuery(), PROJECTOR)] == ["orphan", "live", "held"]
        assert {run_id: list(store.raw_lines(run_id)) for run_id in kept} == kept
        for run in (live, held):
            run.close()

    def test_prune_archives_and_verifies_before_it_deletes(self, store: Store) -> None:
        """Pruning with an archive copies each run byte for byte first; a run the archive cannot take (a conflict) is kept; orphans are recorded abandoned and pruned, live runs never."""
        write_run(store, "a")
        write_run(store, "b")
        begin(store, "orphan", identity=exited_writer_identity()).close()
        live = begin(store, "live")
        assert writer_alive_after_close(store, "orphan") is False
        archive = MemoryStore(self.tmp_path / "archive-side")
        archive.import_lines("b", stream_lines("b", terminal="failed"))  # another run under b's id
        lines = {run_id: list(store.raw_lines(run_id)) for run_id in ("a", "b")}
        candidates = prune_candidates(store, ticking_clock()() + timedelta(days=1), lease_intervals=LEASE_RUN_OUT)
        assert candidates == ["a", "b", "orphan"]
        results = {r.run_id: r.outcome for r in prune(store, candidates, archive=archive)}
        assert results == {"a": "pruned", "b": "conflict", "orphan": "pruned"}
        assert list(archive.raw_lines("a")) == lines["a"] and list(store.raw_lines("b")) == lines["b"]
        assert [e.type for e in archive.read("orphan").events()][-1] == "abandoned"
        assert sorted(store.run_ids()) == ["b", "live"]
        live.close()

    def test_an_archive_that_is_the_store_itself_is_refused(self, store: Store) -> None:
        """Pruning into the store being pruned (another handle on it) raises SameStoreError and deletes nothing."""
        write_run(store, "a")
        same = self.reopen(store)  # type: ignore[attr-defined]
        with pytest.raises(SameStoreError):
            prune(store, ["a"], archive=same)
        assert sorted(store.run_ids()) == ["a"]
        other = MemoryStore(self.tmp_path / "other-side")
        assert [r.outcome for r in prune(store, ["a"], archive=other)] == ["pruned"]

    def test_anchors_are_the_head_of_a_finished_run(self, store: Store) -> None:
        """A store that anchors keeps a finished run's last seq, its line's hash and end offset (written or imported), and nothing while it runs."""
        write_run(store)
        store.import_lines("imported", stream_lines("imported"))
        live = begin(store, "live")
        assert store.anchors("live") == []
        for run_id in (RID, "imported"):
            lines = list(store.raw_lines(run_id))
            head = (len(lines) - 1, json.loads(lines[-1])["h"], sum(len(line) + 1 for line in lines))
            assert [tuple(anchor) for anchor in store.anchors(run_id)] in ([], [head])
            assert list(store.verify(run_id)) == []
        live.close()
