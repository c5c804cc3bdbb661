"""``runjournal history``: runs, newest first, one line each."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice

import click

from runjournal.cli.rendering.historyview import history_cells, history_object
from runjournal.cli.rendering.output import (
    OutputFormat,
    can_redraw,
    clean,
    emit_objects,
    emit_text,
    output_options,
    status_text,
)
from runjournal.cli.rendering.textfmt import HISTORY_HEADER, aligned
from runjournal.cli.target import Target
from runjournal.cli.timeargs import WHEN_METAVAR, parse_when
from runjournal.journal.readmodel import HistoryQuery
from runjournal.journal.status import LISTED_STATUSES, UNTRUSTED, ExitCode
from runjournal.projections.history import HistoryRow, history_rows


def parse_since(text: str, now: datetime) -> datetime:
    """``--since`` as a moment (see :func:`runjournal.cli.timeargs.parse_when`)."""
    return parse_when(text, now)


@click.command()
@click.argument("workflow", required=False)
@click.option("--status", type=click.Choice(LISTED_STATUSES), help="Only runs with this status.")
@click.option("--reason", metavar="R", help="Only runs with this reason (e.g. originating-process-not-alive).")
@click.option(
    "--since", metavar=WHEN_METAVAR, help="Only runs started since then (s, m, h, d, w ago, or a local date/time)."
)
@click.option("--until", metavar=WHEN_METAVAR, help="Only runs started before then (same forms as --since).")
@click.option("-n", "--limit", type=click.IntRange(min=1), metavar="N", help="At most N runs.")
@click.option(
    "--no-reconcile", is_flag=True, help="Do not record orphaned runs as abandoned; show the journal as it is."
)
@output_options(jsonl=True)
@click.pass_obj
def history(
    target: Target, workflow: str | None, status: str | None, reason: str | None, since: str | None,
    until: str | None, limit: int | None, no_reconcile: bool, fmt: OutputFormat, raw: bool,
) -> None:
    """List runs, newest first, optionally only those of WORKFLOW.

    One line per run: id, workflow, status, start (local time), duration, steps done/total,
    and the reason when it did not succeed. Runs whose writer died are recorded as
    abandoned first (unless --no-reconcile); on a read-only journal they show as
    `abandoned?`.

    \b
    Examples:
      runjournal history                        every run
      runjournal history deploy --since 2d      deploy runs of the last two days
      runjournal history --since 2026-01-02 --until 2026-01-03
      runjournal history --status abandoned --json
    """
    now = datetime.now(UTC)
    query = HistoryQuery(
        workflow=workflow, statuses=frozenset({status}) if status else None, reason=reason,
        since=parse_since(since, now) if since is not None else None,
        until=parse_when(until, now, "--until") if until is not None else None, limit=limit,
    )
    store = target.open()
    errors = ErrorTally()
    progress = IndexProgress()
    rows = history_rows(store, query, reconcile=not no_reconcile, progress=progress)
    runs = islice(errors.watch(rows, progress), limit)
    if fmt is OutputFormat.TEXT:
        _print_text(runs, raw, now)
    else:
        objects = (history_object(row, store.location(row.summary.run_id)) for row in runs)
        emit_objects(objects, fmt)
    if errors.count:
        sys.exit(ExitCode.JOURNAL)


class IndexProgress:
    """``indexing runs: N/M`` on stderr while a cold index folds many runs, only on a terminal."""

    def __init__(self) -> None:
        self.enabled = can_redraw(sys.stderr)
        self.shown = False

    def __call__(self, position: int, total: int) -> None:
        if self.enabled and total >= 500 and position % 250 == 0:
            click.echo(f"\rindexing runs: {position}/{total}", err=True, nl=False)
            self.shown = True

    def clear(self) -> None:
        """Erase the progress line once the listing starts."""
        if self.shown:
            click.echo("\r" + " " * 40 + "\r", err=True, nl=False)
            self.shown = False


class ErrorTally:
    """Passes runs through, warning on stderr about each one that is damaged or could not be read."""

    def __init__(self) -> None:
        self.count = 0

    def watch(self, rows: Iterator[HistoryRow], progress: IndexProgress) -> Iterator[HistoryRow]:
        """Yield ``rows`` unchanged (the index's progress line erased first), reporting the runs that could not be read."""
        for row in rows:
            if progress.shown:
                progress.clear()
            if row.status in UNTRUSTED:
                self.count += 1
                click.echo(f"runjournal: warning: {clean(row.reason, inline=True)}", err=True)
            yield row


def _print_text(runs: Iterator[HistoryRow], raw: bool, now: datetime) -> None:
    printed = False
    for line in aligned((history_cells(c, raw, now) for c in runs), HISTORY_HEADER, styled={2: status_text}):
        emit_text(line, raw)
        printed = True
    if not printed:
        click.echo("no runs match", err=True)
