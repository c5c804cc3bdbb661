"""``runjournal follow`` against a real writer in another process.

The writer child appends one event per command line it reads on stdin, so the test decides
when each event is appended: it appends the next one only after ``follow`` has printed the
previous one. Nothing here sleeps and hopes; every wait is a read with a deadline.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runjournal.journal.codec import encode_line
from runjournal.journal.events import Heartbeat
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.run import start_run
from runjournal.projections.tail import RunTail

pytestmark = pytest.mark.slow

DEADLINE = 20.0

WRITER = r"""
import os, sys
from runjournal.journal.codec import encode_line
from runjournal.journal.events import Heartbeat
from runjournal.journal.jsonl.reader import Cursor
from runjournal.journal.run import start_run

run = start_run("followed", ["work"], root=sys.argv[1], durability="none")
print(run.run_id, flush=True)
pending = None
for line in sys.stdin:
    command = line.strip()
    w = run.writer
    if command == "progress":
        run.step_started("work") if w.next_seq == 1 else run.heartbeat()
    elif command == "half":
        event = Heartbeat(run_id=run.run_id, seq=w.cursor.seq, ts=w._clock())
        pending, digest = encode_line(event, w.cursor.prev_hash)
        os.write(w.fd, pending[: len(pending) // 2])
    elif command == "rest":
        os.write(w.fd, pending[len(pending) // 2 :])
        c = w.cursor
        w.cursor = Cursor(c.offset + len(pending), c.line + 1, c.seq + 1, digest)
    elif command == "succeeded":
        run.succeed()
    elif command == "failed":
        run.fail(message="boom")
    elif command == "cancelled":
        run.cancel("test", "asked to")
    print("ok", flush=True)
    if run.ended_with:
        break
run.close()
"""


class Lines:
    """A child's stdout read line by line on a thread, so each read can have a deadline."""

    def __init__(self, stream: object) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self._queue.put(line)
        self._queue.put(None)

    def next(self) -> str | None:
        """The next line, or None at end of stream; fails the test after the deadline."""
        try:
            return self._queue.get(timeout=DEADLINE)
        except queue.Empty:
            pytest.fail(f"no output within {DEADLINE}s")


class Writer:
    """The writer child: ``send`` a command, it appends and answers ``ok``."""

    def __init__(self, root: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.out = Lines(self.proc.stdout)
        self.run_id = (self.out.next() or "").strip()

    def send(self, command: str) -> None:
        """Have the writer do ``command`` and wait for it to be done."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        assert self.out.next() == "ok\n"


@pytest.fixture
def start_follow() -> Iterator[Callable[[Path, str], tuple[subprocess.Popen[str], Lines]]]:
    """Starts ``runjournal follow RUN --jsonl`` processes; any still running at the end are killed."""
    started: list[subprocess.Popen[str]] = []

    def start(root: Path, run_id: str) -> tuple[subprocess.Popen[str], Lines]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runjournal", "--root", str(root), "follow", run_id, "--jsonl"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        started.append(proc)
        return proc, Lines(proc.stdout)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.fixture
def writer(journal_dir: Path) -> Iterator[Writer]:
    """A live writer child, killed at the end if the test left it running."""
    child = Writer(journal_dir)
    yield child
    if child.proc.poll() is None:
        child.proc.kill()
    child.proc.wait()


StartFollow = Callable[[Path, str], tuple["subprocess.Popen[str]", Lines]]


def seq_of(line: str | None) -> int:
    """The seq of one ``--jsonl`` line."""
    assert line is not None, "follow ended early"
    return int(json.loads(line)["seq"])


@pytest.mark.parametrize(("terminal", "code"), [("succeeded", 0), ("failed", 1), ("cancelled", 5)])
def test_every_event_once_in_order_then_exit_with_status(
    journal_dir: Path, writer: Writer, start_follow: StartFollow, terminal: str, code: int
) -> None:
    """Each event appended while following is printed once, in order, and follow exits with the run's status."""
    follow, out = start_follow(journal_dir, writer.run_id)
    assert seq_of(out.next()) == 0
    for seq in range(1, 6):
        writer.send("progress")
        assert seq_of(out.next()) == seq
    writer.send("half")
    writer.send("rest")
    assert seq_of(out.next()) == 6
    writer.send(terminal)
    last = out.next()
    assert (seq_of(last), json.loads(last or "")["status_after"]) == (7, terminal)
    assert out.next() is None
    assert follow.wait(timeout=DEADLINE) == code


def test_writer_killed_while_following(journal_dir: Path, writer: Writer, start_follow: StartFollow) -> None:
    """When the writer is SIGKILLed, follow reconciles the run, prints its abandoned event and exits 4."""
    follow, out = start_follow(journal_dir, writer.run_id)
    assert seq_of(out.next()) == 0
    writer.send("progress")
    assert seq_of(out.next()) == 1
    os.kill(writer.proc.pid, signal.SIGKILL)
    writer.proc.wait()
    event = json.loads(out.next() or "")
    assert (event["seq"], event["type"], event["event"]["reason"]) == (2, "abandoned", "originating-process-not-alive")
    assert out.next() is None
    assert follow.wait(timeout=DEADLINE) == 4


def test_tail_never_yields_a_torn_line(journal_dir: Path) -> None:
    """A half-written last line is not read until its newline arrives, then it is read exactly once."""
    store = JsonlStore(journal_dir)
    run = start_run("torn", ["a"], store=store, durability="none")
    run.heartbeat()
    tail = RunTail(store, run.run_id)
    assert [event.seq for event, _ in tail.new_events()] == [0, 1]
    third = Heartbeat(run_id=run.run_id, seq=2, ts=run.started.ts)
    line, _ = encode_line(third, run.writer.cursor.prev_hash)
    with open(Path(run.location), "ab") as f:
        f.write(line[:-10])
    assert list(tail.new_events()) == []
    assert tail.cursor == run.writer.cursor
    with open(Path(run.location), "ab") as f:
        f.write(line[-10:])
    assert [event.seq for event, _ in tail.new_events()] == [2]
    assert list(tail.new_events()) == []
    run.close()
