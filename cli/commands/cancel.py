"""``runjournal cancel``: stop a run that is not finished, whether its writer lives or not.

A live writer is asked to stop (it stops its steps and records ``cancelled`` itself). A run
whose writer is gone is cancelled by this command: under the run's lock it stops what the
run left running (identity-checked process groups, see :mod:`projections.leftovers`) and
appends ``cancelled`` with who, why and what was killed. A run already recorded
``abandoned`` whose processes still run gets them stopped too, documented by a late
``cancelled`` event (the status stays ``abandoned``: the first terminal event wins).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import click

from runjournal.cli.completion import complete_run_ids
from runjournal.cli.engine.runfiles import clear_cancel_request, write_cancel_request
from runjournal.cli.errors import JournalClickError, UserError
from runjournal.cli.rendering.output import clean
from runjournal.cli.target import Target
from runjournal.journal.errors import RunLockedError
from runjournal.journal.events import WriterIdentity
from runjournal.journal.identity import current_user
from runjournal.journal.processes import view_consistent
from runjournal.journal.procfacts import boot_id, host_name, normalise_boot_id, process_info
from runjournal.journal.status import ExitCode
from runjournal.journal.store import Store
from runjournal.projections.fold import fold
from runjournal.projections.leftovers import Leftovers, describe, stop_leftovers, unit_label
from runjournal.projections.state import RunState
from runjournal.projections.tail import RunTail, wait_until_over

POLL_SECONDS = 0.05
"""How often to look for the writer's end while waiting (a cancel is usually over in milliseconds)."""
LOCK_ATTEMPTS = 40
_LOCK_BACKOFF = 0.005


@click.command()
@click.argument("ref", metavar="RUN", shell_complete=complete_run_ids)
@click.option("--reason", metavar="TEXT", help="Why; recorded in the run's `cancelled` event.")
@click.option("--wait", "wait_seconds", type=click.FloatRange(min=0), default=30.0, show_default=True,
              metavar="SECONDS",
              help="Seconds to wait for a live writer to record `cancelled`.")
@click.pass_obj
def cancel(target: Target, ref: str, reason: str | None, wait_seconds: float) -> None:
    """Cancel RUN: stop its steps' processes and record `cancelled` with who and why.

    A live writer is asked to stop: the request (who, why) is written beside the journal,
    then the writer gets SIGTERM, after checking it is still the process that started the
    run (same host, boot, pid namespace and start time). If the writer is gone, this command
    stops what the run left running itself (each process group identity-checked against the
    journal) and records `cancelled` with what it killed. A run already `abandoned` whose
    processes still run has them stopped, recorded as a late event. Exit 0 once the run is
    over and its processes stopped; 1 if RUN had already ended with nothing left running,
    did not stop within --wait, or left processes that could not be stopped; 2 if RUN is
    unknown.

    \b
    Examples:
      runjournal cancel 20260114T0930 --reason "wrong version"
    """
    store = target.open()
    run_id = store.resolve(ref)
    state = _fold(store, run_id)
    writer = state.started.writer if state.started is not None else None
    by = f"{current_user()}@{host_name()}"
    if state.is_terminal or writer is None or not _is_live_writer(writer):
        _cancel_orphan(store, run_id, state, by, reason)
        return
    write_cancel_request(store.side_files, run_id, by, reason)
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
    """The recorded writer runs on this host, this boot, with the recorded start ticks and pid namespace,
    and this process numbers processes as ``/proc`` does (so the recorded pid may be signalled)."""
    if writer.host != host_name():
        raise UserError(f"the run's writer runs on host {writer.host!r}; cancel it there")
    if normalise_boot_id(writer.boot_id) != boot_id() or not view_consistent():
        return False
    info = process_info(writer.pid)
    if info is None or info.state == "zombie" or info.start_ticks != writer.start_ticks:
        return False
    return writer.pid_ns is None or info.pid_ns in (None, writer.pid_ns)


def _cancel_orphan(store: Store, run_id: str, state: RunState, by: str, reason: str | None) -> None:
    """The writer is gone (or the run ended): stop what the run left running, under its lock, and record it."""
    if state.started is None:
        raise JournalClickError(f"run {run_id} has no 'started' event; nothing to cancel", ExitCode.NEGATIVE)
    if state.is_terminal and not _anything_running(state):
        raise JournalClickError(f"run {run_id} already {state.status}; nothing to cancel", ExitCode.NEGATIVE)
    locked_state, leftovers, event = _stop_under_lock(store, run_id, by, reason)
    clear_cancel_request(store.side_files, run_id)
    _report_orphan(run_id, locked_state, leftovers, event is not None)


def _anything_running(state: RunState) -> bool:
    """Whether a finished run still has processes running (only an abandoned run can)."""
    if state.status != "abandoned":
        return False
    return stop_leftovers(state, stop=False).still_running


def _stop_under_lock(store: Store, run_id: str, by: str, reason: str | None) -> tuple[RunState, Leftovers, Any]:
    """Take the run's lock (proof that no writer appends), stop the leftovers, append ``cancelled``."""
    for attempt in range(LOCK_ATTEMPTS):
        try:
            with store.locked_run(run_id) as locked:
                state = fold(locked.events())
                if state.is_terminal and state.status != "abandoned":
                    return state, Leftovers(), None
                leftovers = stop_leftovers(state)
                if state.is_terminal and not (leftovers.still_running or _killed(leftovers)):
                    return state, leftovers, None
                evidence = {"writer": "gone: the run's lock was free", **leftovers.to_evidence()}
                event = locked.append_cancelled(by, reason, evidence)
                return fold([event], start=state), leftovers, event
        except RunLockedError:
            if attempt + 1 == LOCK_ATTEMPTS:
                raise JournalClickError(
                    f"run {run_id}: its writer is not a process this host can signal, but the run's lock is held "
                    "(a writer in another pid namespace, or a reconciler); cancel it where it runs",
                    ExitCode.NEGATIVE) from None
            time.sleep(_LOCK_BACKOFF)
    raise AssertionError("unreachable")


def _killed(leftovers: Leftovers) -> bool:
    return any(u.outcome == "killed" for u in leftovers.units)


def _report_orphan(run_id: str, state: RunState, leftovers: Leftovers, recorded: bool) -> None:
    for work in leftovers.units:
        click.echo(f"run {run_id}: {clean(work.unit.label, inline=True)}: {describe(work.to_data())}", err=True)
    for process in leftovers.escaped:
        label = clean(unit_label(process["step"], process["item"]), inline=True)
        click.echo(f"run {run_id}: pid {process['pid']} ({label}) left its process group and still runs; "
                   "it was not signalled", err=True)
    if not recorded:
        raise JournalClickError(f"run {run_id} already {state.status}; nothing to cancel", ExitCode.NEGATIVE)
    late = state.status != "cancelled"
    stopped = "its leftovers were stopped" if _killed(leftovers) else "nothing of it was left to stop"
    what = f"already {state.status}; {stopped} (recorded as a late event)" if late else "cancelled"
    click.echo(f"run {run_id}: the writer was gone; {what}", err=True)
    terminal = state.terminal
    click.echo(f"{run_id} {state.status}" + ("" if late else f" by {clean(getattr(terminal, 'by', ''))}"))
    if leftovers.still_running:
        click.echo(f"runjournal: error: run {run_id}: some of its processes still run (see above)", err=True)
        sys.exit(ExitCode.NEGATIVE)


def _report(run_id: str, state: RunState) -> None:
    if state.status != "cancelled":
        click.echo(f"run {run_id} ended {state.status} before it could be cancelled", err=True)
        click.echo(f"{run_id} {state.status}")
        sys.exit(ExitCode.NEGATIVE)
    terminal = state.terminal
    by = clean(getattr(terminal, "by", ""))
    click.echo(f"{run_id} cancelled by {by}")
