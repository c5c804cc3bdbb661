"""PostgreSQL writers survive the server: restarts and ended sessions are ridden out, partitions give up in time.

A throw-away cluster of its own (it is restarted), whose server runs in a network namespace
the test can cut off from the writer's (``tests/pgnetns.py``): the writer, a real
``runjournal run``, connects over TCP through that link; readers use the server's Unix
socket, which no cut affects.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import TEST_PG_SETTINGS
from pgnetns import NetCluster, NetPair
from run_helpers import cli_argv, process_gone, wait_for, write_workflow

from runjournal.journal.postgres import PgStore
from runjournal.projections.fold import fold

pytestmark = pytest.mark.slow

INTERVAL = 1.0
LEASE = 3 * INTERVAL
MARGIN = 3.0
"""Seconds a partitioned writer may take beyond its lease to stop its steps and exit (one
connection attempt, which psycopg lets run 2 s at least, and the steps' grace)."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[NetCluster]:
    """A cluster of this module's own, behind a link the tests can cut."""
    base = Path(tempfile.mkdtemp(prefix="rj-pgnet-"))
    try:
        net = NetPair()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"these tests need network namespaces (root, unshare, nsenter, ip): {exc}")
    server = NetCluster(base, net, settings=TEST_PG_SETTINGS)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        net.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def urls(cluster: NetCluster) -> Iterator[tuple[str, str]]:
    """A fresh database: ``(reader URL over the Unix socket, writer URL over the cuttable link)``."""
    name = f"rj_net_{uuid.uuid4().hex}"
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    reader = cluster.url.replace("/postgres?", f"/{name}?")
    writer = cluster.writer_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield reader, writer
    finally:
        cluster.net.heal_quietly()
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Readers:
    """`runjournal history` run over and over while the writer works: every status any reader saw."""

    def __init__(self, root: Path, url: str) -> None:
        self.argv = cli_argv(root, "--store", url, "history", "--json")
        self.seen: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Readers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _loop(self) -> None:
        while not self._stop.is_set():
            result = subprocess.run(self.argv, capture_output=True, text=True, timeout=60)
            if result.returncode == 0:
                self.seen.update(row["status"] for row in json.loads(result.stdout))
            else:
                self.seen["(no answer)"] += 1  # the server is down for a moment: a reader fails, writes nothing
            self._stop.wait(0.2)


def start_writer(cluster: NetCluster, root: Path, url: str, wf: Path) -> subprocess.Popen[str]:
    argv = cluster.net.in_writer_net(cli_argv(root, "--store", url, "run", str(wf)))
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def events(reader_url: str, root: Path) -> list[Any]:
    store = PgStore(reader_url, local_root=root)
    try:
        [run_id] = list(store.run_ids())
        return list(store.read(run_id).events())
    finally:
        store.close()


def items_started(reader_url: str, root: Path, count: int) -> bool:
    try:
        evs = events(reader_url, root)
    except ValueError:
        return False
    return sum(1 for e in evs if e.type == "step-progress" and e.item_state == "started") == count


@pytest.mark.parametrize("loss", ["pg_ctl restart", "pg_terminate_backend"])
def test_a_writer_rides_out_a_lost_session(cluster: NetCluster, urls: tuple[str, str], tmp_path: Path, loss: str) -> None:
    """Mid-step the server restarts (or ends the writer's session): the run ends succeeded, every step and item
    recorded once, and no reader ever abandons it."""
    reader_url, writer_url = urls
    side = tmp_path / "side"
    wf = write_workflow(tmp_path, f"""
        name = "survive"
        heartbeat_interval = {INTERVAL}
        [[steps]]
        name = "fan"
        foreach = ["a", "b", "c"]
        concurrency = 3
        run = "echo start {{item}} >> {side}; sleep 2.5; echo end {{item}} >> {side}"
        [[steps]]
        name = "last"
        run = "echo last >> {side}"
    """)
    root = tmp_path / "side-files"
    writer = start_writer(cluster, root, writer_url, wf)
    try:
        with Readers(root, reader_url) as readers:
            wait_for(lambda: items_started(reader_url, root, 3), "the three items to start", timeout=30)
            if loss == "pg_ctl restart":
                cluster.restart()
            else:
                with psycopg.connect(reader_url, autocommit=True) as conn:
                    ended = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                         "WHERE application_name LIKE 'runjournal writer %'").fetchall()
                assert ended == [(True,)]
            out, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err
        assert "re-established" in err
        evs = events(reader_url, root)
        assert fold(evs).status == "succeeded"
        progress = Counter((e.step, e.item, e.item_state or e.state) for e in evs if e.type == "step-progress")
        for item in "abc":
            assert progress[("fan", item, "started")] == 1 and progress[("fan", item, "succeeded")] == 1
        assert progress[("last", None, "started")] == 1 and progress[("last", None, "succeeded")] == 1
        assert "abandoned" not in {e.type for e in evs}
        assert not {"abandoned", "abandoned?"} & set(readers.seen), readers.seen
        assert Counter(side.read_text().split("\n")) == Counter(
            [f"{w} {i}" for i in "abc" for w in ("start", "end")] + ["last", ""])
    finally:
        writer.kill()
        writer.wait()


def test_a_partitioned_writer_gives_up_in_time_and_its_run_is_abandoned(
    cluster: NetCluster, urls: tuple[str, str], tmp_path: Path
) -> None:
    """Cut off from the server past its lease: the writer stops its step and exits non-zero within the lease plus a
    margin, with one line saying why; readers record the run abandoned."""
    reader_url, writer_url = urls
    pid_file = tmp_path / "step.pid"
    wf = write_workflow(tmp_path, f"""
        name = "cut"
        heartbeat_interval = {INTERVAL}
        [[steps]]
        name = "long"
        run = "echo $$ > {pid_file}; sleep 60"
    """)
    root = tmp_path / "side-files"
    writer = start_writer(cluster, root, writer_url, wf)
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() or writer.poll() is not None,
                 "the step to start", timeout=30)
        assert writer.poll() is None, writer.communicate()
        step = int(pid_file.read_text())
        cluster.net.partition()
        cut_at = time.monotonic()
        _, err = writer.communicate(timeout=LEASE + MARGIN + 30)
        took = time.monotonic() - cut_at
        assert writer.returncode == 3, err
        assert took <= LEASE + MARGIN, (took, err)
        lines = [line for line in err.splitlines() if line.startswith("runjournal: error:")]
        assert len(lines) == 1 and "could not take the run back" in lines[0], err
        assert process_gone(step)
        store = PgStore(reader_url, local_root=root)
        try:
            [run_id] = list(store.run_ids())
            row = wait_for(lambda: (r := _history(root, reader_url)[run_id])["status"] == "abandoned" and r,
                           "readers to record the run abandoned", timeout=30, every=0.2)
            assert row["reason"] == "writer-session-ended"
        finally:
            store.close()
    finally:
        cluster.net.heal_quietly()
        writer.kill()
        writer.wait()
        if pid_file.exists() and pid_file.read_text().strip():
            try:
                os.kill(int(pid_file.read_text()), 9)
            except ProcessLookupError:
                pass


def _history(root: Path, url: str) -> dict[str, dict[str, Any]]:
    result = subprocess.run(cli_argv(root, "--store", url, "history", "--json"), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return {row["run_id"]: row for row in json.loads(result.stdout)}
