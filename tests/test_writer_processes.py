"""Real writer processes: one writer per run while it lives, and SIGKILL never leaves more than a torn tail."""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from runjournal.journal.errors import RunLockedError
from runjournal.journal.events import SCHEMA_VERSIONS, Heartbeat
from runjournal.journal.jsonl.reader import JsonlRunReader
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.lines import RawLine, iter_raw_lines
from runjournal.journal.procfacts import host_name
from runjournal.journal.verify import verify_file

CHILD = Path(__file__).with_name("journal_child.py")
DEADLINE = 20.0
KILLS = int(os.environ.get("RUNJOURNAL_KILLS", "30"))

pytestmark = pytest.mark.slow


class Child:
    """A child process whose stdout lines are awaited with a deadline (no sleeping and hoping)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float = DEADLINE) -> str:
        """Wait for the next line; it must start with ``prefix``. Returns the rest of it."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {prefix!r} line from the child within {timeout}s") from None
        if line is None:
            stderr = self.proc.stderr.read()  # type: ignore[union-attr]
            raise AssertionError(f"child exited before {prefix!r}: {stderr}")
        assert line.startswith(prefix), f"expected {prefix!r}, got {line[:200]!r}"
        return line[len(prefix):].strip()

    def send(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=DEADLINE)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    """Children started by a test; killed and reaped whatever happens."""
    started: list[Child] = []
    yield started
    for child in started:
        child.stop()


def test_a_second_writer_is_refused_while_the_first_lives_and_allowed_after_sigkill(
    journal_dir: Path, children: list[Child]
) -> None:
    """The flock names the live holder; once the holder is SIGKILLed the kernel frees the run."""
    run_id = "20260101T000000000000Z-lock"
    holder = Child("hold", str(journal_dir), run_id)
    children.append(holder)
    holder.expect("READY")
    store = JsonlStore(journal_dir)

    with pytest.raises(RunLockedError) as info:
        store.open_writer(run_id)
    assert f"locked by pid {holder.proc.pid} on host {host_name()}" in str(info.value)
    assert store.writer_alive(run_id)
    other = Child("try-open", str(journal_dir), run_id)
    children.append(other)
    assert f"locked by pid {holder.proc.pid}" in other.expect("LOCKED")

    holder.proc.send_signal(signal.SIGKILL)
    assert holder.proc.wait(timeout=DEADLINE) == -signal.SIGKILL
    assert not store.writer_alive(run_id)
    with store.open_writer(run_id, durability="none") as writer:
        assert writer.torn_tail is None and writer.next_seq == 1
        writer.append(Heartbeat)
    assert list(verify_file(store.path(run_id), run_id)) == []


def check_killed_run(path: Path, run_id: str, acked: list[int]) -> bool:
    """Whole valid lines, at most one torn tail that starts the next line, every ACK present.

    Returns whether the run ended in a torn tail.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        items = list(iter_raw_lines(fd))
    finally:
        os.close(fd)
    assert all(isinstance(item, RawLine) for item in items[:-1])
    reader = JsonlRunReader(path, run_id)
    events = list(reader.events())  # strict: every whole line decodes, chains and continues the seq
    assert [e.seq for e in events] == list(range(len(events)))
    assert set(acked) <= {e.seq for e in events}, "an acknowledged append is missing"
    torn = reader.torn_tail
    if torn is not None:
        assert items[-1] == torn
        starts = [f'{{"v":{v},"run_id":"{run_id}","seq":{len(events)},'.encode() for v in set(SCHEMA_VERSIONS.values())]
        assert any(torn.preview[: len(e)] == e[: torn.length] for e in starts), "torn tail is not the next line's start"
    problems = list(verify_file(path, run_id))
    assert [p.kind for p in problems] == (["torn-tail"] if torn else [])
    return torn is not None


def test_sigkill_in_a_tight_append_loop_leaves_whole_lines_and_at_most_a_torn_tail(
    journal_dir: Path, children: list[Child]
) -> None:
    """Writers SIGKILLed at random moments leave whole lines, every ACKed event, and at most one torn tail."""
    rng = random.Random(int(os.environ.get("RUNJOURNAL_KILL_SEED", "20260101")))
    zygote = Child("zygote", str(journal_dir))
    children.append(zygote)
    store = JsonlStore(journal_dir)
    torn = 0
    for kill in range(KILLS):
        run_id = f"kill-{kill:03d}"
        zygote.send(f"spawn {run_id} {rng.randrange(2**32)} {rng.choice(['none', 'state'])}")
        pid = int(zygote.expect("PID"))
        acked = [int(zygote.expect("ACK")) for _ in range(rng.randint(1, 25))]
        time.sleep(rng.uniform(0, 0.003))  # vary where in the loop the kill lands, not a wait
        os.kill(pid, signal.SIGKILL)
        zygote.send(f"reap {pid}")
        while (line := zygote.expect("")) and not line.startswith("REAPED"):
            acked.append(int(line.removeprefix("ACK ")))
        assert line == f"REAPED {pid} {signal.SIGKILL}"
        torn += check_killed_run(store.path(run_id), run_id, acked)
    assert sorted(store.run_ids()) == [f"kill-{k:03d}" for k in range(KILLS)]
    print(f"{KILLS} kills, {torn} left a torn tail")
