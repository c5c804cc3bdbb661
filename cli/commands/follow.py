"""``runjournal follow``: print a run's events as they are appended, until the run ends.

The waiting (change notifications, polls, the writer's liveness) is
:func:`runjournal.projections.tail.follow_events`; this command only prints.
"""

from __future__ import annotations

import sys
import time

import click

from runjournal.cli.rendering.output import OutputFormat, emit_objects, emit_text, output_options
from runjournal.cli.rendering.textviews import EVENT_HEADER, event_text
from runjournal.cli.rendering.views import display_reason, event_object
from runjournal.cli.target import Target
from runjournal.journal.status import STATUS_EXIT_CODES, ExitCode
from runjournal.projections.tail import RunTail, follow_events


@click.command()
@click.argument("run")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Give up after S seconds if the run is still running (exit 124).")
@output_options(jsonl=True)
@click.pass_obj
def follow(target: Target, run: str, timeout: float | None, fmt: OutputFormat, raw: bool) -> None:
    """Print RUN's events as they are appended, until the run ends; exit with its status.

    Prints the events already written first, so it also works on a run that is over. Exit
    0 succeeded, 1 failed, 4 abandoned (also when the writer dies while you follow: the run
    is then reconciled), 5 cancelled, 124 timed out.

    \b
    Examples:
      runjournal follow 2026                  attach to a detached run
      runjournal follow 2026 --jsonl | jq -c '[.seq, .type, .status_after]'
    """
    store = target.open()
    tail = RunTail(store, store.resolve(run))
    deadline = None if timeout is None else time.monotonic() + timeout
    steps = follow_events(tail, deadline=deadline)
    if fmt is not OutputFormat.TEXT:
        emit_objects((event_object(event, state) for event, state in steps), fmt)
    else:
        emit_text(EVENT_HEADER)
        for event, state in steps:
            emit_text(event_text(event, state, raw), raw)
    sys.exit(_outcome(tail))


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
