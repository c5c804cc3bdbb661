"""``runjournal prune``: delete finished runs older than a date, archiving them first if asked."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime

import click

from runjournal.cli.rendering.output import OutputFormat, clean, emit_json, output_options
from runjournal.cli.target import Target
from runjournal.cli.timeargs import parse_when
from runjournal.journal.status import TERMINAL_STATUSES, ExitCode
from runjournal.projections.prune import FAILURES, check_archive, prune, prune_candidates


@click.command("prune")
@click.option("--before", "before_text", required=True, metavar="DATE|AGE",
              help="Prune runs started before this (a date like 2026-01-01, or an age like 90d, 12w).")
@click.option("--status", "statuses", multiple=True, type=click.Choice(sorted(TERMINAL_STATUSES)),
              help="Only runs that ended so (repeatable; default: every finished run).")
@click.option("--archive", metavar="DIR|URL",
              help="Copy each run here first (as `export` does), read the copy back, and prune only if it matches.")
@click.option("--dry-run", is_flag=True, help="List what would be pruned; change nothing.")
@click.option("--no-reconcile", is_flag=True, help="Do not record orphans as abandoned first (they are then kept).")
@output_options()
@click.pass_obj
def prune_command(target: Target, before_text: str, statuses: tuple[str, ...], archive: str | None, dry_run: bool,
                  no_reconcile: bool, fmt: OutputFormat, raw: bool) -> None:
    """Delete finished runs started before DATE, archiving them first with --archive.

    Only finished runs go: a run still running, or whose writer (or a reconciler) holds its
    lock, is never deleted. Runs whose writer died are recorded abandoned first (unless
    --no-reconcile) and then pruned like any finished run. With --archive each run is
    copied byte for byte (the chain and the anchor checked, as `export` does), read back and
    compared, and deleted only if the copy matches. This host's step logs of a pruned run
    go with it. On PostgreSQL a month whose every run is pruned loses its partition.
    Exit 0, or 3 if a run could not be archived.

    \b
    Examples:
      runjournal prune --before 90d --dry-run                 what would go
      runjournal prune --before 2026-01-01 --archive ./attic  archive to JSONL files, then prune
      runjournal --store postgresql://ci-db/runs prune --before 26w --status succeeded
    """
    before = parse_when(before_text, datetime.now(UTC), "--before")
    store = target.open()
    destination = None
    if archive is not None:
        archive_target = Target(target.root, archive)
        archive_target.require_destination()
        destination = archive_target.open()
    if destination is not None:
        check_archive(store, destination)  # before anything is reconciled: a mistake changes nothing
    run_ids = prune_candidates(store, before, frozenset(statuses) or None, reconcile=not (no_reconcile or dry_run))
    results = prune(store, run_ids, archive=destination, dry_run=dry_run, progress=_progress)
    if sys.stderr.isatty() and len(run_ids) > 50:
        click.echo("\r" + " " * 40 + "\r", err=True, nl=False)
    counts = Counter(result.outcome for result in results)
    if fmt is OutputFormat.JSON:
        emit_json({"store": store.where, "before": before.isoformat().replace("+00:00", "Z"),
                   "archive": destination.where if destination is not None else None, "dry_run": dry_run,
                   "runs": [asdict(result) for result in results]})
    else:
        for result in results:
            detail = f"  {result.detail}" if result.detail else ""
            click.echo(clean(f"{result.run_id}  {result.outcome:<11}{detail}".rstrip(), raw))
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no runs to prune"
        click.echo(f"{len(results)} run(s): {summary}", err=True)
    sys.exit(ExitCode.JOURNAL if FAILURES & set(counts) else ExitCode.OK)


def _progress(position: int, total: int) -> None:
    if sys.stderr.isatty() and total > 50 and position % 50 == 0:
        click.echo(f"\rarchived {position}/{total}", err=True, nl=False)
