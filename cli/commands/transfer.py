"""``runjournal export`` and ``runjournal import``: move finished runs between stores, losslessly."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import asdict

import click

from runjournal.cli.completion import complete_run_ids
from runjournal.cli.rendering.output import OutputFormat, clean, emit_json, output_options
from runjournal.cli.target import Target
from runjournal.journal.status import ExitCode
from runjournal.journal.store import Store
from runjournal.projections.transfer import FAILURES, Transfer, copy_run


@click.command("export")
@click.argument("destination", metavar="DEST")
@click.argument("runs", nargs=-1, metavar="[RUN]...", shell_complete=complete_run_ids)
@click.option("--no-reconcile", is_flag=True, help="Do not record orphans as abandoned first (they are then left out).")
@output_options()
@click.pass_obj
def export(target: Target, destination: str, runs: tuple[str, ...], no_reconcile: bool, fmt: OutputFormat,
           raw: bool) -> None:
    """Copy finished RUNs (default: all) from this store to DEST, a directory or a postgresql:// URL.

    Lines are copied byte for byte, so the hash chain holds and a JSONL export is the file
    the JSONL store would have written. Runs still running are left out (reported as
    `running`); a run DEST already has with the same lines is `unchanged`, with other lines
    a `conflict`. Exit 0, or 3 if a run conflicted or did not verify.

    \b
    Examples:
      runjournal --store postgresql://ci-db/runs export ./backup    every finished run, as JSONL files
      runjournal export postgresql://ci-db/runs 202611             this host's November runs, to the database
    """
    _transfer(target.open(), _other_store(destination, target), runs, no_reconcile, fmt, raw)


@click.command("import")
@click.argument("source", metavar="SOURCE")
@click.argument("runs", nargs=-1, metavar="[RUN]...")
@click.option("--no-reconcile", is_flag=True, help="Do not record orphans in SOURCE as abandoned first.")
@output_options()
@click.pass_obj
def import_(target: Target, source: str, runs: tuple[str, ...], no_reconcile: bool, fmt: OutputFormat,
            raw: bool) -> None:
    """Copy finished RUNs (default: all) from SOURCE, a directory or a postgresql:// URL, into this store.

    The reverse of `export`, with the same rules and exit codes.

    \b
    Examples:
      runjournal --store postgresql://ci-db/runs import ./.runjournal    this host's runs, into the database
    """
    source_target = Target(target.root, source)
    source_target.require_existing("the SOURCE argument")
    _transfer(source_target.open(), target.open(), runs, no_reconcile, fmt, raw)


def _other_store(text: str, target: Target) -> Store:
    """The store at the other end: a postgresql:// URL, or a journal directory (runs in ``DIR/runs``)."""
    other = Target(target.root, text)
    other.require_destination()
    return other.open()


def _transfer(source: Store, destination: Store, runs: tuple[str, ...], no_reconcile: bool, fmt: OutputFormat,
              raw: bool) -> None:
    run_ids = [source.resolve(ref) for ref in runs] if runs else sorted(source.run_ids())
    results: list[Transfer] = []
    for index, run_id in enumerate(run_ids, 1):
        if sys.stderr.isatty() and len(run_ids) > 50 and index % 50 == 0:
            click.echo(f"\rcopied {index}/{len(run_ids)}", err=True, nl=False)
        result = copy_run(source, destination, run_id, reconcile=not no_reconcile)
        results.append(result)
        if fmt is not OutputFormat.JSON:
            detail = f"  {result.detail}" if result.detail else ""
            click.echo(clean(f"{run_id}  {result.outcome:<9}{detail}".rstrip(), raw))
    counts = Counter(result.outcome for result in results)
    if fmt is OutputFormat.JSON:
        emit_json({"from": source.where, "to": destination.where, "runs": [asdict(r) for r in results]})
    else:
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no runs"
        click.echo(f"{len(results)} run(s): {summary}", err=True)
    sys.exit(ExitCode.JOURNAL if any(outcome in FAILURES for outcome in counts) else ExitCode.OK)
