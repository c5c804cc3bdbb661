"""Fitting a run's ``started`` event into one journal line: names checked, inputs clipped, long plans split.

A ``started`` line lists the planned steps and their items. When that line would pass
:data:`~runjournal.journal.limits.STARTED_BUDGET` (a 20,000-item fan-out easily does), the
items of every fan-out step leave the line: each such step keeps ``items: []`` and
``item_count: N``, and the names follow in ``items-planned`` events of at most
:data:`~runjournal.journal.limits.ITEMS_CHUNK_BYTES` each, appended by the writer right
after ``started`` and before any step runs. The fold adds them as pending items, so a
reader of the journal alone (any store, any host) sees every planned item and which ones
never started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from runjournal.journal.codec import encode_line
from runjournal.journal.events import PlannedStep, Started
from runjournal.journal.limits import (
    ITEMS_CHUNK_BYTES,
    MAX_INPUT_BYTES,
    STARTED_BUDGET,
    EventTooLargeError,
    clip_text,
    encodable,
)
from runjournal.journal.records import GENESIS_HASH

MAX_NAME_BYTES = 4096
"""Longest workflow, step or item name a run may record (UTF-8 bytes)."""


@dataclass(frozen=True, slots=True)
class PlanSplit:
    """The ``started`` event to write, and ``(step, items)`` chunks to record after it."""

    started: Started
    chunks: list[tuple[str, list[str]]] = field(default_factory=list)


def check_names(workflow: str, steps: list[PlannedStep]) -> None:
    """Refuse (before anything is written) a workflow, step or item name over :data:`MAX_NAME_BYTES`."""
    _check_name(workflow, "workflow name")
    for step in steps:
        _check_name(step.name, "step name")
        for item in step.items or ():
            _check_name(item, f"item of step {step.name[:60]!r}")


def _check_name(name: str, what: str) -> None:
    if encodable(name) != name:
        raise EventTooLargeError(f"{what} {encodable(name)[:60]!r} is not valid text (undecodable bytes)")
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise EventTooLargeError(f"{what} is {size} bytes, over the {MAX_NAME_BYTES}-byte limit: {name[:60]!r}...")


def clip_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs as ``started`` records them: keys made encodable, string values clipped."""
    return {clip_text(str(key), MAX_NAME_BYTES): clip_text(value, MAX_INPUT_BYTES) if isinstance(value, str) else value
            for key, value in inputs.items()}


def split_plan(started: Started) -> PlanSplit:
    """``started`` as is if its line fits the budget, else with its items moved into chunks."""
    if not any(step.items for step in started.steps) or _fits(started):
        return PlanSplit(started)
    steps: list[PlannedStep] = []
    chunks: list[tuple[str, list[str]]] = []
    for step in started.steps:
        if not step.items:
            steps.append(step)
            continue
        steps.append(PlannedStep(name=step.name, items=[], item_count=len(step.items)))
        chunks += [(step.name, chunk) for chunk in _chunks(step.items)]
    return PlanSplit(started.model_copy(update={"steps": steps}), chunks)


def _fits(started: Started) -> bool:
    try:
        line, _ = encode_line(started, GENESIS_HASH)
    except EventTooLargeError:
        return False
    return len(line) <= STARTED_BUDGET


def _chunks(items: list[str]) -> list[list[str]]:
    """``items`` in order, cut into lists whose JSON is at most about :data:`ITEMS_CHUNK_BYTES`."""
    chunks: list[list[str]] = [[]]
    size = 0
    for item in items:
        cost = len(orjson.dumps(item)) + 1
        if chunks[-1] and size + cost > ITEMS_CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += cost
    return chunks
