"""``runjournal report``: one run as a self-contained HTML page, to attach to an incident or open offline."""

from __future__ import annotations

import os
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from runjournal.cli.completion import complete_run_ids
from runjournal.cli.errors import UserError
from runjournal.cli.rendering.output import clean
from runjournal.cli.rendering.report import report_html
from runjournal.cli.rendering.views import display_reason, display_status, liveness_text, run_detail
from runjournal.cli.target import Target
from runjournal.journal.fsio import open_regular
from runjournal.projections.reconcile import current_state
from runjournal.projections.timeline import timeline


@click.command()
@click.argument("run", shell_complete=complete_run_ids)
@click.option("-o", "--output", "output", required=True, metavar="FILE.html",
              help="Where to write the page (- for stdout). An existing regular file is replaced; a directory, "
                   "device, FIFO or symlink is refused.")
@click.option("--no-reconcile", is_flag=True, help="Do not record the run as abandoned if its writer died.")
@click.pass_obj
def report(target: Target, run: str, output: str, no_reconcile: bool) -> None:
    """Write RUN as one self-contained HTML page: status, evidence, timeline, items.

    The page has the run's status and reason, the liveness evidence, the timeline of its
    steps and items as an SVG picture (as `show --timeline` draws it) and a table of every
    step and item. Everything is inline: opening the page fetches nothing.

    \b
    Examples:
      runjournal report 2026 -o run.html
      runjournal report 2026 -o - | gzip > run.html.gz
    """
    store = target.open()
    run_id = store.resolve(run)
    current = current_state(store, run_id, reconcile=not no_reconcile)
    if current.error is not None:
        click.echo(f"runjournal: warning: {clean(str(current.error))}", err=True)
    status, reason = display_status(current), display_reason(current)
    page = report_html(timeline(current, status, reason, datetime.now(UTC)), run_detail(current, store.location(run_id)),
                       liveness_text(current))
    if output == "-":
        sys.stdout.write(page)
        return
    _write(output, page.encode("utf-8"))
    click.echo(f"wrote {output}", err=True)


def _write(output: str, data: bytes) -> None:
    """Write through a temporary file renamed into place, so a reader never sees half a page.

    Only a new file or an existing regular file is written: renaming over a device, a FIFO,
    a symlink or a directory would replace it (as root, ``-o /dev/null`` would break the
    machine), so those are refused in one line, as is a name that is a directory.
    """
    path = Path(output)
    if not output or output.endswith(os.sep) or path.name in ("", ".", ".."):
        raise UserError(f"-o {output!r}: give a file name for the page (FILE.html), not a directory")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise UserError(f"-o {output}: exists and is not a regular file (a directory, device, FIFO or symlink); "
                        "it is left alone: choose another name")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = open_regular(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"-o {output}: cannot write the page: {exc.strerror or exc}") from None
