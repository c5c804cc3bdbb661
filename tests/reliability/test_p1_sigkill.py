"""Promise 1: nothing acknowledged is lost to a process crash (blackbox SIGKILL loop).

Real writers print ``ACK <seq> <h>`` after each append returns; they are SIGKILLed at random
moments; after each kill every acknowledged event must be on disk exactly once, in order,
with the same chain hash, the next history must reconcile the run as abandoned, and verify
must pass. 30 API-writer kills in CI, 800 under RUNJOURNAL_FULL=1 (plus the attached
``runjournal run`` kills in test_p1_run_sigkill.py: 1,000 in all).
"""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.verify import verify_file

from .figures import record
from .harness import Kill, check_acked, check_after_history, kill_api_writer
from .helpers import run_cli, scale

history = pytest.importorskip("runjournal.projections.history")

API_KILLS = scale(30, 800)
CLI_CHECK_EVERY = 10
"""Every n-th kill is checked through the console script (`history --json`, `verify`) instead of the API."""


def _check_in_process(store: JsonlStore, kill: Kill) -> str:
    states = {c.run_id: c for c in history.run_states(store)}
    current = states[kill.run_id]
    assert current.error is None, f"{kill.run_id}: history error {current.error}"
    check_after_history(
        store, kill, current.state.status, lambda: [str(p) for p in verify_file(store.path(kill.run_id), kill.run_id)]
    )
    before = store.path(kill.run_id).read_bytes()
    list(history.run_states(store))
    assert store.path(kill.run_id).read_bytes() == before, "a second history changed the journal"
    return current.state.status


def _check_with_cli(root: Path, store: JsonlStore, kill: Kill) -> str:
    listed = run_cli(root, "history", "--json")
    assert listed.code == 0, listed.describe()
    status = {row["run_id"]: row["status"] for row in listed.json()}[kill.run_id]  # type: ignore[union-attr]

    def verify() -> list[str]:
        result = run_cli(root, "verify", kill.run_id)
        return [] if result.code == 0 else [result.stdout]

    check_after_history(store, kill, status, verify)
    return status


def one_kill(base: Path, index: int, seed: int) -> dict[str, object]:
    """Kill one API writer and check everything; return its figures."""
    rng = random.Random(seed)
    root = base / f"k{index}"
    store = JsonlStore(root)
    run_id = f"kill-{index:04d}"
    kill = kill_api_writer(root, run_id, rng)
    lost, torn = check_acked(store, kill)
    status = "no-file"
    if store.exists(run_id):
        status = _check_with_cli(root, store, kill) if index % CLI_CHECK_EVERY == 0 else _check_in_process(store, kill)
    return {"acked": len(kill.acks), "lost": lost, "torn": torn, "status": status, "moment": kill.moment}


@pytest.mark.slow
def test_sigkilled_api_writers_lose_no_acknowledged_event(tmp_path: Path) -> None:
    """SIGKILLed API writers keep every acknowledged event, and history reconciles each run to abandoned."""
    seeds = [random.Random(f"p1-{i}").randrange(1 << 30) for i in range(API_KILLS)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda i: one_kill(tmp_path, i, seeds[i]), range(API_KILLS)))
    statuses = Counter(str(o["status"]) for o in outcomes)
    lost = sum(int(o["lost"]) for o in outcomes)  # type: ignore[call-overload]
    record(
        1, "api-writer SIGKILL", lost,
        kills=len(outcomes),
        acked_events=sum(int(o["acked"]) for o in outcomes),  # type: ignore[call-overload]
        torn_tails=sum(1 for o in outcomes if o["torn"]),
        killed_in_startup=sum(1 for o in outcomes if o["moment"] == "startup"),
        abandoned=statuses["abandoned"],
        finished_first=statuses["succeeded"],
        no_file=statuses["no-file"],
    )
    assert lost == 0
    assert statuses["abandoned"] >= len(outcomes) // 2, statuses
