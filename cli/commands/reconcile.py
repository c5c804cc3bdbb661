"""``runjournal reconcile``: record ``abandoned`` for runs whose writer is gone, explicitly."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import click

from runjournal.cli.completion import complete_run_ids
from runjournal.cli.errors import UserError
from runjournal.cli.rendering.output import OutputFormat, clean, emit_json, output_options
from runjournal.cli.target import Target
from runjournal.journal.errors import CorruptLineError, JournalError
from runjournal.journal.status import ExitCode
from runjournal.journal.store import Store
from runjournal.projections.liveness import DEFAULT_LEASE_INTERVALS
from runjournal.projections.reconcile import ReconcileResult, reconcile_run

_ACTION_WIDTH = len("would-abandon")


@click.command()
@click.argument("runs", nargs=-1, metavar="[RUN]...", shell_complete=complete_run_ids)
@click.option("--dry-run", is_flag=True, help="Only report what would be done; write nothing.")
@click.option(
    "--operator",
    is_flag=True,
    help="Also abandon runs whose liveness is unknown (reason 'operator'); needs RUNs and --reason.",
)
@click.option("--reason", "reason_text", metavar="TEXT", help="Why the operator forces it (recorded in the event).")
@click.option(
    "--lease",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_LEASE_INTERVALS,
    show_default=True,
    metavar="N",
    help="Heartbeat intervals of silence after which a run written on another host counts as abandoned.",
)
@output_options()
@click.pass_obj
def reconcile(
    target: Target, runs: tuple[str, ...], dry_run: bool, operator: bool, reason_text: str | None, lease: float,
    fmt: OutputFormat, raw: bool,
) -> None:
    """Record runs whose writer died as abandoned (default: every run).

    A run is abandoned only when its writer is certainly gone (same host: rebooted, or its
    pid is gone, a zombie or reused, and nobody holds the run's lock) or, for a run written
    on another host, when nothing was written for --lease heartbeat intervals. Live runs are
    never touched; runs whose liveness is unknown are reported unless --operator forces them.
    One line per run: run id, action (abandoned, would-abandon, alive, unknown, terminal,
    busy, read-only, damaged, error) and why. A damaged run (a bad line in its journal) is
    reported and never written to. Exit 0, or 3 if a run was damaged or could not be read.

    \b
    Examples:
      runjournal reconcile                       every run
      runjournal reconcile --dry-run --json      what would be done, as JSON
      runjournal reconcile 2026 --operator --reason "host decommissioned"
    """
    operator_text = _operator_text(runs, operator, reason_text)
    store = target.open()
    run_ids = [store.resolve(ref) for ref in runs] if runs else sorted(store.run_ids())
    rows = []
    for row in _reconcile_all(store, run_ids, dry_run, operator_text, lease):
        rows.append(row)
        if fmt is not OutputFormat.JSON:
            click.echo(_text_line(row, raw))
    counts = Counter(row["action"] for row in rows)
    if fmt is OutputFormat.JSON:
        emit_json({"dry_run": dry_run, "counts": dict(sorted(counts.items())), "runs": rows})
    else:
        summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "no runs"
        click.echo(f"{len(rows)} run(s): {summary}", err=True)
    sys.exit(ExitCode.JOURNAL if counts["error"] or counts["damaged"] else ExitCode.OK)


def _operator_text(runs: tuple[str, ...], operator: bool, reason_text: str | None) -> str | None:
    if not operator:
        if reason_text is not None:
            raise UserError("--reason is only used with --operator")
        return None
    if not runs:
        raise UserError("--operator forces runs one by one: name the RUNs to abandon")
    if not reason_text or not reason_text.strip():
        raise UserError("--operator needs --reason TEXT saying why the runs are abandoned")
    return reason_text


def _reconcile_all(
    store: Store, run_ids: list[str], dry_run: bool, operator: str | None, lease: float
) -> Iterator[dict[str, Any]]:
    show_progress = sys.stderr.isatty() and len(run_ids) > 50
    for index, run_id in enumerate(run_ids, 1):
        if show_progress and index % 50 == 0:
            click.echo(f"\rreconciled {index}/{len(run_ids)}", err=True, nl=False)
        try:
            result = reconcile_run(store, run_id, dry_run=dry_run, operator=operator, lease_intervals=lease)
        except (JournalError, OSError) as exc:
            # A damaged journal is reported, never appended to: nothing may follow a bad line.
            action = "damaged" if isinstance(exc, CorruptLineError) else "error"
            yield {"run_id": run_id, "action": action, "status": None, "reason": None, "liveness": None,
                   "message": str(exc), "evidence": None}
            continue
        yield result_object(result)
    if show_progress:
        click.echo("\r" + " " * 40 + "\r", err=True, nl=False)


def result_object(result: ReconcileResult) -> dict[str, Any]:
    """One run's outcome as the JSON object ``reconcile --json`` prints."""
    state, verdict = result.state, result.verdict
    reason = state.reason if result.action in ("abandoned", "terminal") else None
    if reason is None and verdict is not None and verdict.reason is not None:
        reason = verdict.reason.value
    return {
        "run_id": result.run_id,
        "action": result.action,
        "status": state.status,
        "reason": reason,
        "liveness": verdict.liveness if verdict is not None else None,
        "message": _message(result),
        "evidence": verdict.evidence if verdict is not None else None,
    }


def _message(result: ReconcileResult) -> str:
    verdict = result.verdict
    if result.action == "terminal":
        return f"already {result.state.status}"
    if verdict is None:
        return ""
    text = verdict.explain()
    if result.action == "busy":
        return f"the run's lock is held (a live writer or another reconciler); {text}"
    if result.action == "read-only":
        return f"the journal is not writable, nothing recorded (shown as abandoned?); {text}"
    return text


def _text_line(row: dict[str, Any], raw: bool) -> str:
    reason = f"{row['reason']}: " if row["reason"] and row["action"] != "terminal" else ""
    return f"{row['run_id']}  {row['action']:<{_ACTION_WIDTH}}  {clean(reason + row['message'], raw)}".rstrip()
