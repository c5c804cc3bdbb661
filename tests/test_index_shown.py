"""History in O(what is shown): the newest runs' summaries only, and every kind of change still noticed."""

from __future__ import annotations

import os
import time
from itertools import islice
from pathlib import Path

import pytest

from runjournal.journal.jsonl import JsonlStore, index_segments
from runjournal.journal.jsonl.index import HistoryIndex
from runjournal.journal.readmodel import RunSummary
from runjournal.journal.testing import journal_lines, make_heartbeat, make_stream, write_journal
from runjournal.projections.fold import fold
from runjournal.projections.summary import PROJECTOR, summarize

SEGMENT = 5
RUNS = 30


@pytest.fixture
def store(journal_dir: Path, monkeypatch: pytest.MonkeyPatch) -> JsonlStore:
    """Thirty finished runs and two live ones, indexed, in segments of five runs."""
    monkeypatch.setattr(index_segments, "SEGMENT_RUNS", SEGMENT)
    store = JsonlStore(journal_dir)
    for n in range(RUNS):
        write_journal(journal_dir, make_stream(f"run-{n:03d}", terminal="succeeded"))
    for n in (RUNS, RUNS + 1):
        write_journal(journal_dir, make_stream(f"run-{n:03d}", terminal=None))
    _age(store)
    assert len(list(HistoryIndex(store, PROJECTOR).summaries())) == RUNS + 2
    assert len(list(HistoryIndex(store, PROJECTOR).summaries())) == RUNS + 2  # listed once more, now trusted
    return store


def _age(store: JsonlStore) -> None:
    """Date the runs directory back, so its mtime is trusted (no run was created in the last moments)."""
    past = time.time() - 60
    os.utime(store.runs_dir, (past, past))


def newest(store: JsonlStore, n: int) -> tuple[list[RunSummary], HistoryIndex]:
    """What ``history -n N`` lists, and the index object that listed it."""
    index = HistoryIndex(store, PROJECTOR)
    return list(islice(index.summaries(), n)), index


def fresh(store: JsonlStore, run_id: str) -> RunSummary:
    """A run's summary folded from its file."""
    return summarize(fold(store.read(run_id).events()), run_id)


def test_the_newest_runs_cost_the_live_runs_and_one_segment_of_sweep(
    store: JsonlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-n 3`` reads the newest segment and one swept segment, and stats the live runs and that segment only."""
    loaded: list[str] = []
    real = index_segments.load_segment

    def spy(directory: Path, name: str) -> list[tuple[str, bytes]] | None:
        loaded.append(name)
        return real(directory, name)

    monkeypatch.setattr(index_segments, "load_segment", spy)
    shown, index = newest(store, 3)
    assert [s.run_id for s in shown] == ["run-031", "run-030", "run-029"]
    assert len(loaded) <= 2
    assert index.counts["checked"] <= SEGMENT + 2
    assert index.counts["refolded"] == 0


def test_a_late_event_from_a_writer_is_noticed_at_once(store: JsonlStore) -> None:
    """A writer appending to a finished run leaves an anchor line: the very next history folds the run again."""
    writer = store.open_writer("run-012")
    try:
        writer.append_event(make_heartbeat(writer.next_seq, run_id="run-012"))
    finally:
        writer.close()
    listed = {s.run_id: s for s in HistoryIndex(store, PROJECTOR).summaries()}
    assert listed["run-012"].late_events == 1
    assert listed["run-012"] == fresh(store, "run-012")


def test_a_foreign_change_to_a_finished_run_is_noticed_within_one_round_of_sweeps(store: JsonlStore) -> None:
    """Bytes appended by a program other than runjournal: found by the sweep, within as many calls as there are segments."""
    stream = make_stream("run-003", terminal="succeeded")
    late = journal_lines([make_heartbeat(len(stream), run_id="run-003")], _last_hash(stream))
    with open(store.path("run-003"), "ab") as file:
        file.write(late[0])
    rounds = 0
    while rounds <= RUNS // SEGMENT:
        rounds += 1
        listed = {s.run_id: s for s in HistoryIndex(store, PROJECTOR).summaries()}
        if listed["run-003"].late_events == 1:
            break
    assert listed["run-003"] == fresh(store, "run-003")
    assert rounds <= RUNS // SEGMENT


def _last_hash(stream: list) -> str:  # type: ignore[type-arg]
    import orjson

    return orjson.loads(journal_lines(stream)[-1])["h"]


def test_a_new_run_is_listed_at_once(store: JsonlStore) -> None:
    """Creating a run changes the runs directory: the next history lists it, in its place."""
    write_journal(store.root, make_stream("run-015x", terminal="failed"))
    listed = [s.run_id for s in HistoryIndex(store, PROJECTOR).summaries()]
    assert "run-015x" in listed and listed.index("run-015x") == listed.index("run-015") - 1


def test_a_deleted_run_is_no_longer_listed(store: JsonlStore) -> None:
    """Removing a run file changes the runs directory: the next history drops it."""
    store.path("run-007").unlink()
    listed = [s.run_id for s in HistoryIndex(store, PROJECTOR).summaries()]
    assert "run-007" not in listed and len(listed) == RUNS + 1


def test_a_cold_index_stopped_early_lists_every_run_next_time(journal_dir: Path) -> None:
    """``-n 2`` on a cold index folds two runs; the index remembers the listing is incomplete and the next call lists all."""
    store = JsonlStore(journal_dir)
    for n in range(12):
        write_journal(journal_dir, make_stream(f"run-{n:03d}", terminal="succeeded"))
    _age(store)
    shown, index = newest(store, 2)
    assert [s.run_id for s in shown] == ["run-011", "run-010"] and index.counts["refolded"] == 2
    assert [s.run_id for s in HistoryIndex(store, PROJECTOR).summaries()] == [f"run-{n:03d}" for n in range(11, -1, -1)]


def test_segments_split_as_runs_accumulate(store: JsonlStore) -> None:
    """Many new runs land in the newest segment, which is split: history still lists all of them, in order."""
    for n in range(100, 100 + 3 * SEGMENT):
        write_journal(store.root, make_stream(f"run-{n:03d}", terminal="succeeded"))
    first = [s.run_id for s in HistoryIndex(store, PROJECTOR).summaries()]
    again = [s.run_id for s in HistoryIndex(store, PROJECTOR).summaries()]
    assert first == again == sorted(first, reverse=True) and len(first) == RUNS + 2 + 3 * SEGMENT
