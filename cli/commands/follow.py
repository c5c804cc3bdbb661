"""``runjournal follow``: print a run's events as they are appended, until the run ends.

The waiting (change notifications, polls, the writer's liveness) is
:func:`runjournal.projections.tail.follow_events`; this command only prints.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import click

from runjournal.cli.completion import complete_run_ids
from runjournal.cli.rendering.output import OutputFormat, emit_objects, emit_text, output_options
from runjournal.cli.rendering.textviews import EVENT_HEADER, event_text
from runjournal.cli.rendering.views import display_reason, event_object
from runjournal.cli.target import Target
from runjournal.cli.timeargs import WHEN_METAVAR, parse_when
from runjournal.journal.events import Event
from runjournal.journal.status import STATUS_EXIT_CODES, ExitCode
from runjournal.journal.store import Store
from runjournal.projections.state import RunState
from runjournal.projections.tail import RunTail, follow_events


@click.command()
@click.argument("run", shell_complete=complete_run_ids)
@click.option("-n", "--lines", type=click.IntRange(min=0), metavar="N",
              help="Print only the last N events already written (0: only new ones), then follow.")
@click.option("--since", metavar=WHEN_METAVAR,
              help="Print only events written since then (s, m, h, d, w ago, or a local date/time).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Give up after S seconds if the run is still running (exit 124).")
@output_options(jsonl=True)
@click.pass_obj
def follow(target: Target, run: str, lines: int | None, since: str | None, timeout: float | None,
           fmt: OutputFormat, raw: bool) -> None:
    """Print RUN's events as they are appended, until the run ends; exit with its status.

    Prints the events already written first, so it also works on a run that is over. Exit
    0 succeeded, 1 failed, 4 abandoned (also when the writer dies while you follow: the run
    is then reconciled), 5 cancelled, 124 timed out.

    \b
    Examples:
      runjournal follow 2026                  attach to a detached run
      runjournal follow 2026 -n 10            the last 10 events, then new ones
      runjournal follow 2026 --since 5m       what happened in the last five minutes, then new ones
      runjournal follow 2026 --jsonl | jq -c '[.seq, .type, .status_after]'
    """
    store = target.open()
    tail = RunTail(store, store.resolve(run))
    cutoff = parse_when(since, datetime.now(UTC)) if since is not None else None
    deadline = None if timeout is None else time.monotonic() + timeout
    skip = max(0, _written(store, tail.run_id) - lines) if lines is not None else 0
    steps = shown(follow_events(tail, deadline=deadline), skip, cutoff)
    if fmt is not OutputFormat.TEXT:
        emit_objects((event_object(event, state) for event, state in steps), fmt)
    else:
        emit_text(EVENT_HEADER)
        for event, state in steps:
            emit_text(event_text(event, state, raw), raw)
    sys.exit(_outcome(tail))


def shown(steps: Iterator[tuple[Event, RunState]], skip: int, since: datetime | None) -> Iterator[
        tuple[Event, RunState]]:
    """The steps to print: all but the first ``skip``, and only events written at or after ``since``.

    The skipped events are still folded (the status after each printed event is right).
    """
    for index, (event, state) in enumerate(steps):
        if index >= skip and (since is None or event.ts >= since):
            yield event, state


def _written(store: Store, run_id: str) -> int:
    """How many whole lines the run has now (counted without parsing them)."""
    return sum(1 for _ in store.raw_lines(run_id))


def _outcome(tail: RunTail) -> int:
    """The exit code, after saying on stderr why the run is not over if it is not."""
    if tail.state.is_terminal:
        return STATUS_EXIT_CODES.get(tail.state.status, ExitCode.NEGATIVE)
    if tail.state.started is None:
        click.echo(f"runjournal: error: run {tail.run_id} has no 'started' event and no writer; "
                   "nothing to follow (see 'runjournal verify')", err=True)
        return ExitCode.JOURNAL
    if tail.derived is not None:
        reason = display_reason(tail.derived)
        click.echo(f"runjournal: run {tail.run_id}: writer gone ({reason}); the journal is read-only, "
                   "so this was not recorded", err=True)
        return ExitCode.ABANDONED
    click.echo(f"runjournal: run {tail.run_id} is still running after the --timeout", err=True)
    return ExitCode.TIMEOUT
