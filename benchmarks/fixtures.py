"""Benchmark fixtures: journal roots with many runs, written fast but with real hash chains.

Lines are produced by :func:`journal.codec.encode_line` (so they are exactly what the
writer would produce) and written with one ``write`` per file, without fsync: building
100,000 runs through the fsync'ed writer would take longer than the benchmarks.
Generation is split over worker processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

from runjournal.journal.codec import encode_line
from runjournal.journal.events import (
    Abandoned,
    Cancelled,
    CheckerIdentity,
    Event,
    Failed,
    FailReason,
    Heartbeat,
    PlannedStep,
    Started,
    StepProgress,
    Succeeded,
    WriterIdentity,
)
from runjournal.journal.procfacts import boot_id, host_name
from runjournal.journal.records import GENESIS_HASH

BASE_TIME = datetime(2025, 1, 1, tzinfo=UTC)
STEPS = ["checkout", "build", "test", "deploy"]
ITEMS = ["shard-a", "shard-b", "shard-c"]


@dataclass(frozen=True)
class Fixture:
    """A generated root and what is in it."""

    root: Path
    runs: int
    events_per_run: int
    orphan_ids: tuple[str, ...]
    run_ids: tuple[str, ...]

    @property
    def runs_dir(self) -> Path:
        """The directory holding the run files."""
        return self.root / "runs"


def dead_pid() -> int:
    """A pid no process can have (above pid_max), so liveness checks call its writer dead."""
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    except (OSError, ValueError):
        return 2**22 + 1


def run_id_for(index: int, minutes_apart: int = 1) -> str:
    """The time-sortable id of fixture run ``index`` (one run every ``minutes_apart`` minutes from :data:`BASE_TIME`)."""
    moment = BASE_TIME + timedelta(minutes=index * minutes_apart)
    return moment.strftime("%Y%m%dT%H%M%S%fZ") + f"-{index % 65536:04x}"


def workflow_for(index: int, workflows: int) -> str:
    """The workflow of fixture run ``index``: ``bench`` alone, or ``bench-0`` ... ``bench-{workflows - 1}`` in turn."""
    return "bench" if workflows <= 1 else f"bench-{index % workflows}"


def identity() -> WriterIdentity:
    """A writer identity on this host and boot whose process is gone."""
    return WriterIdentity(
        host=host_name(),
        boot_id=boot_id(),
        pid=dead_pid(),
        start_ticks=1,
        argv=["runjournal", "run", "bench.toml"],
        user="bench",
        tool_version="0.1.0",
    )


def run_events(run_id: str, count: int, outcome: str, writer: WriterIdentity, workflow: str = "bench") -> list[Event]:
    """``count`` events of one run: started, steps (one fan-out), heartbeats, then ``outcome``.

    ``outcome`` is a terminal type, or ``running`` for a run whose writer died mid-way.
    """
    start = datetime.strptime(run_id[:22], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    planned = [PlannedStep(name=s, items=ITEMS if s == "test" else None) for s in STEPS]
    events: list[Event] = []

    def ts() -> datetime:
        return start + timedelta(milliseconds=250 * len(events))

    def add(cls: type, **fields: object) -> None:
        events.append(cls(run_id=run_id, seq=len(events), ts=ts(), **fields))

    add(Started, workflow=workflow, steps=planned, inputs={"n": 1}, writer=writer, heartbeat_interval=30.0)
    body: list[tuple[type, dict[str, object]]] = []
    for step in STEPS:
        if step == "test":
            body.append((StepProgress, {"step": step, "state": "started", "done": 0, "total": len(ITEMS)}))
            for n, item in enumerate(ITEMS):
                body.append((StepProgress, {"step": step, "state": "started", "item": item, "item_state": "started",
                                            "done": n, "total": len(ITEMS)}))
                body.append((StepProgress, {"step": step, "state": "started", "item": item,
                                            "item_state": "succeeded", "done": n + 1, "total": len(ITEMS),
                                            "exit_code": 0}))
            body.append((StepProgress, {"step": step, "state": "succeeded", "exit_code": 0}))
        else:
            body.append((StepProgress, {"step": step, "state": "started"}))
            body.append((StepProgress, {"step": step, "state": "succeeded", "exit_code": 0}))
    room = count - 1 - (outcome != "running")
    for cls, fields in body[:room]:
        add(cls, **fields)
    while len(events) < count - (outcome != "running"):
        add(Heartbeat)
    _add_terminal(add, outcome)
    return events


def _add_terminal(add, outcome: str) -> None:  # type: ignore[no-untyped-def]
    if outcome == "succeeded":
        add(Succeeded)
    elif outcome == "failed":
        add(Failed, reason=FailReason.STEP_FAILED, step="deploy", exit_code=1, message="exit 1")
    elif outcome == "cancelled":
        add(Cancelled, by="user:bench", reason="benchmark")
    elif outcome == "abandoned":
        add(Abandoned, reason="originating-process-not-alive", evidence={"pid": 1}, checker=CheckerIdentity(
            host="h", pid=1, user="bench"), last_seq=0)


def outcome_for(index: int, orphans: set[int]) -> str:
    """A realistic mix: mostly succeeded, some failed, cancelled, abandoned; orphans still running."""
    if index in orphans:
        return "running"
    bucket = (index * 7919) % 100
    return "failed" if bucket < 10 else "cancelled" if bucket < 13 else "abandoned" if bucket < 15 else "succeeded"


def encode_run(events: list[Event]) -> bytes:
    """The bytes of a run file holding ``events``."""
    prev = GENESIS_HASH
    parts = []
    for event in events:
        line, prev = encode_line(event, prev)
        parts.append(line)
    return b"".join(parts)


def write_file(path: Path, data: bytes) -> None:
    """Write a run file (0600) in one go, via a temporary name so it appears whole and as a new inode."""
    tmp = path.with_name("." + path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _write_chunk(args: tuple[str, int, int, int, tuple[int, ...], int, int]) -> None:
    runs_dir, first, last, events_per_run, orphans, minutes_apart, workflows = args
    writer = identity()
    orphan_set = set(orphans)
    for index in range(first, last):
        run_id = run_id_for(index, minutes_apart)
        events = run_events(run_id, events_per_run, outcome_for(index, orphan_set), writer,
                            workflow_for(index, workflows))
        write_file(Path(runs_dir) / f"{run_id}.jsonl", encode_run(events))


def orphan_indexes(runs: int, orphans: int) -> tuple[int, ...]:
    """Which run indexes are orphans: spread evenly, newest included."""
    if orphans <= 0:
        return ()
    step = max(1, runs // orphans)
    return tuple(sorted({runs - 1 - k * step for k in range(orphans)}))


def build(
    root: Path, runs: int, events_per_run: int, *, orphans: int = 0, workers: int | None = None,
    minutes_apart: int = 1, workflows: int = 1,
) -> Fixture:
    """Create ``root/runs`` with ``runs`` runs of ``events_per_run`` events (``orphans`` left running).

    Runs start ``minutes_apart`` minutes apart; ``workflows`` > 1 spreads them over that many workflows.
    """
    runs_dir = root / "runs"
    runs_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    orphan_idx = orphan_indexes(runs, orphans)
    workers = workers or os.cpu_count() or 1
    size = max(1, -(-runs // (workers * 8)))
    chunks = [(str(runs_dir), a, min(runs, a + size), events_per_run, orphan_idx, minutes_apart, workflows)
              for a in range(0, runs, size)]
    if workers == 1 or runs < 2000:
        for chunk in chunks:
            _write_chunk(chunk)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_chunk, chunks))
    ids = tuple(run_id_for(i, minutes_apart) for i in range(runs))
    return Fixture(root, runs, events_per_run, tuple(run_id_for(i, minutes_apart) for i in orphan_idx), ids)


def reset_orphans(fixture: Fixture) -> None:
    """Rewrite the orphan runs as still running (new inodes), undoing an earlier reconcile.

    The reconciler anchored each ``abandoned``; a reset run is shorter than that anchor, so
    the anchor log goes too (a real store never loses one: this is a benchmark's undo).
    """
    import shutil

    shutil.rmtree(fixture.root / "anchors", ignore_errors=True)
    writer = identity()
    for run_id in fixture.orphan_ids:
        events = run_events(run_id, fixture.events_per_run, "running", writer)
        write_file(fixture.runs_dir / f"{run_id}.jsonl", encode_run(events))


def build_big_run(root: Path, events: int, *, items: int = 1000) -> str:
    """One run of ``events`` events (a fan-out of ``items`` items, heartbeats between), written in chunks.

    Returns its run id. The file is streamed out, never held in memory whole.
    """
    run_id = run_id_for(0)
    steps = [PlannedStep(name="prepare"), PlannedStep(name="work", items=[f"item-{i}" for i in range(items)])]
    every = max(1, (events - 4) // (2 * items + 1))

    def lines() -> Iterator[bytes]:
        prev = GENESIS_HASH
        for event in _big_run_events(run_id, BASE_TIME, steps, events, items, every):
            line, prev = encode_line(event, prev)
            yield line

    _stream_run(root, run_id, lines())
    return run_id


def _stream_run(root: Path, run_id: str, lines: Iterable[bytes]) -> None:
    """Write ``root/runs/<run_id>.jsonl`` from ``lines``, 10,000 lines per write, never holding the file."""
    runs_dir = root / "runs"
    runs_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    pending = iter(lines)
    with open(runs_dir / f"{run_id}.jsonl", "wb") as file:
        while chunk := list(islice(pending, 10_000)):
            file.write(b"".join(chunk))


def _big_run_events(run_id: str, start: datetime, steps: list[PlannedStep], events: int, items: int,
                    every: int):  # type: ignore[no-untyped-def]
    """started, prepare, then the items of ``work`` spread out between heartbeats, then succeeded."""
    ts = start
    yield Started(run_id=run_id, seq=0, ts=ts, workflow="big", steps=steps, writer=identity(), heartbeat_interval=30.0)
    seq = 1
    work = [(f"item-{i}", state, i + (state == "succeeded"))
            for i in range(items) for state in ("started", "succeeded")]
    progress = iter(work)
    while seq < events - 1:
        ts = start + timedelta(milliseconds=seq)
        fields = next(progress, None) if seq % every == 0 else None
        if fields is None:
            yield Heartbeat.model_construct(run_id=run_id, seq=seq, ts=ts)
        else:
            item, state, done = fields
            yield StepProgress(run_id=run_id, seq=seq, ts=ts, step="work", state="started", item=item,
                               item_state=state, done=done, total=items)
        seq += 1
    yield Succeeded(run_id=run_id, seq=seq, ts=start + timedelta(milliseconds=seq))


def build_steps_run(root: Path, steps: int) -> str:
    """One run of ``steps`` unplanned steps, each started and succeeded, whose writer is dead (no terminal).

    What a runaway workflow leaves: ``2 * steps + 1`` events. Lines are made from plain
    objects in the canonical form (checked against the codec on the first step), streamed.
    """
    run_id = run_id_for(1)
    start = Started(run_id=run_id, seq=0, ts=BASE_TIME, workflow="extreme", steps=[], writer=identity(),
                    heartbeat_interval=30.0)

    def lines() -> Iterator[bytes]:
        line, prev = encode_line(start, GENESIS_HASH)
        yield line
        for seq in range(1, 2 * steps + 1):
            line, prev = _step_line(run_id, seq, prev)
            yield line

    _stream_run(root, run_id, lines())
    return run_id


def _step_line(run_id: str, seq: int, prev: str) -> tuple[bytes, str]:
    import orjson

    from runjournal.journal.codec import chain_hash

    moment = BASE_TIME + timedelta(milliseconds=seq)
    started = bool(seq % 2)
    if seq == 1:  # the plain form must be exactly the codec's, or the reader would take its slow path
        event = StepProgress(run_id=run_id, seq=seq, ts=moment, step="step-1", state="started")
        _STEP_TEMPLATE.update(event.model_dump(mode="json"))
    obj = dict(_STEP_TEMPLATE, seq=seq, ts=moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), step=f"step-{(seq + 1) // 2}",
               state="started" if started else "succeeded", exit_code=None if started else 0)
    body = orjson.dumps(obj)[:-1]
    digest = chain_hash(prev, body)
    line = body + b',"h":"' + digest.encode("ascii") + b'"}\n'
    if seq == 1:
        assert encode_line(event, prev)[0] == line, "the fixture's lines are not canonical"
    return line, digest


_STEP_TEMPLATE: dict[str, object] = {}
"""A step-progress event's plain object, in the codec's field order (filled from a model)."""


def restore_steps_run(path: Path, size: int) -> None:
    """Undo a reconcile of :func:`build_steps_run`'s run: cut its ``abandoned`` line off again."""
    os.truncate(path, size)
