"""Promise 2: a crash at any labelled point inside our own code leaves a journal that reads,
reconciles and verifies (RocksDB's whitebox kill points, SQLite's crash loops).

Each point is hit in a child process through ``RUNJOURNAL_CRASH_AT=<label>:<n>`` (the child
dies with ``os._exit(137)``, as after SIGKILL). For the writer's points n runs 1, 2, ... until
the child completes without reaching the n-th hit, like SQLite's loops.
"""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runjournal.journal.crashpoints import CRASH_EXIT_CODE
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.testing import make_stream, write_journal
from runjournal.journal.verify import verify_file
from runjournal.projections.summary import PROJECTOR

from .figures import record
from .helpers import python_child, quarantine_files, read_chain, run_cli, scale, write_orphan

reconcile = pytest.importorskip("runjournal.projections.reconcile")
index = pytest.importorskip("runjournal.journal.jsonl.index")

WRITER_EVENTS = scale(12, 60)
WRITER_LABELS = ("before-write", "after-write", "after-sync")
REPAIR_LABELS = ("reconcile-quarantined", "reconcile-truncated")


def run_writer(root: Path, run_id: str, crash_at: str) -> tuple[int, list[tuple[int, str]]]:
    """Run the API writer child to completion or to its crash; return (exit code, acks)."""
    proc = python_child(
        "writer", str(root), run_id, "--count", str(WRITER_EVENTS), "--seed", "7", "--big", "0.1",
        env={"RUNJOURNAL_CRASH_AT": crash_at}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=60)
    acks = [(int(p[1]), p[2]) for p in (line.split() for line in out.decode().splitlines()) if p[:1] == ["ACK"]]
    assert proc.returncode in (0, CRASH_EXIT_CODE), err.decode()[-2000:]
    return proc.returncode, acks


def check_writer_crash(root: Path, run_id: str, label: str, acks: list[tuple[int, str]]) -> str:
    """The acked events are there; the in-flight one is there iff it was written; reconcile; verify."""
    store = JsonlStore(root)
    chain = read_chain(store.path(run_id), run_id)
    assert chain.torn is None, f"{label}: a crash point between syscalls left a torn tail"
    hashes = chain.hashes
    assert all(hashes.get(seq) == h for seq, h in acks), f"{label}: an acked event is missing"
    in_flight_written = len(chain.entries) - len(acks)
    expected = 0 if label == "before-write" else 1
    assert in_flight_written == expected, f"{label}: {in_flight_written} unacked events on disk"
    # Killed right after writing `succeeded`: the run did end; otherwise it must be abandoned.
    ended = chain.types[-1] == "succeeded"
    current = reconcile.current_state(store, run_id)
    assert current.state.status == ("succeeded" if ended else "abandoned"), f"{label}: status {current.state.status}"
    assert not list(verify_file(store.path(run_id), run_id))
    after = read_chain(store.path(run_id), run_id)
    assert after.types.count("abandoned") == (0 if ended else 1) and after.types[-1] == current.state.status
    return current.state.status


def crash_loop(base: Path, label: str) -> dict[str, int]:
    """Crash at ``label`` hit 1, 2, ... until the writer completes; check each crash."""
    crashes = acked = 0
    for n in range(1, 10_000):
        root = base / f"{label}-{n}"
        run_id = f"cp-{label}-{n}"
        code, acks = run_writer(root, run_id, f"{label}:{n}")
        if code == 0:
            return {"crashes": crashes, "acked": acked, "completed_at": n}
        check_writer_crash(root, run_id, label, acks)
        crashes += 1
        acked += len(acks)
    raise AssertionError("the crash loop never completed")


@pytest.mark.slow
def test_writer_crash_points_leave_a_readable_reconcilable_journal(tmp_path: Path) -> None:
    """A crash before write, between write and fsync, or between fsync and return loses nothing acked."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(WRITER_LABELS, pool.map(lambda label: crash_loop(tmp_path, label), WRITER_LABELS)))
    for label, result in results.items():
        assert result["crashes"] >= WRITER_EVENTS // 2, (label, result)
        record(2, f"crash point {label}", 0, crashes=result["crashes"], acked_events=result["acked"])


def _torn_orphan(root: Path, run_id: str) -> tuple[JsonlStore, int, int]:
    store = JsonlStore(root)
    fragment = b'{"v":1,"run_id":"' + run_id.encode() + b'","seq":5,"ty'
    offset = write_orphan(store, run_id, events=5, tail=fragment)
    return store, offset, len(fragment)


@pytest.mark.parametrize("command", ["reconcile", "history"])
@pytest.mark.parametrize("label", REPAIR_LABELS)
def test_reconcile_crash_points_leave_a_repairable_journal(tmp_path: Path, label: str, command: str) -> None:
    """A reconciler killed after quarantining a torn tail, or after truncating it, leaves a journal
    that reads; the next reconcile finishes the job with one quarantine file and one abandoned."""
    run_id = "orphan-1"
    store, offset, length = _torn_orphan(tmp_path / "root", run_id)
    args = ("reconcile", run_id) if command == "reconcile" else ("history",)
    crashed = run_cli(store.root, *args, env={"RUNJOURNAL_CRASH_AT": f"{label}:1"})
    assert crashed.code == CRASH_EXIT_CODE, crashed.describe()
    chain = read_chain(store.path(run_id), run_id)
    assert len(chain.entries) == 5 and "abandoned" not in chain.types
    assert (chain.torn is not None) == (label == "reconcile-quarantined")
    [quarantine] = quarantine_files(store, run_id)
    assert quarantine.stat().st_size == length
    current = reconcile.current_state(store, run_id)
    assert current.state.status == "abandoned"
    terminal = current.state.terminal
    assert terminal.tail_quarantined is not None and terminal.tail_quarantined.offset == offset
    assert terminal.tail_quarantined.length == length
    assert quarantine_files(store, run_id) == [quarantine]
    assert not list(verify_file(store.path(run_id), run_id))
    record(2, f"crash point {label} ({command})", 0, crashes=1, repaired=1)



INDEX_LABELS = ("index-segment-written", "index-manifest-written")


def _index_root(root: Path) -> JsonlStore:
    """Forty runs (orphaned, torn, finished): one segment of the index, and live runs in its manifest."""
    store = JsonlStore(root)
    for i in range(40):
        run_id = f"20260101T{i:06d}000000Z-1dx0"
        if i % 4 == 3:
            write_journal(root, make_stream(run_id, terminal="succeeded"))
        else:
            write_orphan(store, run_id, events=2 + i % 3, tail=b'{"torn' if i % 7 == 0 else b"")
    return store


def _summaries(store: JsonlStore) -> list[tuple[str, str]]:
    return [(s.run_id, s.status) for s in index.HistoryIndex(store, PROJECTOR, save=False).summaries()]


@pytest.mark.parametrize("label", INDEX_LABELS)
def test_a_crash_in_the_middle_of_the_index_write_loses_nothing(tmp_path: Path, label: str) -> None:
    """Killed after writing a segment but before the manifest that names it, or after writing the
    manifest's temp file but before its rename, the index still reads, the next refresh gives
    exactly what a rebuild gives, and every journal verifies."""
    store = _index_root(tmp_path / "root")
    crashes = 0
    for n in (1,):  # one segment (40 runs) and one manifest per refresh: the first write is the only one
        shutil.rmtree(store.root / "index", ignore_errors=True)  # every index file has to be written again
        proc = python_child("index", str(store.root), env={"RUNJOURNAL_CRASH_AT": f"{label}:{n}"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == CRASH_EXIT_CODE, err.decode()[-2000:]
        crashes += 1
        after_crash = _summaries(store)
        rebuilt = tmp_path / f"rebuilt-{n}"
        shutil.copytree(store.runs_dir, rebuilt / "runs")
        assert after_crash == _summaries(JsonlStore(rebuilt)), f"{label}:{n}: the index disagrees with a rebuild"
        assert index.HistoryIndex(store, PROJECTOR).refresh() == 40
    for run_id in store.run_ids():
        assert not [p for p in verify_file(store.path(run_id), run_id) if p.kind != "torn-tail"]
    record(2, f"crash point {label}", 0, crashes=crashes, runs_indexed=40)
