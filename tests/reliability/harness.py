"""The SIGKILL harness: start a real writer, read its acknowledgements, kill it at a random moment,
then check the journal against what it acknowledged (Jepsen's set check: every ``ok`` appears
exactly once, in order; an in-flight append may or may not).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runjournal.journal.jsonl.store import JsonlStore

from .helpers import python_child, read_chain


@dataclass
class Acks:
    """Acknowledged appends read from a child's stdout: ``(seq, h)`` in order, plus DONE."""

    seen: list[tuple[int, str]] = field(default_factory=list)
    done: bool = False
    cond: threading.Condition = field(default_factory=threading.Condition)

    def pump(self, stream: object) -> None:
        """Read ``ACK <seq> <h>`` lines until EOF (run in a thread)."""
        for raw in stream:  # type: ignore[attr-defined]
            parts = raw.decode().split()
            with self.cond:
                if parts[:1] == ["ACK"]:
                    self.seen.append((int(parts[1]), parts[2]))
                elif parts[:1] == ["DONE"]:
                    self.done = True
                self.cond.notify_all()

    def wait_for(self, count: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> bool:
        """Wait until ``count`` acks arrived; False if the child ended (or finished) first."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.seen) < count and not self.done:
                if proc.poll() is not None:
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"writer produced {len(self.seen)} acks in {timeout}s, wanted {count}")
                self.cond.wait(min(left, 0.05))
            return not self.done


@dataclass
class Kill:
    """One killed writer: what it acknowledged and how the kill went."""

    run_id: str
    acks: list[tuple[int, str]]
    finished: bool
    moment: str


def kill_at_random(proc: subprocess.Popen[bytes], acks: Acks, rng: random.Random, events: int) -> str:
    """SIGKILL ``proc`` at a random moment: during start-up (1 in 8) or after a random number of acks
    plus a random sub-millisecond-to-millisecond delay (so kills land inside writes and fsyncs)."""
    if rng.random() < 0.125:
        time.sleep(rng.uniform(0.0, 0.4))
        moment = "startup"
    else:
        target = rng.randint(1, max(1, events - 2))
        acks.wait_for(target, proc)
        time.sleep(rng.choice((0.0, rng.uniform(0, 0.0005), rng.uniform(0, 0.004))))
        moment = "running"
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return moment


PROFILES = (("state", 0.03), ("all", 0.03), ("state", 0.5), ("none", 0.9))
"""(durability, share of 100-300 KB records) of the API writers: the default, everything synced,
and two where kills often land inside a long ``write`` (which Linux stops mid-record)."""


def kill_api_writer(root: Path, run_id: str, rng: random.Random, events: int = 150) -> Kill:
    """Run ``child.py writer`` (the Python API, a random profile from :data:`PROFILES`) and SIGKILL
    it at a random moment."""
    durability, big = rng.choice(PROFILES)
    proc = python_child(
        "writer", str(root), run_id, "--count", str(events), "--seed", str(rng.randrange(1 << 30)),
        "--big", str(big), "--durability", durability, stdout=subprocess.PIPE,
    )
    acks = Acks()
    pump = threading.Thread(target=acks.pump, args=(proc.stdout,), daemon=True)
    pump.start()
    try:
        moment = kill_at_random(proc, acks, rng, events)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        pump.join(10)
    return Kill(run_id, list(acks.seen), acks.done, moment)


@dataclass
class Checked:
    """What the check after one kill found."""

    acked: int
    lost: int
    torn: bool
    no_file: bool
    status: str


def check_acked(store: JsonlStore, kill: Kill) -> tuple[int, bool]:
    """Every acknowledged ``(seq, h)`` is on disk exactly there; return (lost count, torn tail seen)."""
    if not store.exists(kill.run_id):
        assert not kill.acks, f"{kill.run_id}: {len(kill.acks)} acks but no run file"
        return 0, False
    chain = read_chain(store.path(kill.run_id), kill.run_id)
    hashes = chain.hashes
    lost = sum(1 for seq, h in kill.acks if hashes.get(seq) != h)
    assert [seq for seq, _ in kill.acks] == list(range(len(kill.acks))), "acks out of order"
    return lost, chain.torn is not None


def check_after_history(store: JsonlStore, kill: Kill, status: str, verify: Callable[[], list[str]]) -> None:
    """After history: acks still there, exactly one terminal (abandoned unless the writer finished),
    no torn tail left in the run file, verify clean."""
    chain = read_chain(store.path(kill.run_id), kill.run_id)
    terminals = [t for t in chain.types if t in ("succeeded", "failed", "cancelled", "abandoned")]
    finished = chain.types[-1:] == ["succeeded"] and terminals == ["succeeded"]
    assert terminals == (["succeeded"] if finished else ["abandoned"]), f"{kill.run_id}: terminals {terminals}"
    assert status == ("succeeded" if finished else "abandoned"), f"{kill.run_id}: history said {status}"
    assert chain.torn is None, f"{kill.run_id}: torn tail left after reconcile"
    hashes = chain.hashes
    assert all(hashes.get(seq) == h for seq, h in kill.acks), f"{kill.run_id}: an acked event vanished in reconcile"
    problems = verify()
    assert not problems, f"{kill.run_id}: verify found {problems}"
