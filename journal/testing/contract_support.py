"""Helpers of the store contract suite (:mod:`runjournal.journal.testing.contract`), usable in any store test."""

from __future__ import annotations

import json
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from runjournal.journal.errors import JournalError, RunExistsError
from runjournal.journal.events import WriterIdentity
from runjournal.journal.records import Anchor
from runjournal.journal.run import Run, start_run
from runjournal.journal.store import Store
from runjournal.journal.stores import open_store
from runjournal.journal.testing.builders import (
    DEFAULT_RUN_ID,
    make_identity,
    make_started,
    make_stream,
    raw_stream_lines,
    ticking_clock,
)
from runjournal.projections.fold import fold
from runjournal.projections.summary import summarize

RID = DEFAULT_RUN_ID
LEASE_RUN_OUT = 1e-9
"""``lease_intervals`` for which any silence is past the lease."""
LOCK_RELEASE_TIMEOUT = 5.0
"""A database releases a closed session's lock asynchronously: poll this long at most."""



def writer_alive_after_close(store: Store, run_id: str) -> bool:
    """``writer_alive`` once it says False, or its last answer after :data:`LOCK_RELEASE_TIMEOUT`."""
    deadline = time.monotonic() + LOCK_RELEASE_TIMEOUT
    while store.writer_alive(run_id) and time.monotonic() < deadline:
        time.sleep(0.01)
    return store.writer_alive(run_id)


def begin(store: Store, run_id: str = RID, identity: WriterIdentity | None = None, durability: str = "none") -> Run:
    """Start a run on a fixed clock and identity, with the first step started."""
    run = start_run("wf", ["build", "test"], store=store, run_id=run_id, identity=identity or make_identity(),
                    clock=ticking_clock(), durability=durability)  # type: ignore[arg-type]
    run.step_started("build")
    return run


def head_of(lines: list[bytes]) -> Anchor:
    """The anchor of a run whose lines (without newlines) are ``lines``: its last line's seq and h, and its size."""
    last = json.loads(lines[-1])
    return Anchor(last["seq"], last["h"], sum(len(line) + 1 for line in lines))


def write_run(store: Store, run_id: str = RID, durability: str = "none") -> None:
    """A deterministic finished run (5 events), its writer closed and its lock released."""
    run = begin(store, run_id, durability=durability)
    run.step_succeeded("build", exit_code=0)
    run.heartbeat()
    run.succeed()
    run.close()
    assert writer_alive_after_close(store, run_id) is False


def started(store: Store, run_id: str, workflow: str, minute: int, end: str | None) -> Run:
    """A run of ``workflow`` started ``minute`` minutes after the base time, ended ``end`` and closed (None: left
    running, its writer open: keep the returned run referenced, and close it)."""
    run = start_run(workflow, ["build"], store=store, run_id=run_id, identity=make_identity(), durability="none",
                    clock=ticking_clock(ticking_clock()() + timedelta(minutes=minute)))
    if end is not None:
        {"succeeded": run.succeed, "failed": lambda: run.fail(message="boom"), "cancelled": lambda: run.cancel("t")}[end]()
        run.close()
    return run


def make_run(store: Store, run_id: str) -> None:
    """A run of just ``started``, its writer closed."""
    store.create(make_started(run_id), durability="none").close()


def stream_lines(run_id: str = RID, terminal: str | None = "succeeded") -> list[bytes]:
    """A valid run's lines, without newlines, as ``raw_lines`` gives them."""
    return raw_stream_lines(make_stream(run_id, terminal=terminal))


def seqs(store: Store, run_id: str = RID) -> list[int]:
    """The seqs ``read`` yields."""
    return [event.seq for event in store.read(run_id).events()]


def fresh_summaries(store: Store) -> list[Any]:
    """Every run's summary folded from scratch, newest id first (what a read model must equal)."""
    return [summarize(fold(store.read(rid).events()), rid) for rid in sorted(store.run_ids(), reverse=True)]


def refused_at_import_or_read(
    store: Store, run_id: str, lines: list[bytes], error: type[JournalError]
) -> Any:
    """Import damaged ``lines``: a store may refuse them then (nothing stored) or store them and refuse at read.

    Returns the read's error (None when the import refused).
    """
    try:
        store.import_lines(run_id, lines)
    except error:
        assert not store.exists(run_id) and list(store.run_ids()) == []
        return None
    with pytest.raises(error) as info:
        list(store.read(run_id))
    return info.value


def take_lock(store: Store, workflow: str, order: list[str]) -> None:
    with store.workflow_lock(workflow):
        order.append("second")


def _contend(address: str | None, store: Store | None, run_id: str, barrier: Any, results: Any) -> None:
    """One contender: its own store object, ``create`` at the barrier, report the outcome."""
    mine = open_store(address) if address is not None else store
    assert mine is not None
    barrier.wait()
    try:
        mine.create(make_started(run_id), durability="none").close()
        results.put("won")
    except RunExistsError:
        results.put("exists")
    except JournalError as exc:
        results.put(repr(exc))
    if address is not None:
        mine.close()


def race(racers: str, store: Store, reopen: Callable[[Store], Store], run_id: str, n: int) -> list[str]:
    """Run ``n`` contenders as threads of this process (each on :meth:`reopen`) or as forked processes."""
    ctx: Any = multiprocessing.get_context("fork")
    if racers == "threads":
        ctx = SimpleNamespace(Barrier=threading.Barrier, Queue=queue.Queue, Process=threading.Thread)
        args = [(None, reopen(store)) for _ in range(n)]
    else:
        args = [(store.address(), None) for _ in range(n)]
    barrier, results = ctx.Barrier(n), ctx.Queue()
    workers = [ctx.Process(target=_contend, args=(*pair, run_id, barrier, results)) for pair in args]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    for _, reopened in args:
        if reopened is not None and reopened is not store:
            reopened.close()
    return outcomes
