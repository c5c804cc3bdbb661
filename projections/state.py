"""The state a fold produces: a run's status, its steps and items, and what looked odd.

Plain mutable dataclasses, because the fold copies its start state once and then updates
its own copy event by event (a million events per run must fold fast); from the outside
the fold is still pure. :func:`state_to_json` / :func:`state_from_json` make the state a
snapshot a read model can save and resume from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from pydantic import TypeAdapter

from runjournal.journal.events import Abandoned, Cancelled, Failed, Started, StepProcess, Succeeded
from runjournal.journal.status import RunStatus

MAX_KEPT = 1000
"""Most late events and anomalies a state keeps (their counts go on): a hostile journal stays small."""

ProgressState = Literal["pending", "started", "succeeded", "failed", "skipped"]
"""A step's or item's state; ``pending`` means it has not started."""

Terminal = Succeeded | Failed | Cancelled | Abandoned


@dataclass(slots=True)
class ItemState:
    """One item of a fan-out step."""

    name: str
    state: ProgressState = "pending"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    exit_code: int | None = None
    message: str | None = None
    process: StepProcess | None = None
    """The process group its command ran in (from the ``started`` event)."""


@dataclass(slots=True)
class StepState:
    """One step: its state, times, exit code, fan-out counters and items."""

    name: str
    planned: bool = True
    state: ProgressState = "pending"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    exit_code: int | None = None
    message: str | None = None
    done: int | None = None
    total: int | None = None
    items: dict[str, ItemState] = field(default_factory=dict)
    process: StepProcess | None = None
    """The process group its command ran in (single-command steps; items have their own)."""


@dataclass(frozen=True, slots=True)
class LateEvent:
    """An event appended after the run's terminal event; kept, but it changes nothing."""

    seq: int
    type: str
    ts: datetime


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Something in the stream that a well-behaved writer would not produce."""

    seq: int
    kind: str
    message: str


@dataclass(slots=True)
class RunState:
    """Everything the fold knows about a run after some prefix of its events."""

    run_id: str | None = None
    status: RunStatus = "empty"
    started: Started | None = None
    terminal: Terminal | None = None
    steps: dict[str, StepState] = field(default_factory=dict)
    last_seq: int = -1
    last_event_at: datetime | None = None
    last_seen_at: datetime | None = None
    events: int = 0
    late_events: list[LateEvent] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    late_count: int = 0
    """Late events folded (the list keeps the first :data:`MAX_KEPT`)."""
    anomaly_count: int = 0
    """Anomalies found (the list keeps the first :data:`MAX_KEPT`)."""

    @property
    def workflow(self) -> str | None:
        """The workflow name from ``started``."""
        return self.started.workflow if self.started else None

    @property
    def started_at(self) -> datetime | None:
        """When the run started."""
        return self.started.ts if self.started else None

    @property
    def ended_at(self) -> datetime | None:
        """When the terminal event was written (None while running)."""
        return self.terminal.ts if self.terminal else None

    @property
    def is_terminal(self) -> bool:
        """Whether a terminal event has been folded."""
        return self.terminal is not None

    @property
    def reason(self) -> str | None:
        """The terminal event's reason code (failed, abandoned) or text (cancelled)."""
        reason = getattr(self.terminal, "reason", None)
        return getattr(reason, "value", reason)

    @property
    def last_activity(self) -> datetime | None:
        """The writer's last sign of life: its latest event before the run ended, heartbeats included
        (not a reconciler's ``abandoned``, not late events).

        An abandoned run's duration runs to here, not to whenever someone noticed it.
        """
        if self.last_seen_at is not None:
            return self.last_seen_at
        # A snapshot saved before ``last_seen_at`` existed: the latest step or item start/end.
        latest = self.started_at
        for step in self.steps.values():
            for moment in (step.started_at, step.ended_at):
                if moment is not None and (latest is None or moment > latest):
                    latest = moment
            for item in step.items.values():
                for moment in (item.started_at, item.ended_at):
                    if moment is not None and (latest is None or moment > latest):
                        latest = moment
        return latest

    @property
    def steps_done(self) -> int:
        """Steps that ended (succeeded, failed or skipped)."""
        return sum(1 for s in self.steps.values() if s.state in ("succeeded", "failed", "skipped"))

    @property
    def steps_total(self) -> int:
        """Steps planned (plus unplanned steps that showed up)."""
        return len(self.steps)

    def copy(self) -> RunState:
        """A copy the fold can mutate without touching ``self`` (events are immutable, so shared)."""
        steps = {name: _copy_step(step) for name, step in self.steps.items()}
        return replace(self, steps=steps, late_events=list(self.late_events), anomalies=list(self.anomalies))


def _copy_step(step: StepState) -> StepState:
    return replace(step, items={name: replace(item) for name, item in step.items.items()})


def shown_unit_status(run: RunState, recorded: str) -> str:
    """A step's or item's status to show: ``cancelled`` for one that ended ``failed`` in a cancelled run.

    A cancel stops the commands in flight, which then end with the signal's exit code and
    are recorded ``failed`` (the journal keeps that, and ``events`` shows it); the failure
    is the cancel's doing, so it is shown as what it was.
    """
    return "cancelled" if recorded == "failed" and run.status == "cancelled" else recorded


_STATE_ADAPTER: TypeAdapter[RunState] = TypeAdapter(RunState)


def state_to_json(state: RunState) -> dict[str, Any]:
    """The state as JSON-compatible data (a snapshot)."""
    return _STATE_ADAPTER.dump_python(state, mode="json")


def state_from_json(data: dict[str, Any]) -> RunState:
    """Rebuild a state from :func:`state_to_json` output."""
    return _STATE_ADAPTER.validate_python(data)
