"""Reconciliation against real processes: killed, stopped, rebooted-away and pid-reusing writers, and racing reconcilers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runjournal.journal.events import AbandonReason
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.procfacts import process_info
from runjournal.journal.verify import verify_file
from runjournal.projections.fold import fold
from runjournal.projections.history import run_states
from runjournal.projections.reconcile import current_state, reconcile_run

pytestmark = pytest.mark.slow

DEADLINE_S = 30.0

# A writer that reports where it is: "run <id>" once, then "step <i>" after starting step i.
# It waits for a line on stdin before ending each step, so the test decides when it moves on.
WRITER = r"""
import sys
from runjournal.journal.identity import writer_identity
from runjournal.journal.run import start_run

root, steps, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
identity = writer_identity()
if mode == "other-boot":
    identity = identity.model_copy(update={"boot_id": "a-boot-before-the-last-reboot"})
if mode == "wrong-ticks":
    identity = identity.model_copy(update={"start_ticks": identity.start_ticks + 12345})
run = start_run("proc-test", [f"s{i}" for i in range(steps)], root=root, identity=identity)
with run:
    print("run", run.run_id, flush=True)
    for i in range(steps):
        run.step_started(f"s{i}")
        print("step", i, flush=True)
        if mode == "wrong-ticks":
            run.writer.close()  # lock released, process still alive
            print("closed", flush=True)
            sys.stdin.readline()
            import os; os._exit(0)
        sys.stdin.readline()
        run.step_succeeded(f"s{i}")
print("done", flush=True)
"""


class Writer:
    """A writer child process and the lines it has printed."""

    def __init__(self, root: Path, steps: int, mode: str = "normal") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(steps), mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.run_id = self.expect("run")[1]

    def expect(self, word: str) -> list[str]:
        """Block until the child prints a line starting with ``word`` (the child's own pace, no timing guesses)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith(word), f"expected {word!r} from the writer, got {line!r}"
        return line.split()

    def go(self) -> None:
        """Let the writer end its current step."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        """SIGKILL the writer and reap it."""
        self.proc.kill()
        self.proc.wait(timeout=DEADLINE_S)


@pytest.fixture
def writers() -> Iterator[list[Writer]]:
    """Writers started by a test; any still running at the end are killed."""
    started: list[Writer] = []
    yield started
    for writer in started:
        if writer.proc.poll() is None:
            os.kill(writer.proc.pid, signal.SIGCONT)
            writer.kill()


def _wait_for_state(pid: int, wanted: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        info = process_info(pid)
        if info is not None and info.state == wanted:
            return
        time.sleep(0.002)
    raise AssertionError(f"pid {pid} never became {wanted}")


def _bytes(store: JsonlStore, run_id: str) -> bytes:
    return store.path(run_id).read_bytes()


def test_sigkilled_writer_is_abandoned_by_the_next_history_read(journal_dir: Path, writers: list[Writer]) -> None:
    """SIGKILL mid-run: history shows abandoned (pid gone), abandoned is the last event, and forensics show where it stopped."""
    writer = Writer(journal_dir, 3)
    writers.append(writer)
    writer.expect("step")
    writer.go()
    writer.expect("step")  # s0 done, s1 in flight
    store = JsonlStore(journal_dir)
    before = list(store.read(writer.run_id).events())
    writer.kill()
    [current] = list(run_states(store))
    assert (current.status, current.reason, current.action) == ("abandoned", "originating-process-not-alive", "abandoned")
    events = list(store.read(writer.run_id).events())
    assert events[:-1] == before and events[-1].type == "abandoned"
    assert events[-1].evidence["pid"] == writer.proc.pid and events[-1].evidence["pid_state"] in ("gone", "reused")
    assert events[-1].last_seq == before[-1].seq
    assert {name: s.state for name, s in current.state.steps.items()} == {"s0": "succeeded", "s1": "started", "s2": "pending"}
    assert list(verify_file(store.path(writer.run_id), writer.run_id)) == []
    unchanged = _bytes(store, writer.run_id)
    assert current_state(store, writer.run_id).action == "terminal"
    assert _bytes(store, writer.run_id) == unchanged


def test_run_recorded_under_another_boot_is_host_rebooted(journal_dir: Path, writers: list[Writer]) -> None:
    """A run whose recorded boot id is not this boot's is abandoned as host-rebooted once its lock is free."""
    writer = Writer(journal_dir, 2, "other-boot")
    writers.append(writer)
    writer.expect("step")
    writer.kill()
    current = current_state(JsonlStore(journal_dir), writer.run_id)
    assert (current.status, current.reason) == ("abandoned", "host-rebooted")
    evidence = current.state.terminal.evidence
    assert evidence["boot_id_recorded"] == "a-boot-before-the-last-reboot" and evidence["boot_id_now"] != evidence["boot_id_recorded"]


def test_live_pid_with_another_start_time_is_abandoned_as_reused(journal_dir: Path, writers: list[Writer]) -> None:
    """A live process at the recorded pid but with other start ticks is not the writer: abandoned, pid reused."""
    writer = Writer(journal_dir, 2, "wrong-ticks")
    writers.append(writer)
    writer.expect("step")
    writer.expect("closed")
    assert process_info(writer.proc.pid) is not None  # the pid is alive right now
    result = reconcile_run(JsonlStore(journal_dir), writer.run_id)
    assert (result.action, result.state.reason) == ("abandoned", "originating-process-not-alive")
    evidence = result.state.terminal.evidence
    assert evidence["pid_state"] == "reused" and evidence["start_ticks_now"] != evidence["start_ticks_recorded"]
    writer.go()
    assert writer.proc.wait(timeout=DEADLINE_S) == 0


def test_stopped_writer_is_never_abandoned_and_finishes_after_sigcont(journal_dir: Path, writers: list[Writer]) -> None:
    """A SIGSTOPped writer is alive: reads and reconciles change nothing; after SIGCONT it ends its run as succeeded."""
    writer = Writer(journal_dir, 2)
    writers.append(writer)
    writer.expect("step")
    os.kill(writer.proc.pid, signal.SIGSTOP)
    _wait_for_state(writer.proc.pid, "stopped")
    store = JsonlStore(journal_dir)
    before = _bytes(store, writer.run_id)
    result = reconcile_run(store, writer.run_id)
    assert (result.action, result.verdict.evidence["pid_state"]) == ("alive", "stopped")
    assert [c.status for c in run_states(store)] == ["running"]
    assert _bytes(store, writer.run_id) == before
    os.kill(writer.proc.pid, signal.SIGCONT)
    for next_line in ("step", "done"):
        writer.go()
        writer.expect(next_line)
    assert writer.proc.wait(timeout=DEADLINE_S) == 0
    state = fold(store.read(writer.run_id).events())
    assert (state.status, state.late_events) == ("succeeded", [])


MANY_RUNS = r"""
import sys
from runjournal.journal.run import start_run
runs = [start_run("orphans", ["a"], root=sys.argv[1]) for _ in range(int(sys.argv[2]))]
for run in runs:
    run.step_started("a")
print("ready", flush=True)
sys.stdin.readline()
"""


def test_ten_concurrent_reconcilers_abandon_each_of_100_orphans_exactly_once(journal_dir: Path) -> None:
    """100 runs of one SIGKILLed writer, 10 reconciler processes at once: exactly 100 abandoned events, one per run."""
    owner = subprocess.Popen([sys.executable, "-c", MANY_RUNS, str(journal_dir), "100"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None and owner.stdout.readline() == "ready\n"
    owner.kill()
    owner.wait(timeout=DEADLINE_S)
    cmd = [sys.executable, "-m", "runjournal", "--root", str(journal_dir), "reconcile", "--json"]
    reconcilers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(10)]
    outputs = [p.communicate(timeout=DEADLINE_S) for p in reconcilers]
    assert all(p.returncode == 0 for p in reconcilers), [err for _, err in outputs]
    docs = [json.loads(out) for out, _ in outputs]
    assert sum(doc["counts"].get("abandoned", 0) for doc in docs) == 100
    # "busy": another reconciler held the lock throughout; the per-run check below is what counts.
    assert all(set(doc["counts"]) <= {"abandoned", "terminal", "busy"} for doc in docs), [doc["counts"] for doc in docs]
    store = JsonlStore(journal_dir)
    run_ids = sorted(store.run_ids())
    assert len(run_ids) == 100
    for run_id in run_ids:
        events = list(store.read(run_id).events())
        assert [e.type for e in events] == ["started", "step-progress", "abandoned"]
        assert events[-1].reason is AbandonReason.ORIGINATING_PROCESS_NOT_ALIVE
        assert list(verify_file(store.path(run_id), run_id)) == []


BIG_LINES = r"""
import sys
from runjournal.journal.events import StepProgress
from runjournal.journal.run import start_run
run = start_run("big", ["a"], root=sys.argv[1], durability="none")
print("run", run.run_id, flush=True)
while True:  # the writer itself (the Run API would clip a message this long)
    run.writer.append(StepProgress, step="a", state="started", message="x" * 900_000)
"""


def test_writer_killed_mid_line_leaves_a_torn_tail_that_reconcile_quarantines(journal_dir: Path) -> None:
    """A writer SIGKILLed while a big line is half in the file: reconcile quarantines the fragment, appends, verify is clean."""
    store = JsonlStore(journal_dir)
    for _attempt in range(20):
        child = subprocess.Popen([sys.executable, "-c", BIG_LINES, str(journal_dir)], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        run_id = child.stdout.readline().split()[1]
        path = store.path(run_id)
        _kill_mid_line(child, path)
        if not path.read_bytes().endswith(b"\n"):
            break
    else:
        pytest.fail("20 writers killed mid-line never left a torn tail")
    whole = path.read_bytes().rsplit(b"\n", 1)[0] + b"\n"
    fragment = path.read_bytes()[len(whole):]
    result = reconcile_run(store, run_id)
    assert result.action == "abandoned"
    quarantined = result.state.terminal.tail_quarantined
    assert quarantined is not None and (quarantined.offset, quarantined.length) == (len(whole), len(fragment))
    assert (path.parent / quarantined.file).read_bytes() == fragment
    assert path.read_bytes().startswith(whole) and path.read_bytes().count(b"\n") == whole.count(b"\n") + 1
    assert list(verify_file(path, run_id)) == []


def _kill_mid_line(child: subprocess.Popen[str], path: Path) -> None:
    """SIGKILL ``child`` at a moment its run file ends without a newline (a line is being written)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                break
        child.kill()
        child.wait(timeout=DEADLINE_S)
    finally:
        os.close(fd)
