"""Many hosts, one PostgreSQL history: writers on hosts A and B, a reader on host C.

Each writer "host" is a real process (``tests/multihost_child.py``) given a hostname of its
own with ``unshare --uts``; the reader is the real ``runjournal`` CLI, run under
``unshare --uts`` as ``host-c``. All of them reach the throw-away server over TCP on
127.0.0.1. Liveness is judged from the server's lock table and clock only, so the tests
kill, freeze and cut off writers and check what the reader records, and that a writer
whose run was recorded abandoned can no longer append to it.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from run_helpers import cli_argv, wait_for

from runjournal.journal.errors import WriterClosedError, WriterFencedError
from runjournal.journal.events import Heartbeat
from runjournal.journal.postgres.store import PgRunWriter, PgStore
from runjournal.journal.procfacts import process_info
from runjournal.journal.records import Cursor
from runjournal.journal.store import utc_now

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHILD = HERE / "multihost_child.py"
READER_HOST = "host-c"
INTERVAL = 0.2
"""Seconds between a writer's heartbeats (and its recorded ``heartbeat_interval``: lease 0.6 s)."""
WRITER_EVENT_TYPES = {"started", "step-progress", "heartbeat"}
FENCE_ERRORS = {"WriterFencedError", "JournalWriteError"}
CLI_TIMEOUT = 60
STARTUP_TIMEOUT = 30.0
SESSION_DROP_TIMEOUT = 10.0
"""How long the server may take to notice a writer's session is gone (SIGKILL, terminate)."""


def under_host(hostname: str, argv: list[str]) -> list[str]:
    """``argv`` run in a UTS namespace of its own named ``hostname`` (the process is exec'ed: same pid)."""
    return ["unshare", "--uts", "sh", "-c", 'hostname "$1" || exit 97; shift; exec "$@"', "sh", hostname, *argv]


@pytest.fixture(scope="module")
def uts_namespaces() -> None:
    """Fail (never skip) unless ``unshare --uts`` can give a process its own hostname here."""
    argv = under_host("host-probe", ["hostname"])
    try:
        result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"the multi-host tests need `unshare --uts` (run as root): {exc}")
    if result.returncode != 0 or result.stdout.strip() != "host-probe":
        pytest.fail(
            "the multi-host tests need `unshare --uts` to give a process its own hostname (run as root): "
            f"{argv} exited {result.returncode}, stdout {result.stdout!r}, stderr {result.stderr.strip()!r}"
        )


@dataclass
class WriterHost:
    """One writer process under its own hostname, with its stdout lines arriving on a queue."""

    name: str
    proc: subprocess.Popen[str]
    stderr_path: Path
    lines: queue.Queue[dict[str, Any] | None] = field(default_factory=queue.Queue)
    runs: list[str] = field(default_factory=list)
    fenced: dict[str, dict[str, Any]] = field(default_factory=dict)

    def pump(self) -> None:
        """Copy stdout lines to the queue (a thread; ``None`` at end of file)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put({"unparsed": line})
        self.lines.put(None)

    def next_line(self, deadline: float, what: str) -> dict[str, Any]:
        """The next stdout line as JSON; fail with the child's stderr on EOF or at ``deadline``."""
        try:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"{self.name}: timed out waiting for {what}\n{self.diagnostics()}")
        if line is None:
            pytest.fail(f"{self.name}: writer exited while waiting for {what}\n{self.diagnostics()}")
        return line

    def diagnostics(self) -> str:
        """The child's exit status and stderr, for failure messages."""
        try:
            err = self.stderr_path.read_text(errors="replace")[-4000:]
        except OSError as exc:
            err = f"(no stderr: {exc})"
        return f"exit status {self.proc.poll()}; stderr:\n{err}"

    def drain_fenced(self) -> dict[str, dict[str, Any]]:
        """Collect any ``fenced`` lines already printed (no waiting)."""
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return self.fenced
            if line is not None and "fenced" in line:
                self.fenced[line["fenced"]] = line

    def wait_fenced(self, timeout: float) -> dict[str, dict[str, Any]]:
        """Wait until every run of this host reported a refused append."""
        deadline = time.monotonic() + timeout
        while set(self.fenced) != set(self.runs):
            line = self.next_line(deadline, f"'fenced' lines for {sorted(set(self.runs) - set(self.fenced))}")
            assert "fenced" in line, f"{self.name}: unexpected line {line}"
            self.fenced[line["fenced"]] = line
        return self.fenced

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the writer process itself."""
        os.kill(self.proc.pid, signum)

    def state(self) -> str | None:
        """The kernel's state of the writer process (None once it is gone)."""
        info = process_info(self.proc.pid)
        return None if info is None else info.state

    def kill(self) -> None:
        """SIGKILL (works on a stopped process too) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def launch(pg_url: str, tmp_path: Path, uts_namespaces: None) -> Iterator[Callable[[str, int], WriterHost]]:
    """Start writer hosts (``launch("host-a", 3)``); every one is SIGKILLed and reaped afterwards."""
    started: list[WriterHost] = []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))

    def start(name: str, count: int) -> WriterHost:
        stderr_path = tmp_path / f"{name}.stderr"
        with stderr_path.open("w") as err:
            proc = subprocess.Popen(
                under_host(name, [sys.executable, str(CHILD), pg_url, str(count), str(INTERVAL)]),
                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True, cwd=tmp_path, env=env,
            )
        host = WriterHost(name, proc, stderr_path)
        started.append(host)
        threading.Thread(target=host.pump, name=f"pump-{name}", daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        for _ in range(count):
            line = host.next_line(deadline, "its runs to be announced")
            assert line.get("host") == name, f"{name} recorded the wrong host (unshare --uts failed?): {line}"
            assert line.get("pid") == proc.pid, f"{name}: the writer is not the launched pid: {line}"
            host.runs.append(line["run_id"])
        return host

    try:
        yield start
    finally:
        for host in started:
            host.kill()
            if host.proc.stdout is not None:
                host.proc.stdout.close()


class Reader:
    """The reader "host": the real CLI, under hostname ``host-c``, on the same database."""

    def __init__(self, url: str, root: Path) -> None:
        self.url = url
        self.root = root

    def run(self, *args: str) -> Any:
        """Run ``runjournal --store URL ARGS`` as host-c and return its parsed JSON output."""
        argv = under_host(READER_HOST, cli_argv(self.root, "--store", self.url, *args))
        result = subprocess.run(
            argv, check=False, capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=self.root
        )
        assert result.returncode == 0, f"{args} exited {result.returncode}: {result.stderr.strip()}"
        return json.loads(result.stdout)

    def history(self) -> dict[str, dict[str, Any]]:
        """``history --json`` (reconciles), by run id."""
        return {row["run_id"]: row for row in self.run("history", "--json")}

    def show(self, run_id: str) -> dict[str, Any]:
        """``show RUN --json`` (reconciles)."""
        return self.run("show", run_id, "--json")


@pytest.fixture
def reader(pg_url: str, tmp_path: Path, uts_namespaces: None) -> Reader:
    """The CLI as host-c, with its own (empty) local root for side files."""
    root = tmp_path / "reader-root"
    root.mkdir()
    return Reader(pg_url, root)


@pytest.fixture
def db(pg_url: str) -> Iterator[Any]:
    """A plain autocommit connection for inspecting rows and terminating sessions (the test's own view)."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True, application_name="multihost test") as conn:
        yield conn


def event_rows(db: Any, run_ids: list[str]) -> dict[str, list[tuple[int, str, bytes]]]:
    """Every stored row ``(seq, type, line)`` of ``run_ids``, in seq order."""
    rows: dict[str, list[tuple[int, str, bytes]]] = {run_id: [] for run_id in run_ids}
    for run_id, seq, kind, line in db.execute(
        "SELECT run_id, seq, type, line FROM rj_events WHERE run_id = ANY(%s) ORDER BY run_id, seq", (run_ids,)
    ):
        rows[run_id].append((seq, kind, bytes(line)))
    return rows


def assert_untouched_and_live(db: Any, host: WriterHost, before: dict[str, list[tuple[int, str, bytes]]]) -> None:
    """``host``'s rows seen in ``before`` are byte-identical now, and only its own events follow them."""
    now = event_rows(db, host.runs)
    for run_id in host.runs:
        old, new = before[run_id], now[run_id]
        assert new[: len(old)] == old, f"{host.name}'s run {run_id} had rows changed under it"
        assert [seq for seq, _, _ in new] == list(range(len(new))), f"{run_id}: gap in seqs"
        kinds = {kind for _, kind, _ in new}
        assert kinds <= WRITER_EVENT_TYPES, f"{host.name}'s run {run_id} got events from someone else: {kinds}"


def wait_until_stopped(host: WriterHost) -> None:
    """Poll the kernel until ``host``'s writer is stopped (SIGSTOP is delivered asynchronously)."""
    wait_for(lambda: host.state() == "stopped", f"{host.name} (pid {host.proc.pid}) to stop", timeout=10)


def iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def assert_abandoned_by_reader(detail: dict[str, Any], writer_host: str) -> None:
    """``show --json`` of a run the reader abandoned because its writer's session ended."""
    assert detail["status"] == "abandoned" and detail["reason"] == "writer-session-ended", detail
    assert detail["terminal"]["type"] == "abandoned", detail["terminal"]
    assert detail["writer"]["host"] == writer_host
    assert detail["checker"]["host"] == READER_HOST != writer_host, detail["checker"]
    assert detail["terminal"]["checker"]["host"] == READER_HOST
    ev = detail["evidence"]
    assert ev["lock_scope"] == "server" and ev["lock"] == "free" and ev["lock_holder"] is None, ev
    assert {"server_lock", "server_clock"} <= set(ev["checked"]), ev
    assert ev["host"] == writer_host and ev["host_now"] == READER_HOST, ev
    server_now, last = iso(ev["server_now"]), iso(ev["last_received_at"])
    assert server_now >= last, ev
    assert ev["silence_seconds"] == pytest.approx((server_now - last).total_seconds(), abs=1e-3), ev
    assert detail["terminal"]["last_seq"] == detail["last_seq"] - 1, detail


def stale_cursor(store: PgStore, run_id: str) -> Cursor:
    """The cursor host A's writer still has: just before the ``abandoned`` event it never saw."""
    reader = store.read(run_id)
    cursor = Cursor()
    for record in reader:
        if record.event.type == "abandoned":
            return cursor
        cursor = reader.cursor
    raise AssertionError(f"run {run_id} has no abandoned event")


def assert_reconnected_writer_fenced(url: str, run_id: str) -> None:
    """A writer of ``run_id`` that reconnects after its run was abandoned cannot append, locked or not."""
    store = PgStore(url)
    try:
        for relock in (False, True):
            writer = PgRunWriter.connect(store, run_id, durability="state", clock=utc_now)
            try:
                writer.cursor = stale_cursor(store, run_id)
                if relock:
                    assert writer.try_lock(), "the abandoned run's lock should be free"
                with pytest.raises(WriterFencedError):
                    writer.append(Heartbeat)
                with pytest.raises(WriterClosedError):  # refused for good, not just once
                    writer.append(Heartbeat)
            finally:
                writer.close()
    finally:
        store.close()


def wait_for_abandoned(reader: Reader, a: WriterHost, b: WriterHost) -> dict[str, dict[str, Any]]:
    """Poll the reader's history until all of A's runs are abandoned, asserting B's stay running on every read."""

    def a_abandoned() -> dict[str, dict[str, Any]] | None:
        rows = reader.history()
        for run_id in b.runs:
            assert rows[run_id]["status"] == "running", f"host B's run was judged dead: {rows[run_id]}"
        return rows if all(rows[run_id]["status"] == "abandoned" for run_id in a.runs) else None

    return wait_for(a_abandoned, "host A's runs to be recorded abandoned", timeout=SESSION_DROP_TIMEOUT, every=0.05)


def test_killed_host_runs_are_abandoned_by_a_reader_on_another_host(
    launch: Callable[[str, int], WriterHost], reader: Reader, db: Any
) -> None:
    """SIGKILLing host A's writer ends its sessions, and a reader on host C records only A's runs abandoned."""
    a, b = launch("host-a", 3), launch("host-b", 2)
    rows = reader.history()
    assert {run_id: (rows[run_id]["status"], rows[run_id]["host"]) for run_id in a.runs + b.runs} == {
        **{run_id: ("running", "host-a") for run_id in a.runs},
        **{run_id: ("running", "host-b") for run_id in b.runs},
    }
    b_before = event_rows(db, b.runs)

    a.kill()

    rows = wait_for_abandoned(reader, a, b)
    for run_id in a.runs:
        assert rows[run_id]["reason"] == "writer-session-ended", rows[run_id]
        assert rows[run_id]["host"] == "host-a"
        assert_abandoned_by_reader(reader.show(run_id), "host-a")
    a_rows = event_rows(db, a.runs)
    for run_id in a.runs:
        kinds = [kind for _, kind, _ in a_rows[run_id]]
        assert kinds.count("abandoned") == 1 and kinds[-1] == "abandoned", kinds
        checker = json.loads(a_rows[run_id][-1][2])["checker"]
        assert checker["host"] == READER_HOST, checker

    # B kept writing throughout, and the reader never wrote to B's runs.
    wait_for(lambda: all(len(rows) > len(b_before[r]) for r, rows in event_rows(db, b.runs).items()),
             "host B to keep heartbeating", timeout=10)
    assert_untouched_and_live(db, b, b_before)
    rows = reader.history()
    assert all(rows[run_id]["status"] == "running" for run_id in b.runs)
    assert not b.drain_fenced(), f"host B was refused an append: {b.fenced}"
    assert b.proc.poll() is None


def test_partitioned_host_is_fenced_after_its_runs_are_abandoned(
    launch: Callable[[str, int], WriterHost], reader: Reader, db: Any
) -> None:
    """A frozen host whose sessions the server dropped gets its runs abandoned, and is refused on waking."""
    a, b = launch("host-a", 2), launch("host-b", 2)
    b_before = event_rows(db, b.runs)

    a.signal(signal.SIGSTOP)
    wait_until_stopped(a)
    names = [f"runjournal writer {run_id}"[:63] for run_id in a.runs]
    terminated = db.execute(
        "SELECT application_name, pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE 'runjournal writer %%' "
        "AND application_name = ANY(%s)",
        (names,),
    ).fetchall()
    assert sorted(terminated) == sorted((name, True) for name in names), terminated

    rows = wait_for_abandoned(reader, a, b)
    for run_id in a.runs:
        assert rows[run_id]["reason"] == "writer-session-ended", rows[run_id]
        assert_abandoned_by_reader(reader.show(run_id), "host-a")
    assert a.state() == "stopped"  # it was judged by its session, never by its process
    abandoned_rows = event_rows(db, a.runs)

    a.signal(signal.SIGCONT)
    fenced = a.wait_fenced(timeout=15)
    for line in fenced.values():
        assert line["error"] in FENCE_ERRORS, line
    assert a.proc.poll() is None, "host A must survive its refused appends"

    # Had host A reconnected instead (new sessions, its old cursors), it would be fenced too.
    for run_id in a.runs:
        assert_reconnected_writer_fenced(reader.url, run_id)

    after = event_rows(db, a.runs)
    assert after == abandoned_rows, "host A appended after its runs were recorded abandoned"
    for run_id in a.runs:
        kinds = [kind for _, kind, _ in after[run_id]]
        assert kinds[-1] == "abandoned" and kinds.count("abandoned") == 1, kinds
    rows = reader.history()
    for run_id in a.runs:
        assert (rows[run_id]["status"], rows[run_id]["reason"]) == ("abandoned", "writer-session-ended")
    assert event_rows(db, a.runs) == abandoned_rows, "reading history again changed host A's runs"

    for run_id in b.runs:
        assert rows[run_id]["status"] == "running", rows[run_id]
    assert_untouched_and_live(db, b, b_before)
    assert not b.drain_fenced(), f"host B was refused an append: {b.fenced}"


def test_frozen_host_holding_its_locks_is_never_abandoned(
    launch: Callable[[str, int], WriterHost], reader: Reader, db: Any
) -> None:
    """A stopped writer whose sessions still hold their locks stays running (unknown) past its lease, never abandoned."""
    a, b = launch("host-a", 2), launch("host-b", 1)
    probe = a.runs[0]
    a.signal(signal.SIGSTOP)
    wait_until_stopped(a)

    def silent_past_lease() -> dict[str, Any] | None:
        detail = reader.show(probe)
        assert detail["status"] == "running" and detail["terminal"] is None, detail
        derived = detail["derived"]
        assert derived["liveness"] in ("alive", "unknown") and derived["reason"] is None, derived
        ev = derived["evidence"]
        assert ev["lock"] == "held", ev
        silence = ev["silence_seconds"]
        return detail if silence is not None and silence > ev["lease_seconds"] else None

    detail = wait_for(silent_past_lease, "host A's run to be silent past its lease", timeout=15, every=0.05)
    derived = detail["derived"]
    assert derived["liveness"] == "unknown", derived
    holder = derived["evidence"]["lock_holder"]
    assert holder["application"] == f"runjournal writer {probe}"[:63] and holder["client_addr"] == "127.0.0.1", holder
    rows = reader.history()
    for run_id in a.runs + b.runs:
        assert rows[run_id]["status"] == "running", rows[run_id]
    for run_id, kinds in ((r, [k for _, k, _ in rows_]) for r, rows_ in event_rows(db, a.runs).items()):
        assert "abandoned" not in kinds, (run_id, kinds)

    # Woken, the writer simply goes on: its sessions never ended, so nothing fences it.
    count = {run_id: len(rows_) for run_id, rows_ in event_rows(db, a.runs).items()}
    a.signal(signal.SIGCONT)
    wait_for(lambda: all(len(rows_) > count[r] for r, rows_ in event_rows(db, a.runs).items()),
             "host A to heartbeat again", timeout=10)
    wait_for(lambda: reader.show(probe)["derived"]["liveness"] == "alive", "host A to be judged alive", timeout=15)
    assert not a.drain_fenced() and not b.drain_fenced()
