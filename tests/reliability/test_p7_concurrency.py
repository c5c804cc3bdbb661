"""Promise 7: concurrency. Ten reconciler processes, readers (history, which reconciles, and
verify) and a live writer share one root for a bounded time while new orphans keep appearing:
no live run is abandoned, every orphan is abandoned exactly once, and no line is corrupt.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from pathlib import Path

import pytest

from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.verify import verify_file

from .figures import record
from .harness import kill_api_writer
from .helpers import python_child, quarantine_files, read_chain, run_cli, scale, wait_for, write_orphan

history = pytest.importorskip("runjournal.projections.history")
pytest.importorskip("runjournal.projections.reconcile")

RECONCILERS = 10
READERS = 2
SECONDS = scale(3.0, 15.0)
LIVE = "20990101T000000000000Z-11fe"


def _new_orphan(store: JsonlStore, index: int) -> tuple[str, bool]:
    run_id = f"20260101T{index:06d}000000Z-0rph"
    torn = index % 3 == 0
    write_orphan(store, run_id, events=2 + index % 4, tail=b'{"v":1,"torn":' if torn else b"")
    return run_id, torn


class _HistoryReads(threading.Thread):
    """`runjournal history --json` in a loop while the workers run (the CLI reader)."""

    def __init__(self, store: JsonlStore, workers: list[subprocess.Popen[bytes]]) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.workers = workers
        self.count = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while any(w.poll() is None for w in self.workers):
            listed = run_cli(self.store.root, "history", "--json")
            self.count += 1
            if listed.code != 0:
                self.failures.append(listed.describe())


def _read_history_meanwhile(store: JsonlStore, workers: list[subprocess.Popen[bytes]]) -> _HistoryReads:
    reads = _HistoryReads(store, workers)
    reads.start()
    return reads


def _tagged(outputs: list[tuple[bytes, bytes]], tag: str) -> list[str]:
    """The words after ``tag`` on the workers' stdout lines that start with it."""
    return [line.split(" ", 1)[1] for out, _ in outputs for line in out.decode().splitlines() if line.startswith(tag)]


def _check_every_orphan(store: JsonlStore, orphans: dict[str, bool], killed_run: str) -> None:
    """Every orphan has exactly one `abandoned` (one quarantine file if torn); every journal verifies."""
    list(history.run_states(store))  # the orphans made after the last reconciler round
    for run_id, torn in orphans.items():
        chain = read_chain(store.path(run_id), run_id)
        assert chain.types.count("abandoned") == 1 and chain.types[-1] == "abandoned", (run_id, chain.types)
        assert len(quarantine_files(store, run_id)) == (1 if torn else 0), run_id
    if store.exists(killed_run):
        types = read_chain(store.path(killed_run), killed_run).types
        assert types.count("abandoned") + types.count("succeeded") == 1, types
    bad = [str(p) for run_id in store.run_ids() for p in verify_file(store.path(run_id), run_id)]
    assert not bad, bad


@pytest.mark.slow
def test_reconcilers_readers_and_a_live_writer_share_a_root(tmp_path: Path) -> None:
    """No live run abandoned, every orphan abandoned exactly once, every journal verifies."""
    store = JsonlStore(tmp_path / "root")
    orphans = dict(_new_orphan(store, i) for i in range(20))
    killed = kill_api_writer(store.root, "20260101T900000000000Z-k111", random.Random(7), events=60)
    stop = tmp_path / "stop-live-writer"
    live = python_child("live", str(store.root), LIVE, str(stop), "--pause", "0.005", stdout=subprocess.PIPE)
    wait_for(lambda: store.exists(LIVE), 20, "the live writer to create its run")
    kinds = ["reconciler"] * RECONCILERS + ["reader"] * READERS
    workers = [python_child(kind, str(store.root), "--seconds", str(SECONDS), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE) for kind in kinds]
    cli_reads = _read_history_meanwhile(store, workers)
    while any(w.poll() is None for w in workers):
        run_id, torn = _new_orphan(store, len(orphans))  # fresh orphans for the reconcilers to race on
        orphans[run_id] = torn
        time.sleep(0.02)
    cli_reads.join(60)
    outputs = [w.communicate(timeout=30) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err.decode()[-1500:] for _, err in outputs]
    assert live.poll() is None, "the live writer died during the test"
    stop.touch()
    live.communicate(timeout=30)
    assert live.returncode == 0

    abandoned_by = _tagged(outputs, "ABANDONED")
    assert not _tagged(outputs, "PROBLEM") and not cli_reads.failures, cli_reads.failures[:3]
    assert LIVE not in abandoned_by and len(abandoned_by) == len(set(abandoned_by))
    live_chain = read_chain(store.path(LIVE), LIVE)
    assert "abandoned" not in live_chain.types and live_chain.types[-1] == "succeeded"
    _check_every_orphan(store, orphans, killed.run_id)
    record(
        7, "10 reconcilers + readers + live writer", 0, seconds=SECONDS, reconcilers=RECONCILERS,
        readers=READERS + 1, orphans=len(orphans) + 1, abandoned_by_reconcilers=len(abandoned_by),
        torn_orphans=sum(orphans.values()), reconcile_and_read_rounds=sum(int(n) for n in _tagged(outputs, "ROUNDS")),
        cli_history_reads=cli_reads.count, live_events=len(live_chain.entries), live_abandoned=0,
        double_abandoned=0, corrupt_lines=0,
    )
