"""Promise 3: power loss. Every fsynced event survives; what is left is whole lines plus at most a
torn tail, which reconcile repairs (SQLite's crash VFS, LevelDB's fault_injection_test).

The writer runs over :class:`~tests.reliability.faultfs.PowerLossOps`, which keeps unsynced
bytes aside; the machine "loses power" at a random operation, the unsynced bytes are dropped,
cut to a random prefix, NUL-filled or garbled, and then the journal is read, reconciled and
verified. Harsher damage (garbage with newlines, SQLite's unordered sector model) is beyond
what an ordered-data file system does; for it the promise is only that nothing fsynced is
lost and the damage never reads as valid events (no silent misread).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from runjournal.journal.errors import CorruptLineError
from runjournal.journal.events import Heartbeat, StepProgress, Succeeded
from runjournal.journal.jsonl.reader import JsonlRunReader
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.run import start_run
from runjournal.journal.verify import verify_file

from .faultfs import HARSH_MODES, SAFE_MODES, CrashReport, PowerLossOps, SimulatedCrash
from .figures import record
from .helpers import dead_identity, quarantine_files, read_chain, scale

reconcile = pytest.importorskip("runjournal.projections.reconcile")

SAFE_CRASHES = scale(500, 5000)
HARSH_CRASHES = scale(200, 2000)
SWEEP_OFFSETS = scale(1500, 0)
"""Offsets tried by the truncation sweep in CI (0 = every offset, the full sweep)."""


@dataclass
class Crashed:
    """One simulated power loss: the acknowledged appends ``(seq, h, end offset)`` and the damage."""

    run_id: str
    acked: list[tuple[int, str, int]]
    report: CrashReport


def write_until_power_loss(store: JsonlStore, run_id: str, rng: random.Random, mode: str) -> Crashed:
    """Write a random workload over the power-loss layer until the machine dies, then apply ``mode``."""
    run = start_run(
        "powerloss", steps=["work"], store=store, run_id=run_id, identity=dead_identity(),
        durability=rng.choice(("state", "state", "all", "none")),
    )
    writer = run.writer
    events = rng.randint(0, 30)
    ops = PowerLossOps.attach(writer, rng, crash_after=rng.randint(1, 2 * events + 3))
    acked = [(0, writer.cursor.prev_hash, writer.cursor.offset)]
    try:
        for i in range(events):
            if rng.random() < 0.35:
                writer.append(Heartbeat)
            else:
                size = rng.choice((rng.randint(0, 200), rng.randint(0, 200), rng.randint(4000, 20000)))
                writer.append(StepProgress, step="work", state="started", done=i, message="p" * size)
            acked.append((writer.cursor.seq - 1, writer.cursor.prev_hash, writer.cursor.offset))
        if rng.random() < 0.2:
            writer.append(Succeeded)
            acked.append((writer.cursor.seq - 1, writer.cursor.prev_hash, writer.cursor.offset))
    except SimulatedCrash:
        pass
    report = ops.crash(writer.fd, mode)
    os.close(writer.fd)  # the kernel closes a dead machine's files; the lock goes with it
    writer.fd = -1
    return Crashed(run_id, acked, report)


def durable(crashed: Crashed) -> list[tuple[int, str, int]]:
    """The acknowledged appends whose bytes were fsynced before the crash."""
    return [a for a in crashed.acked if a[2] <= crashed.report.synced_size]


def check_safe_crash(store: JsonlStore, crashed: Crashed) -> tuple[int, bool]:
    """Fsynced events survive; whole lines plus at most a torn tail; reconcile repairs; verify passes.
    Return (fsynced events checked, torn tail repaired)."""
    run_id = crashed.run_id
    chain = read_chain(store.path(run_id), run_id)  # strict: a corrupt whole line fails here
    hashes = chain.hashes
    kept = durable(crashed)
    assert all(hashes.get(seq) == h for seq, h, _ in kept), f"{run_id}: an fsynced event was lost ({crashed.report})"
    acked_hashes = {seq: h for seq, h, _ in crashed.acked}
    extra = [seq for seq, _, h in chain.entries if seq not in acked_hashes]
    assert len(extra) <= 1, f"{run_id}: {extra} on disk but never acknowledged"
    assert all(acked_hashes[seq] == h for seq, _, h in chain.entries if seq in acked_hashes)
    ended = chain.types[-1] == "succeeded"
    current = reconcile.current_state(store, run_id)
    assert current.error is None, current.error
    assert current.state.status == ("succeeded" if ended else "abandoned")
    after = read_chain(store.path(run_id), run_id)
    assert after.torn is None and after.entries[: len(chain.entries)] == chain.entries
    assert not list(verify_file(store.path(run_id), run_id))
    if chain.torn is not None and not ended:
        [quarantine] = quarantine_files(store, run_id)
        assert quarantine.stat().st_size == chain.torn.length
    return len(kept), chain.torn is not None


@pytest.mark.slow
def test_power_loss_keeps_every_fsynced_event(tmp_path: Path) -> None:
    """Under every crash outcome an ordered-data file system allows, nothing fsynced is lost and
    the journal reconciles and verifies."""
    rng = random.Random("p3-safe")
    store = JsonlStore(tmp_path / "root")
    modes: Counter[str] = Counter()
    checked = torn = unsynced_lost = 0
    for i in range(SAFE_CRASHES):
        mode = SAFE_MODES[i % len(SAFE_MODES)]
        crashed = write_until_power_loss(store, f"pl-{i:05d}", rng, mode)
        n, was_torn = check_safe_crash(store, crashed)
        modes[mode] += 1
        checked += n
        torn += was_torn
        unsynced_lost += len(crashed.acked) - n
    record(
        3, "power loss (ordered-data model)", 0, crashes=SAFE_CRASHES, fsynced_events_checked=checked,
        torn_tails_repaired=torn, unsynced_acked_events_allowed_to_vanish=unsynced_lost,
        **{f"mode_{m}": c for m, c in sorted(modes.items())},
    )
    assert torn >= SAFE_CRASHES // 10, "the simulation hardly ever tore a line"


def read_until_corrupt(path: Path, run_id: str) -> tuple[list[tuple[int, str]], bool]:
    """Read strictly until the first bad line; return ``(seq, h)`` read and whether a bad line stopped it."""
    reader = JsonlRunReader(path, run_id)
    entries = []
    try:
        for record_ in reader:
            entries.append((record_.event.seq, reader.cursor.prev_hash))
    except CorruptLineError:
        return entries, True
    return entries, False


@pytest.mark.slow
def test_harsher_power_loss_is_always_detected(tmp_path: Path) -> None:
    """Garbage with newlines or unordered lost sectors never lose an fsynced event and never read as
    events that were not written: every damaged file fails verify."""
    rng = random.Random("p3-harsh")
    store = JsonlStore(tmp_path / "root")
    detected = undamaged = checked = 0
    for i in range(HARSH_CRASHES):
        crashed = write_until_power_loss(store, f"ph-{i:05d}", rng, HARSH_MODES[i % len(HARSH_MODES)])
        path = store.path(crashed.run_id)
        entries, _ = read_until_corrupt(path, crashed.run_id)
        acked = {seq: h for seq, h, _ in crashed.acked}
        kept = durable(crashed)
        assert entries[: len(kept)] == [(seq, h) for seq, h, _ in kept], "an fsynced event was lost"
        assert all(acked.get(seq, h) == h for seq, h in entries), "a damaged line read as an event"
        checked += len(kept)
        problems = list(verify_file(path, crashed.run_id))
        if crashed.report.added_bytes == 0:
            undamaged += 1  # the damage happened to be a clean prefix
        else:
            assert problems, f"{crashed.run_id}: {crashed.report} went unnoticed by verify"
            detected += 1
    record(
        3, "power loss (harsh: garbage lines, holes)", 0, crashes=HARSH_CRASHES, fsynced_events_checked=checked,
        damaged_files_detected=detected, clean_prefix_outcomes=undamaged, silent_misreads=0,
    )


def _fixture_lines(store: JsonlStore) -> tuple[bytes, list[int]]:
    run = start_run("sweep", steps=["work"], store=store, run_id="sweep", identity=dead_identity(), durability="none")
    for i in range(49):
        size = 6000 if i % 7 == 3 else (i * 13) % 250
        run.writer.append(StepProgress, step="work", state="started", done=i, message="s" * size)
    run.writer.close()
    data = store.path("sweep").read_bytes()
    ends = [i + 1 for i, b in enumerate(data) if b == 0x0A]
    return data, ends


def test_truncation_sweep_reads_a_prefix_at_every_offset(tmp_path: Path) -> None:
    """A 50-event journal (records over a page included) cut at any byte reads as exactly the
    whole lines before the cut, plus a torn tail iff the cut is inside a line."""
    store = JsonlStore(tmp_path / "root")
    data, ends = _fixture_lines(store)
    offsets = list(range(len(data) + 1))
    if SWEEP_OFFSETS:
        offsets = sorted({*random.Random("sweep").sample(offsets, SWEEP_OFFSETS), *ends, *(e - 1 for e in ends)})
    fd = os.memfd_create("sweep")
    try:
        for cut in offsets:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data[:cut], 0)
            reader = JsonlRunReader(Path("sweep.jsonl"), "sweep", fd=fd)
            seqs = [r.event.seq for r in reader]
            whole = sum(1 for e in ends if e <= cut)
            assert seqs == list(range(whole)), f"cut at {cut}"
            assert (reader.torn_tail is not None) == (cut not in ends and cut != 0), f"cut at {cut}"
    finally:
        os.close(fd)
    record(3, "truncation sweep (50 events)", 0, offsets=len(offsets), file_bytes=len(data), wrong_reads=0)
