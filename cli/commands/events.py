"""``runjournal events``: every event of every run as one table, for jq, DuckDB, pandas or a spreadsheet."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import click

from runjournal.cli.completion import complete_run_ids
from runjournal.cli.errors import UserError
from runjournal.cli.rendering.output import OutputFormat, clean, emit_objects, emit_text
from runjournal.cli.rendering.tables import ParquetUnavailable, write_csv, write_parquet
from runjournal.cli.rendering.textfmt import aligned, local_time
from runjournal.cli.target import Target
from runjournal.cli.timeargs import WHEN_METAVAR, parse_when
from runjournal.journal.status import EVENT_STATUS, LISTED_STATUSES, ExitCode
from runjournal.projections.eventtable import COLUMN_NAMES, COLUMNS, EventQuery, RunProblem, event_rows

TEXT_HEADER = ["RUN", "SEQ", "TIME", "EVENT", "STEP", "STATE", "EXIT", "DETAIL"]


@click.command()
@click.argument("runs", nargs=-1, metavar="[RUN]...", shell_complete=complete_run_ids)
@click.option("-w", "--workflow", metavar="NAME", help="Only runs of this workflow.")
@click.option("--status", type=click.Choice(LISTED_STATUSES),
              help="Only runs with this current status (abandoned also matches abandoned?).")
@click.option("--type", "types", multiple=True, type=click.Choice(sorted(EVENT_STATUS)),
              help="Only events of this type (repeatable).")
@click.option("--step", metavar="STEP", help="Only events about this step.")
@click.option("--item", metavar="ITEM", help="Only events about this item.")
@click.option("--since", metavar=WHEN_METAVAR, help="Only events written since then (s, m, h, d, w ago, or a date).")
@click.option("--until", metavar=WHEN_METAVAR, help="Only events written until then (same forms as --since).")
@click.option("--no-reconcile", is_flag=True, help="Do not record orphaned runs as abandoned (derived rows instead).")
@click.option("--json", "fmt", flag_value=OutputFormat.JSON, help="One JSON array on stdout.")
@click.option("--jsonl", "fmt", flag_value=OutputFormat.JSONL, help="One JSON object per row, streamed.")
@click.option("--csv", "fmt", flag_value="csv", help="CSV with a header line (objects as JSON text).")
@click.option("--parquet", "fmt", flag_value="parquet",
              help="Parquet on stdout (needs the parquet extra: pip install 'runjournal[parquet]').")
@click.option("--text", "fmt", flag_value=OutputFormat.TEXT, default=True, hidden=True)
@click.option("--raw", is_flag=True, help="Do not neutralise control characters in journal text.")
@click.pass_obj
def events(
    target: Target, runs: tuple[str, ...], workflow: str | None, status: str | None, types: tuple[str, ...],
    step: str | None, item: str | None, since: str | None, until: str | None, no_reconcile: bool, fmt: Any,
    raw: bool,
) -> None:
    """Print every event of every run (or of RUNs) as one table with the runs' current status.

    One row per verified journal line, flattened to fixed, typed columns (run_id, workflow,
    seq, ts, type, step, item, state, exit_code, reason, message, host, run_status, ...
    and `data`, a JSON object with the event's other fields); docs/forensics.md lists them
    and has recipes for jq, DuckDB and pandas. Runs come newest first, each run's events
    in seq order. Orphaned runs are recorded as abandoned first (unless --no-reconcile); a
    dead writer's run that cannot be recorded gets a derived `abandoned` row (`derived`
    true). Lines after a damaged one are never shown: the damage is reported on stderr
    and the exit code is 3.

    \b
    Examples:
      runjournal events --jsonl | jq -c 'select(.type == "abandoned")'
      runjournal events --csv > events.csv
      runjournal events -w deploy --type step-progress --since 2d
    """
    now = datetime.now(UTC)
    store = target.open()
    query = EventQuery(
        runs=tuple(dict.fromkeys(store.resolve(ref) for ref in runs)), workflow=workflow, status=status,
        types=frozenset(types), step=step, item=item,
        since=parse_when(since, now, "--since") if since else None,
        until=parse_when(until, now, "--until") if until else None, reconcile=not no_reconcile,
    )
    if fmt == "parquet" and sys.stdout.isatty():
        raise UserError("Parquet is binary: redirect stdout to a file (runjournal events --parquet > events.parquet)")
    problems = ProblemReport()
    rows = event_rows(store, query, problems, now=now)
    _emit(rows, fmt, raw)
    if problems.count:
        sys.exit(ExitCode.JOURNAL)


class ProblemReport:
    """Says on stderr which run could not be read to its end, and counts them."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, problem: RunProblem) -> None:
        self.count += 1
        click.echo(f"runjournal: warning: run {problem.run_id}: {clean(problem.error, inline=True)}; "
                   "its later lines are left out (see 'runjournal verify')", err=True)


def _emit(rows: Iterator[dict[str, Any]], fmt: Any, raw: bool) -> None:
    if fmt == "csv":
        write_csv(rows, COLUMN_NAMES, sys.stdout)
    elif fmt == "parquet":
        try:
            write_parquet(rows, [(c.name, c.type) for c in COLUMNS], sys.stdout.buffer)
        except ParquetUnavailable as exc:
            raise UserError(str(exc)) from None
    elif fmt is OutputFormat.TEXT:
        for line in aligned(_text_cells(rows, raw), TEXT_HEADER):
            emit_text(line, raw)
    else:
        emit_objects(rows, fmt)


def _text_cells(rows: Iterable[dict[str, Any]], raw: bool) -> Iterator[list[str]]:
    for row in rows:
        unit = row["step"] or ""
        if row["item"] is not None:
            unit += f"[{row['item']}]"
        detail = row["reason"] or row["message"] or ""
        if row["derived"]:
            detail = f"(derived, not in the journal) {detail}"
        elif row["late"]:
            detail = f"(late) {detail}"
        yield [
            clean(row["run_id"], raw, inline=True), "-" if row["seq"] is None else str(row["seq"]),
            local_time(datetime.fromisoformat(row["ts"])), row["type"], clean(unit or "-", raw, inline=True), row["state"] or "-",
            "-" if row["exit_code"] is None else str(row["exit_code"]), clean(detail, raw, inline=True),
        ]
