"""Starting a run: the launch spec that attached and detached runs both start from, and the live-run check.

A workflow runs at most once at a time unless the user says otherwise: before creating a
run, :func:`begin_run` reads history (which reconciles orphans on the way) and refuses if
a run of the same workflow is still live or cannot be judged. The check and the creation
happen under a per-workflow lock, so two starts racing each other cannot both pass it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from runjournal.cli.engine.skips import SkipPlan
from runjournal.cli.engine.workflow import Workflow, workflow_from_data
from runjournal.journal.errors import JournalError
from runjournal.journal.identity import writer_identity
from runjournal.journal.readmodel import HistoryQuery
from runjournal.journal.run import Run, start_run
from runjournal.journal.status import NOT_LIVE, UNREADABLE, UNTRUSTED
from runjournal.journal.store import Store
from runjournal.projections.history import HistoryRow, history_rows


class LiveRunError(JournalError, RuntimeError):
    """The workflow already has a live run (start refused without ``--allow-concurrent``)."""

    def __init__(self, workflow: str, live: HistoryRow) -> None:
        self.run_id = live.summary.run_id
        summary = live.summary
        where = f" (pid {summary.pid} on {summary.host})" if summary.pid is not None else ""
        what = f"a {live.status} run whose lock is held" if live.status in UNTRUSTED else "a live run"
        super().__init__(
            f"workflow {workflow!r} already has {what} {self.run_id}{where}; wait for it, "
            f"'runjournal cancel {self.run_id}', or pass --allow-concurrent"
        )


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """Everything needed to start a run, decided before it starts (and handed to a supervisor as JSON)."""

    run_id: str
    workflow: Workflow
    inputs: dict[str, str] = field(default_factory=dict)
    rerun_of: str | None = None
    skip: SkipPlan = field(default_factory=SkipPlan)
    allow_concurrent: bool = False
    argv: tuple[str, ...] | None = None
    """The command the user typed (recorded as the writer's ``argv``; a detached supervisor's own differs)."""

    def to_json(self) -> bytes:
        """The spec as JSON bytes."""
        return orjson.dumps({
            "run_id": self.run_id, "workflow": self.workflow.to_data(), "inputs": self.inputs,
            "rerun_of": self.rerun_of, "skip": self.skip.to_data(), "allow_concurrent": self.allow_concurrent,
            "argv": self.argv,
        })

    @classmethod
    def from_json(cls, data: bytes) -> LaunchSpec:
        """Rebuild a spec from :meth:`to_json`."""
        doc: dict[str, Any] = orjson.loads(data)
        argv = doc.get("argv")
        return cls(doc["run_id"], workflow_from_data(doc["workflow"]), dict(doc["inputs"]), doc["rerun_of"],
                   SkipPlan.from_data(doc["skip"]), bool(doc["allow_concurrent"]),
                   tuple(argv) if argv is not None else None)


def begin_run(store: Store, spec: LaunchSpec) -> Run:
    """Create the run (its ``started`` event), unless the workflow has a live run; this process is the writer."""
    workflow = spec.workflow
    with store.workflow_lock(workflow.name):
        if not spec.allow_concurrent:
            live = next(live_runs(store, workflow.name), None)
            if live is not None:
                raise LiveRunError(workflow.name, live)
        return start_run(
            workflow.name, workflow.planned(), store=store, inputs=dict(spec.inputs),
            heartbeat_interval=workflow.heartbeat_interval, run_id=spec.run_id,
            workflow_file=workflow.file, workflow_digest=workflow.digest, rerun_of=spec.rerun_of,
            identity=writer_identity(list(spec.argv)) if spec.argv is not None else None,
        )


def live_runs(store: Store, workflow: str) -> Iterator[HistoryRow]:
    """Runs of ``workflow`` that are not over: alive, or of unknown liveness (orphans get reconciled first).

    Read through the history index, so finished runs cost nothing however many there are.
    A damaged or unreadable run counts while its lock is held (its writer may be at work);
    an unreadable one's workflow is unknown, so it counts for every workflow then.
    """
    for row in history_rows(store, HistoryQuery(workflow=workflow)):
        if row.status in UNTRUSTED:
            if _lock_held(store, row.summary.run_id):
                yield row
        elif row.status not in NOT_LIVE:
            yield row
    # A run of which nothing could be read names no workflow: while its lock is held it counts for every one.
    for row in history_rows(store, HistoryQuery(statuses=frozenset({"empty"}))):
        if row.status == UNREADABLE and _lock_held(store, row.summary.run_id):
            yield row


def _lock_held(store: Store, run_id: str) -> bool:
    """Whether some process holds the run's writer lock (True when that cannot be told)."""
    try:
        return bool(store.writer_alive(run_id))
    except (JournalError, OSError):
        return True
