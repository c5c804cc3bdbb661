"""``runjournal follow``: print a run's events as they are appended, until the run ends.

A file-change notification only says "something changed", so every wake re-reads from
the last cursor; the reader stops before a line without its newline, so a half-written
line is never printed (it is read whole on a later wake). Watching falls back to a poll
every :data:`POLL_MS` ms, which also covers appends made between the first read and the
watcher starting, and is when a silent run's writer is checked for liveness.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import click

from runjournal.cli.rendering.output import OutputFormat, emit_objects, emit_text, output_options
from runjournal.cli.rendering.textviews import EVENT_HEADER, event_text
from runjournal.cli.rendering.views import display_reason, display_status, event_object
from runjournal.cli.target import Target
from runjournal.journal.events import Event
from runjournal.journal.reader import Cursor
from runjournal.journal.status import STATUS_EXIT_CODES, ExitCode
from runjournal.journal.store import Store
from runjournal.projections.fold import fold_steps
from runjournal.projections.reconcile import current_state
from runjournal.projections.state import RunState

POLL_MS = 500
"""Longest wait between re-reads when no change notification arrives (ms)."""

# watchfiles' default debounce (1.6 s) suits rebuilds, not tailing a log.
WATCH_OPTIONS: dict[str, Any] = {
    "debounce": 10, "step": 5, "rust_timeout": POLL_MS, "yield_on_timeout": True, "watch_filter": None,
}


class Tail:
    """A run read incrementally: the cursor after the last whole line read, and the fold so far."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.cursor = Cursor()
        self.state = RunState()
        self.derived: Any = None
        self.timed_out = False

    def new_events(self) -> Iterator[tuple[Event, RunState]]:
        """The events appended since the last call, each with the state after it."""
        reader = self.store.read(self.run_id, self.cursor)
        for event, state in fold_steps(reader.events(), self.state):
            self.state = state
            self.cursor = reader.cursor
            yield event, state

    def writer_gone(self) -> bool:
        """Whether the run's writer is gone (then the run is reconciled, or found dead on a read-only journal)."""
        if self.store.writer_alive(self.run_id):
            return False
        current = current_state(self.store, self.run_id, reconcile=True)
        if current.state.is_terminal or current.state.started is None:
            # No 'started' and nobody holding the lock: our writer links run files into place
            # complete, so nothing will ever be appended to this one.
            return True
        if display_status(current) != current.state.status:
            self.derived = current
            return True
        return False


def follow_events(tail: Tail, watch: Callable[[], Iterator[set[Any]]], deadline: float | None) -> Iterator[
        tuple[Event, RunState]]:
    """Every event of the run, old and new, until it is terminal, its writer is gone, or ``deadline``.

    ``watch()`` yields a non-empty set when the run may have grown and an empty one every
    :data:`POLL_MS` without news (then the writer's liveness is checked).
    """
    yield from tail.new_events()
    if tail.state.is_terminal:
        return
    if tail.writer_gone():  # a run whose writer died before we came: no need to wait for a poll
        yield from tail.new_events()
        return
    for changes in watch():
        yield from tail.new_events()
        if tail.state.is_terminal:
            return
        if not changes and tail.writer_gone():
            yield from tail.new_events()
            return
        if deadline is not None and time.monotonic() >= deadline:
            tail.timed_out = True
            return


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
    tail = Tail(store, store.resolve(run))
    deadline = None if timeout is None else time.monotonic() + timeout
    steps = follow_events(tail, lambda: watch_run(store, tail.run_id), deadline)
    if fmt is not OutputFormat.TEXT:
        emit_objects((event_object(event, state) for event, state in steps), fmt)
    else:
        emit_text(EVENT_HEADER)
        for event, state in steps:
            emit_text(event_text(event, state, raw), raw)
    sys.exit(_outcome(tail))


def watch_run(store: Any, run_id: str) -> Iterator[set[Any]]:
    """Change notifications for one run: LISTEN/NOTIFY for a database store, inotify (watchfiles) for a file."""
    if store.lock_scope == "server":
        return store.watch_run(run_id, poll_seconds=POLL_MS / 1000)
    import watchfiles  # lazily: it is only needed here and costs start-up time elsewhere

    return watchfiles.watch(store.path(run_id), **WATCH_OPTIONS)


def _outcome(tail: Tail) -> int:
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
