"""A model-based test: writers start, write, end and die; reconcilers and readers run in between.

A "writer" is an in-process :class:`~runjournal.journal.jsonl.writer.JsonlRunWriter` holding the run's lock; killing
it closes its fd without a terminal event (what the kernel does when a process dies). Its
recorded identity names either this process (alive) or a reaped child (dead), or another
host (judged by its lease on a clock the test controls). The model knows which runs are
live; the invariants: no live run is ever abandoned, and no dead run is still running
after a read.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from runjournal.journal.events import Failed, FailReason, Heartbeat, Started, StepProgress, Succeeded, WriterIdentity
from runjournal.journal.identity import writer_identity
from runjournal.journal.ids import new_run_id
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.jsonl.writer import JsonlRunWriter
from runjournal.journal.procfacts import process_info
from runjournal.journal.testing import BASE_TIME
from runjournal.projections.fold import fold
from runjournal.projections.history import run_states
from runjournal.projections.liveness import DEFAULT_LEASE_INTERVALS
from runjournal.projections.reconcile import current_state, reconcile_run

INTERVAL = 10.0
LEASE = timedelta(seconds=DEFAULT_LEASE_INTERVALS * INTERVAL)


@cache
def dead_identity() -> WriterIdentity:
    """This host and boot, but the pid of a child that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    info = process_info(child.pid)
    assert info is not None
    child.wait()
    return writer_identity().model_copy(update={"pid": child.pid, "start_ticks": info.start_ticks})


def remote_identity() -> WriterIdentity:
    """A writer on another host (only its lease can say whether it lives)."""
    return writer_identity().model_copy(update={"host": "far-away.example", "boot_id": "far-boot", "pid": 1})


@dataclass
class ModelRun:
    """What the model knows about one run."""

    run_id: str
    kind: str  # "alive" (this process), "dead" (reaped pid) or "remote"
    writer: JsonlRunWriter | None
    last_event_at: datetime
    status: str = "running"
    late_events: int = 0

    def live(self, now: datetime) -> bool:
        """Whether the run's writer is (or may be) alive: abandoning it would be wrong."""
        if self.status != "running":
            return False
        if self.writer is not None or self.kind == "alive":
            return True
        return self.kind == "remote" and now - self.last_event_at <= LEASE

    def dead(self, now: datetime) -> bool:
        """Whether a read must find the run abandoned."""
        return self.status == "running" and not self.live(now)


class ReconcileMachine(RuleBasedStateMachine):
    """Writers, kills, clock ticks, reconcilers and readers against the model."""

    runs = Bundle("runs")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="rj-machine-"))
        self.store = JsonlStore(self.tmp)
        self.now = BASE_TIME
        self.model: dict[str, ModelRun] = {}
        self.seq = 0

    def clock(self) -> datetime:
        """The writers' and readers' shared clock, moved only by :meth:`tick`."""
        return self.now

    @rule(target=runs, kind=st.sampled_from(["alive", "dead", "remote"]))
    def start(self, kind: str) -> ModelRun:
        identity = {"alive": writer_identity, "dead": dead_identity, "remote": remote_identity}[kind]()
        self.seq += 1
        run_id = new_run_id(self.now + timedelta(microseconds=self.seq))
        started = Started(run_id=run_id, seq=0, ts=self.now, workflow="wf", steps=[], writer=identity,
                          heartbeat_interval=INTERVAL)
        writer = self.store.create(started, durability="none", clock=self.clock)
        run = self.model[run_id] = ModelRun(run_id, kind, writer, self.now)
        return run

    @rule(run=runs, heartbeat=st.booleans())
    def write(self, run: ModelRun, heartbeat: bool) -> None:
        if run.writer is None or run.status != "running":
            return
        if heartbeat:
            run.writer.append(Heartbeat)
        else:
            run.writer.append(StepProgress, step="s", state="started")
        run.last_event_at = self.now

    @rule(run=consumes(runs), ok=st.booleans())
    def finish(self, run: ModelRun, ok: bool) -> None:
        if run.writer is None or run.status != "running":
            return
        if ok:
            run.writer.append(Succeeded)
        else:
            run.writer.append(Failed, reason=FailReason.STEP_FAILED)
        run.writer.close()
        run.writer = None
        run.status = "succeeded" if ok else "failed"

    @rule(run=runs)
    def kill(self, run: ModelRun) -> None:
        if run.writer is not None:
            run.writer.close()  # the kernel releases the lock; no terminal event
            run.writer = None

    @rule(seconds=st.sampled_from([1, 10, 29, 31, 60]))
    def tick(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(run=runs)
    def read_one(self, run: ModelRun) -> None:
        current = current_state(self.store, run.run_id, now=self.now)
        self._check_read(run, current.state.status, current.status)

    @rule()
    def read_history(self) -> None:
        seen = {c.run_id: c for c in run_states(self.store, now=self.now)}
        assert set(seen) == set(self.model)
        for run_id, current in seen.items():
            self._check_read(self.model[run_id], current.state.status, current.status)

    @rule(run=runs)
    def dry_run(self, run: ModelRun) -> None:
        before = self.store.path(run.run_id).read_bytes()
        result = reconcile_run(self.store, run.run_id, dry_run=True, now=self.now)
        assert self.store.path(run.run_id).read_bytes() == before
        assert (result.action == "would-abandon") == run.dead(self.now)

    @rule(run=runs)
    def late_writer_returns(self, run: ModelRun) -> None:
        """A remote writer that was only partitioned comes back after being abandoned: its event is late."""
        if run.kind != "remote" or run.status != "abandoned":
            return
        with self.store.open_writer(run.run_id, clock=self.clock) as writer:
            writer.append(Heartbeat)
        run.late_events += 1

    def _check_read(self, run: ModelRun, recorded: str, shown: str) -> None:
        if run.dead(self.now):
            assert recorded == "abandoned", f"dead run {run.run_id} ({run.kind}) still {recorded} after a read"
            run.status = "abandoned"
        assert recorded == run.status, (run, recorded)
        assert shown == recorded

    @invariant()
    def no_live_run_is_abandoned(self) -> None:
        for run in self.model.values():
            state = fold(self.store.read(run.run_id).events())
            if run.live(self.now) or run.status in ("succeeded", "failed"):
                assert state.status != "abandoned", f"live run {run.run_id} ({run.kind}) was abandoned"
            if run.status == "abandoned":
                assert state.status == "abandoned" and len(state.late_events) == run.late_events

    def teardown(self) -> None:
        for run in self.model.values():
            if run.writer is not None:
                run.writer.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


ReconcileMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_reconcile_machine = ReconcileMachine.TestCase
