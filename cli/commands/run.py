"""``runjournal run``, ``exec`` and ``rerun``: start journaled runs, attached or detached."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from runjournal.cli.completion import complete_run_ids
from runjournal.cli.engine.launch import LaunchSpec, begin_run
from runjournal.cli.engine.runfiles import full_inputs
from runjournal.cli.engine.runner import Runner, stop_signals
from runjournal.cli.engine.skips import SkipPlan, skip_plan_from
from runjournal.cli.engine.supervisor import spawn
from runjournal.cli.engine.workflow import (
    Step,
    Workflow,
    WorkflowError,
    check_name,
    file_digest,
    load_workflow,
    read_workflow_bytes,
)
from runjournal.cli.errors import JournalClickError, UserError
from runjournal.cli.rendering.output import can_redraw
from runjournal.cli.rendering.progress import Progress
from runjournal.cli.target import Target
from runjournal.journal.ids import new_run_id
from runjournal.journal.limits import MAX_INPUTS, is_clipped
from runjournal.journal.run import DEFAULT_HEARTBEAT_INTERVAL
from runjournal.journal.status import STATUS_EXIT_CODES, ExitCode
from runjournal.journal.store import Store
from runjournal.projections.leftovers import conflicts, stop_leftovers
from runjournal.projections.reconcile import current_state
from runjournal.projections.state import RunState

_INPUT_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _parse_inputs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    if len(values) > MAX_INPUTS:
        raise click.BadParameter(f"{len(values)} inputs given; a run records at most {MAX_INPUTS}")
    inputs: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or _INPUT_KEY.fullmatch(key) is None:
            raise click.BadParameter(f"{value!r}: expected KEY=VALUE with KEY a letter or _ then letters, digits, _")
        inputs[key] = text
    return inputs


def launch_options(fn: Any) -> Any:
    """The options every run-starting command shares."""
    fn = click.option("--input", "inputs", multiple=True, metavar="KEY=VALUE", callback=_parse_inputs,
                      help="Record an input of the run (repeatable); steps see it as $RUNJOURNAL_INPUT_<KEY>, KEY "
                      "upper-cased (--input version=1.4.2: $RUNJOURNAL_INPUT_VERSION).")(fn)
    fn = click.option("--allow-concurrent", is_flag=True,
                      help="Start even if this workflow already has a live run.")(fn)
    return click.option("--detach", is_flag=True,
                        help="Run under a supervisor that outlives this command; print the run id and return.")(fn)


@click.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=True), metavar="FILE")
@launch_options
@click.pass_obj
def run(target: Target, file: Path, detach: bool, allow_concurrent: bool, inputs: dict[str, str]) -> None:
    """Run the workflow in FILE (TOML), journaling every step and item.

    Attached (the default), this command is the run's writer: it shows live progress on
    stderr and exits 0 if the run succeeded, 1 if it failed, 5 if it was cancelled (Ctrl-C
    or SIGTERM stop the steps' processes and record `cancelled`). The run id is printed on
    stdout as soon as the run exists. Step output is kept; see `runjournal logs RUN`.
    Exit 2 for a bad workflow file; 3 if the workflow already has a live run (its id is
    named; see --allow-concurrent) or the journal cannot be written. The file format is
    described in docs/workflow.md; `runjournal example fanout` prints an example.

    \b
    Examples:
      runjournal example fanout > fanout.toml && runjournal run fanout.toml
      runjournal run deploy.toml --input version=1.4.2 --detach
    """
    workflow = _load(file)
    spec = LaunchSpec(new_run_id(), workflow, inputs, allow_concurrent=allow_concurrent, argv=tuple(sys.argv))
    _launch(target.open(), spec, detach=detach)


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--workflow", "-w", "name", required=True, metavar="NAME", help="Workflow name to record the run under.")
@click.option("--step", "step_name", metavar="NAME", help="Name of the step.  [default: the command's name]")
@launch_options
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD [ARGS]...")
@click.pass_obj
def exec_command(target: Target, name: str, step_name: str | None, detach: bool, allow_concurrent: bool,
                 inputs: dict[str, str], command: tuple[str, ...]) -> None:
    """Run any command as a journaled one-step run (no shell involved).

    Attached, the command's output passes through (and is kept for `runjournal logs`) and
    this exits with the command's exit code (127 if it cannot be found, 5 if cancelled).

    \b
    Examples:
      runjournal exec --workflow backup -- rsync -a /srv/ backup:/srv/
      runjournal exec -w nightly --detach -- ./nightly.sh --full
    """
    step = Step(step_name or Path(command[0]).name or "command", argv=tuple(command))
    workflow = Workflow(_check_name(name), (step,), DEFAULT_HEARTBEAT_INTERVAL)
    spec = LaunchSpec(new_run_id(), workflow, inputs, allow_concurrent=allow_concurrent, argv=tuple(sys.argv))
    _launch(target.open(), spec, detach=detach, echo=True)


@click.command()
@click.argument("ref", metavar="RUN", shell_complete=complete_run_ids)
@click.option("--unfinished", is_flag=True, help="Skip the steps and items that succeeded in RUN.")
@click.option("--allow-changed", is_flag=True, help="Run the workflow file even if it changed since RUN.")
@click.option("--ignore-leftovers", is_flag=True,
              help="Start even if processes of RUN that this rerun would repeat are still running.")
@launch_options
@click.pass_obj
def rerun(target: Target, ref: str, unfinished: bool, allow_changed: bool, ignore_leftovers: bool, detach: bool,
          allow_concurrent: bool, inputs: dict[str, str]) -> None:
    """Start a new run of RUN's workflow file, linked to RUN (`rerun_of`).

    RUN's inputs are reused (--input adds or overrides). The file must be unchanged since
    RUN (same sha256) unless --allow-changed. With --unfinished, what succeeded in RUN is
    recorded as skipped ("succeeded in run ...") instead of run again. Refused (exit 3)
    while a process RUN started for a step or item that this rerun would run again is
    still alive (one that left its process group, or another user's), so no unit ever runs
    twice at once; --ignore-leftovers starts anyway.

    \b
    Examples:
      runjournal rerun 20260114T0930 --unfinished
    """
    store = target.open()
    old = current_state(store, store.resolve(ref)).state
    if old.started is None or old.started.workflow_file is None:
        raise UserError(f"run {old.run_id} was not started from a workflow file; nothing to rerun")
    workflow = _load_same(Path(old.started.workflow_file), old.started.workflow_digest, old.run_id, allow_changed)
    skip = skip_plan_from(old) if unfinished else SkipPlan()
    if not ignore_leftovers:
        _refuse_leftovers(old, skip)
    spec = LaunchSpec(new_run_id(), workflow, {**_old_inputs(store, old.run_id, old.started.inputs), **inputs},
                      rerun_of=old.run_id, skip=skip, allow_concurrent=allow_concurrent, argv=tuple(sys.argv))
    _launch(store, spec, detach=detach)


def _refuse_leftovers(old: RunState, skip: SkipPlan) -> None:
    """Refuse while a process of ``old`` still runs a unit this rerun would start again."""
    skipped = {(step, None) for step in skip.steps} | {(s, i) for s, items in skip.items.items() for i in items}
    running, pids = conflicts(stop_leftovers(old, stop=False), skipped)
    if running:
        shown = "; ".join(running[:5]) + ("; ..." if len(running) > 5 else "")
        raise JournalClickError(
            f"run {old.run_id} still has processes running that this rerun would repeat: {shown}; stop them "
            f"(kill {' '.join(map(str, pids))}) or pass --ignore-leftovers", ExitCode.JOURNAL)


def _load(file: Path) -> Workflow:
    try:
        return load_workflow(file)
    except WorkflowError as exc:
        raise UserError(str(exc)) from None


def _load_same(file: Path, digest: str | None, run_id: str | None, allow_changed: bool) -> Workflow:
    try:
        now = file_digest(read_workflow_bytes(file))
    except WorkflowError as exc:
        raise UserError(f"cannot rerun {run_id}: {exc}") from None
    if digest is not None and now != digest and not allow_changed:
        raise UserError(f"{file} changed since run {run_id} ({digest[:19]} then, {now[:19]} now); "
                        "pass --allow-changed to run the file as it is now")
    return _load(file)


def _old_inputs(store: Store, run_id: str | None, recorded: dict[str, Any]) -> dict[str, str]:
    """The inputs of the run being rerun: as recorded, or in full from its side files where ``started`` clipped them."""
    inputs = {k: v if isinstance(v, str) else str(v) for k, v in recorded.items() if _INPUT_KEY.fullmatch(k)}
    clipped = [k for k, v in inputs.items() if is_clipped(v)]
    if not clipped:
        return inputs
    full = full_inputs(store.side_files, run_id or "") or {}
    missing = [k for k in clipped if k not in full]
    if missing:
        raise UserError(f"input {missing[0]!r} of run {run_id} was recorded clipped and its full value is not kept "
                        f"on this host; pass --input {missing[0]}=VALUE")
    return {**inputs, **{k: full[k] for k in clipped}}


def _check_name(name: str) -> str:
    try:
        return check_name(name, "--workflow")
    except WorkflowError as exc:
        raise UserError(str(exc)) from None


def print_or_warn(text: str) -> None:
    """Print ``text`` on stdout; if stdout is closed or full, say so on stderr and carry on.

    The run's outcome must not depend on who reads our stdout (``runjournal run wf | true``,
    ``> /dev/full``): stdout is pointed at ``/dev/null`` so no later write or the exit's
    flush fails again.
    """
    try:
        click.echo(text)
    except OSError as exc:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        click.echo(f"runjournal: warning: cannot write to stdout ({exc.strerror or exc}); the run goes on, "
                   f"see 'runjournal history'", err=True)


def _launch(store: Store, spec: LaunchSpec, *, detach: bool, echo: bool = False) -> None:
    if detach:
        click.echo(spawn(store, spec))
        sys.exit(ExitCode.OK)
    progress = Progress(sys.stderr, live=can_redraw(sys.stderr) and not echo, brief=echo,
                        stopping=lambda: runner.stop_requested is not None)
    runner = Runner(store, spec.workflow, skip=spec.skip, echo=echo, inputs=spec.inputs, on_event=progress)
    with stop_signals(runner):
        run = begin_run(store, spec)
        if not echo:
            print_or_warn(run.run_id)
        with run:
            outcome = runner.execute(run)
    hint = progress.failure_hint() if outcome.status == "failed" and not echo else None
    if hint is not None:
        click.echo(hint, err=True)
    if echo and outcome.status == "failed" and outcome.exit_code:
        sys.exit(outcome.exit_code)
    sys.exit(STATUS_EXIT_CODES[outcome.status])
