"""``follow`` on the PostgreSQL store: LISTEN/NOTIFY wakes the follower, only followed runs notify, and the CLI tails a live run."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from runjournal.journal.postgres.schema import lock_key, watch_channel
from runjournal.journal.postgres.store import PgStore
from runjournal.journal.run import start_run

FOLLOW = [sys.executable, "-m", "runjournal"]


def _wait_for_listener(url: str, deadline: float = 10.0) -> None:
    """Poll the server until a follower session has issued its LISTEN."""
    end = time.monotonic() + deadline
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < end:
            rows = conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = 'runjournal follow' AND query LIKE 'LISTEN%'"
            ).fetchall()
            if rows:
                return
            time.sleep(0.02)
    raise AssertionError("the follower never issued LISTEN")


def test_notification_for_the_run_wakes_the_watcher(pg_url: str) -> None:
    """An append to the run ends the wait with news (True), long before the 30 s poll would."""
    store = PgStore(pg_url)
    run = start_run("wf", ["a"], store=store)
    result: list[bool] = []
    watch = store.watch(run.run_id, poll_seconds=30)
    assert next(watch) is True  # listening now: whatever was appended before must be read
    waiter = threading.Thread(target=lambda: result.append(next(watch)))
    waiter.start()
    _wait_for_listener(pg_url)
    run.step_started("a")
    waiter.join(timeout=20)
    assert result == [True]
    watch.close()
    run.writer.close()


def test_other_runs_do_not_wake_the_watcher(pg_url: str) -> None:
    """Appends to another run are ignored: the watcher only returns at its poll, without news (False)."""
    store = PgStore(pg_url)
    mine = start_run("wf", ["a"], store=store)
    other = start_run("wf", ["a"], store=store)
    result: list[bool] = []
    watch = store.watch(mine.run_id, poll_seconds=1.0)
    assert next(watch) is True
    waiter = threading.Thread(target=lambda: result.append(next(watch)))
    waiter.start()
    _wait_for_listener(pg_url)
    other.step_started("a")
    other.step_succeeded("a")
    waiter.join(timeout=20)
    assert result == [False]
    watch.close()
    for run in (mine, other):
        run.writer.close()


def test_only_a_followed_run_notifies(pg_url: str) -> None:
    """Appends to a run nobody follows send no NOTIFY (no commit queues on the notify lock); once a session holds the run's watch lock, each append notifies the run's own channel."""
    store = PgStore(pg_url)
    run = start_run("wf", ["a"], store=store)
    with psycopg.connect(pg_url, autocommit=True) as listener, psycopg.connect(pg_url, autocommit=True) as follower:
        listener.execute(f'LISTEN "{watch_channel(run.run_id)}"')  # hears the channel, but does not follow
        run.step_started("a")
        assert list(listener.notifies(timeout=0.5, stop_after=1)) == []
        follower.execute("SELECT pg_advisory_lock_shared(%s)", (lock_key("watch", run.run_id),))
        run.step_succeeded("a")
        heard = list(listener.notifies(timeout=10, stop_after=1))
        assert [n.payload for n in heard] == [run.run_id]
    run.writer.close()


@pytest.mark.slow
def test_cli_follow_tails_a_live_run_to_its_end(pg_url: str, tmp_path: Path) -> None:
    """`runjournal --store URL follow RUN --jsonl` prints events appended while it waits and exits 0 on success."""
    store = PgStore(pg_url)
    run = start_run("wf", ["a"], store=store)
    follower = subprocess.Popen(
        [*FOLLOW, "--root", str(tmp_path), "--store", pg_url, "follow", run.run_id, "--jsonl", "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        _wait_for_listener(pg_url, deadline=30)
        run.step_started("a")
        run.step_succeeded("a")
        run.succeed()
        out, err = follower.communicate(timeout=60)
    finally:
        follower.kill()
        run.writer.close()
    assert follower.returncode == 0, err.decode()
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["type"] for e in events] == ["started", "step-progress", "step-progress", "succeeded"]
    assert events[-1]["status_after"] == "succeeded"
