"""``runjournal replay``: step through a run's history, event by event, with the status after each."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from itertools import takewhile
from typing import Any

import click

from runjournal.cli.commands.show import damaged_error
from runjournal.cli.completion import complete_run_ids
from runjournal.cli.rendering.output import (
    OutputFormat,
    emit_lines,
    emit_objects,
    output_options,
)
from runjournal.cli.rendering.textfmt import status_with_reason
from runjournal.cli.rendering.textviews import EVENT_HEADER, event_text, progress_text, step_table
from runjournal.cli.rendering.views import display_reason, display_status, plain_event_object
from runjournal.cli.target import Target
from runjournal.journal.errors import CorruptLineError
from runjournal.journal.events import Event
from runjournal.journal.plain import PlainView
from runjournal.projections.fold import fold_plain_steps
from runjournal.projections.reconcile import CurrentState, current_state
from runjournal.projections.state import RunState

Step = tuple[dict[str, Any], Event | PlainView, RunState]
"""One replayed event: its JSON object, what the fold read, and the state after it."""


@click.command()
@click.argument("run", shell_complete=complete_run_ids)
@click.option("--until", type=click.IntRange(min=0), metavar="SEQ", help="Stop after the event with this seq.")
@click.option(
    "--speed", type=click.FloatRange(min=0, min_open=True), metavar="X",
    help="Replay with the original timing, X times as fast (2: twice as fast); pauses are at most 5 s.",
)
@click.option("--no-reconcile", is_flag=True, help="Do not record the run as abandoned if its writer died.")
@output_options(jsonl=True)
@click.pass_obj
def replay(
    target: Target, run: str, until: int | None, speed: float | None, no_reconcile: bool, fmt: OutputFormat, raw: bool
) -> None:
    """Replay RUN's events, each with the run's status after it, then the state they add up to.

    With --until SEQ the replay stops after that event and shows the state as of then: which
    steps and items had completed, were in flight, had not started. The run's current
    status is reconciled first (unless --no-reconcile), so a dead writer's run ends with
    its `abandoned` event. A damaged journal is replayed up to its first bad line, then
    exits 3 naming that line.

    \b
    Examples:
      runjournal replay 2026 --until 40        the state after event 40
      runjournal replay 2026 --speed 10        watch it again, ten times as fast
      runjournal replay 2026 --jsonl | jq .status_after
    """
    store = target.open()
    run_id = store.resolve(run)
    current = current_state(store, run_id, reconcile=not no_reconcile)
    # One streaming pass over plain events: a run read before is not checked again (Store.read_plain).
    prefix = VerifiedObjects(store.read_plain(run_id))
    objects: Iterable[dict[str, Any]] = prefix
    if until is not None:
        objects = takewhile(lambda obj: obj["seq"] <= until, objects)
    steps: Iterator[Step] = fold_plain_steps(objects)
    if speed is not None:
        steps = paced(steps, speed)
    if fmt is not OutputFormat.TEXT:
        emit_objects(_event_objects(steps), fmt)
    else:
        # Paced output goes out line by line; otherwise in batches (a million-event replay).
        text = replay_lines(((event, state) for _, event, state in steps), current, raw)
        emit_lines(text, raw, batch=1 if speed is not None else 512)
    if prefix.damage is not None:
        raise damaged_error(run_id, prefix.damage)


class VerifiedObjects:
    """A run's plain events up to its first bad line; afterwards ``damage`` is that line's error (None if none)."""

    def __init__(self, objects: Iterator[dict[str, Any]]) -> None:
        self.objects = objects
        self.damage: CorruptLineError | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            yield from self.objects
        except CorruptLineError as exc:
            self.damage = exc


def _event_objects(steps: Iterator[Step]) -> Iterator[dict[str, Any]]:
    """The JSON object of each step; the step counts are recounted only after an event that can change them."""
    counts = None
    for obj, _, state in steps:
        if counts is None or obj["type"] != "heartbeat":  # a heartbeat changes no step
            counts = (state.steps_done, state.steps_total)
        yield plain_event_object(obj, state, counts)


MAX_WAIT = 5.0
"""Longest pause ``--speed`` makes between two events, in seconds: longer gaps are shortened to it."""


def paced(steps: Iterator[Step], speed: float) -> Iterator[Step]:
    """Yield each step after the original gap between its event and the previous one, divided by ``speed``.

    Each pause is at most :data:`MAX_WAIT` seconds, so a gap of hours (or of centuries, in a
    hostile journal) never stalls the replay.
    """
    previous = None
    for obj, event, state in steps:
        if previous is not None:
            gap = min((event.ts - previous).total_seconds() / speed, MAX_WAIT)
            if gap > 0:
                time.sleep(gap)  # the original timing is the feature here, not a wait for a condition
        previous = event.ts
        yield obj, event, state


def replay_lines(
    steps: Iterator[tuple[Event | PlainView, RunState]], current: CurrentState, raw: bool
) -> Iterator[str]:
    """The text form of ``replay``: one line per event, then the state the replayed events add up to."""
    yield EVENT_HEADER
    last: RunState | None = None
    for event, state in steps:
        yield event_text(event, state, raw)
        last = state
    if last is None:
        return
    as_of = f"seq {last.last_seq}" + (" (the last event)" if last.last_seq >= current.state.last_seq else "")
    yield ""
    yield (f"state as of {as_of}: {status_with_reason(last.status, last.reason, raw)}, "
           f"steps {last.steps_done}/{last.steps_total}")
    yield from step_table(last, raw)
    yield ""
    yield from progress_text(last, raw)
    now_status = display_status(current)
    if now_status != last.status or last.last_seq != current.state.last_seq:
        yield ""
        yield f"current status: {status_with_reason(now_status, display_reason(current), raw)}"
