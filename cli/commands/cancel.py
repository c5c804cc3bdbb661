"""``runjournal cancel``: ask a run's writer to stop; reconcile instead if the writer is gone."""

from __future__ import annotations

import os
import signal
import sys
import time

import click

from runjournal.cli.completion import complete_run_ids
from runjournal.cli.engine.runfiles import clear_cancel_request, write_cancel_request
from runjournal.cli.errors import JournalClickError, UserError
from runjournal.cli.rendering.output import clean
from runjournal.cli.target import Target
from runjournal.journal.events import WriterIdentity
from runjournal.journal.identity import current_user
from runjournal.journal.procfacts import boot_id, host_name, process_info
from runjournal.journal.status import ExitCode
from runjournal.journal.store import Store
from runjournal.projections.fold import fold
from runjournal.projections.reconcile import reconcile_run
from runjournal.projections.state import RunState
from runjournal.projections.tail import RunTail, wait_until_over

POLL_SECONDS = 0.05
"""How often to look for the writer's end while waiting (a cancel is usually over in milliseconds)."""


@click.command()
@click.argument("ref", metavar="RUN", shell_complete=complete_run_ids)
@click.option("--reason", metavar="TEXT", help="Why; recorded in the run's `cancelled` event.")
@click.option("--wait", "wait_seconds", type=click.FloatRange(min=0), default=30.0, show_default=True,
              metavar="SECONDS",
              help="Seconds to wait for the run to record `cancelled`.")
@click.pass_obj
def cancel(target: Target, ref: str, reason: str | None, wait_seconds: float) -> None:
    """Cancel RUN cooperatively: its writer stops the steps' processes and records `cancelled`.

    The request (who, why) is written beside the journal, then the writer process gets
    SIGTERM, after checking it is still the process that started the run (same host, boot
    and start time). If the writer is gone, the run is reconciled instead (recorded
    `abandoned`). Exit 0 once the run is over; 1 if RUN had already ended (nothing is
    done) or did not stop within --wait; 2 if RUN is unknown.

    \b
    Examples:
      runjournal cancel 20260114T0930 --reason "wrong version"
    """
    store = target.open()
    run_id = store.resolve(ref)
    state = _fold(store, run_id)
    if state.is_terminal:
        raise JournalClickError(f"run {run_id} already {state.status}; nothing to cancel", ExitCode.NEGATIVE)
    writer = state.started.writer if state.started is not None else None
    if writer is None or not _is_live_writer(writer):
        _reconcile_instead(store, run_id)
        return
    write_cancel_request(store.side_files, run_id, f"{current_user()}@{host_name()}", reason)
    try:
        os.kill(writer.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # it ended meanwhile; the wait below sees how
    tail = RunTail(store, run_id)
    final = wait_until_over(tail, deadline=time.monotonic() + wait_seconds, poll_seconds=POLL_SECONDS)
    clear_cancel_request(store.side_files, run_id)
    if tail.timed_out:
        raise JournalClickError(
            f"run {run_id} did not stop within the wait; its writer (pid {writer.pid}) is still running",
            ExitCode.NEGATIVE,
        )
    _report(run_id, final)


def _fold(store: Store, run_id: str) -> RunState:
    return fold(store.read(run_id).events())


def _is_live_writer(writer: WriterIdentity) -> bool:
    """The recorded writer runs on this host, this boot, with the recorded start time."""
    if writer.host != host_name():
        raise UserError(f"the run's writer runs on host {writer.host!r}; cancel it there")
    if writer.boot_id != boot_id():
        return False
    info = process_info(writer.pid)
    return info is not None and info.start_ticks == writer.start_ticks and info.state != "zombie"


def _reconcile_instead(store: Store, run_id: str) -> None:
    result = reconcile_run(store, run_id)
    clear_cancel_request(store.side_files, run_id)
    if not result.state.is_terminal:
        raise JournalClickError(
            f"run {run_id}: its writer is not running here, but it cannot be judged dead ({result.action}); "
            "see 'runjournal reconcile --help'", ExitCode.NEGATIVE,
        )
    click.echo(f"run {run_id}: the writer was gone; recorded {result.state.status} ({result.state.reason})",
               err=True)
    click.echo(f"{run_id} {result.state.status}")


def _report(run_id: str, state: RunState) -> None:
    if state.status != "cancelled":
        click.echo(f"run {run_id} ended {state.status} before it could be cancelled", err=True)
        click.echo(f"{run_id} {state.status}")
        sys.exit(ExitCode.NEGATIVE)
    terminal = state.terminal
    by = clean(getattr(terminal, "by", ""))
    click.echo(f"{run_id} cancelled by {by}")
