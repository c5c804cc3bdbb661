"""``runjournal verify``: check journals byte for byte."""

from __future__ import annotations

import sys

import click

from runjournal.cli.completion import complete_run_ids
from runjournal.cli.rendering.output import OutputFormat, clean, emit_json, output_options
from runjournal.cli.target import Target
from runjournal.journal.status import ExitCode


@click.command()
@click.argument("runs", nargs=-1, metavar="[RUN]...", shell_complete=complete_run_ids)
@output_options()
@click.pass_obj
def verify(target: Target, runs: tuple[str, ...], fmt: OutputFormat, raw: bool) -> None:
    """Check every line of RUNs (default: all runs), and their anchors, byte for byte.

    Reads each run whole, always (never from a cache): framing, JSON, the hash chain,
    schema, sequence, and the heads anchored when the run finished. Reports every problem
    with its file, line and byte offset. Exit 0 if clean, 1 if any problem was found.

    \b
    Detected: a changed, inserted, removed, duplicated or reordered line anywhere before
    the last one, a line from another run, a torn tail, framing and schema errors; once a
    run's head is anchored (by its writer as it finishes, or by the first history that
    sees it settled), also its final lines dropped, a line changed and every hash after it
    recomputed, or the whole file replaced by another valid run; a changed line of the
    anchor log, or one removed from its middle.
    Not detected: the same done to a run not yet anchored (still running, for one), or by
    someone who also rewrites or cuts the anchor log to match: the anchors live in the
    journal root (in rj_runs on PostgreSQL) and carry no key (see "Anchors" in
    docs/format.md).
    """
    store = target.open()
    run_ids = [store.resolve(ref) for ref in runs] if runs else sorted(store.run_ids())
    report = []
    for index, run_id in enumerate(run_ids, 1):
        if sys.stderr.isatty() and len(run_ids) > 50 and index % 50 == 0:
            click.echo(f"\rverified {index}/{len(run_ids)}", err=True, nl=False)
        problems = list(store.verify(run_id))
        report.append({"run_id": run_id, "path": store.location(run_id), "ok": not problems,
                       "problems": [vars_of(p) for p in problems]})
        if fmt is not OutputFormat.JSON:
            for problem in problems:
                click.echo(clean(str(problem), raw))
    bad = sum(1 for r in report if not r["ok"])
    if fmt is OutputFormat.JSON:
        emit_json({"ok": bad == 0, "runs": report})
    else:
        click.echo(f"{len(report)} run(s) checked, {bad} with problems", err=True)
    sys.exit(ExitCode.NEGATIVE if bad else ExitCode.OK)


def vars_of(problem: object) -> dict[str, object]:
    """A problem as a JSON object."""
    return {k: getattr(problem, k) for k in ("path", "line", "offset", "kind", "reason")}
