"""A run on a time axis: one bar per step and per item, for ``show --timeline`` and ``report``.

A pure projection of a run's current state: where each step and item starts and ends,
which were still in flight when the run ended and which never started, and when the
writer was last seen. The renderers (text and SVG) only place what this computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from runjournal.journal.status import DERIVED_ABANDONED
from runjournal.projections.reconcile import CurrentState
from runjournal.projections.state import ItemState, StepState, shown_unit_status

IN_FLIGHT = "in flight"
NEVER_STARTED = "never started"


@dataclass(frozen=True, slots=True)
class Bar:
    """One step (``item`` None) or item. ``status``: ``succeeded``, ``failed``, ``cancelled``, ``skipped``,
    ``in flight`` (started, never ended: the bar runs to the end of the axis) or ``never started`` (no bar)."""

    step: str
    item: str | None
    status: str
    start: datetime | None
    end: datetime | None
    exit_code: int | None
    message: str | None

    @property
    def label(self) -> str:
        """The step's name, or the item's."""
        return self.step if self.item is None else self.item


@dataclass(frozen=True, slots=True)
class Timeline:
    """The axis runs from the run's start to ``end``: its terminal event; the writer's last sign of life
    for an abandoned run (a reconciler may have noticed much later); ``now`` for a live one.
    ``last_seen`` (the writer's last event) is set for abandoned and running runs only."""

    run_id: str
    workflow: str | None
    status: str
    reason: str | None
    start: datetime
    end: datetime
    last_seen: datetime | None
    bars: tuple[Bar, ...]

    def fraction(self, moment: datetime) -> float:
        """Where ``moment`` falls on the axis, from 0 (start) to 1 (end)."""
        span = (self.end - self.start).total_seconds()
        if span <= 0:
            return 0.0
        return min(1.0, max(0.0, (moment - self.start).total_seconds() / span))

    @property
    def duration(self) -> timedelta:
        """The length of the axis."""
        return self.end - self.start


def timeline(current: CurrentState, status: str, reason: str | None, now: datetime) -> Timeline | None:
    """The timeline of a run shown with ``status`` and ``reason`` (None for a run without ``started``)."""
    state = current.state
    if state.started_at is None:
        return None
    # The writer's last sign of life matters where the run did not end by itself: abandoned or still running.
    last_seen = state.last_activity if status in ("abandoned", DERIVED_ABANDONED, "running") else None
    if status in ("abandoned", DERIVED_ABANDONED):
        end = state.last_activity or state.started_at
    elif state.ended_at is not None:
        end = state.ended_at
    else:
        end = now
    end = max(end, state.started_at)
    bars: list[Bar] = []
    for step in state.steps.values():
        bars.append(_bar(step, None, current, end))
        bars += [_bar(step, item, current, end) for item in step.items.values()]
    return Timeline(current.run_id, state.workflow, status, reason, state.started_at, end, last_seen, tuple(bars))


def _bar(step: StepState, item: ItemState | None, current: CurrentState, end: datetime) -> Bar:
    unit = item if item is not None else step
    recorded = unit.state
    if recorded == "pending" and step.state == "skipped":
        recorded = "skipped"
    if recorded == "started":
        status, stop = IN_FLIGHT, end
    elif recorded == "pending":
        status, stop = NEVER_STARTED, None
    else:
        status, stop = shown_unit_status(current.state, recorded), unit.ended_at
    start = unit.started_at if unit.started_at is not None else (stop if recorded == "skipped" else None)
    return Bar(step.name, None if item is None else item.name, status, start, stop, unit.exit_code, unit.message)
