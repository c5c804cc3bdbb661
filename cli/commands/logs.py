"""``runjournal logs``: the output the runner kept for a run's steps and items."""

from __future__ import annotations

import codecs
import os
from dataclasses import dataclass, field
from pathlib import Path

import click

from runjournal.cli.completion import complete_run_ids
from runjournal.cli.engine.runfiles import unit_log_path
from runjournal.cli.errors import UserError
from runjournal.cli.rendering.output import clean, emit_json
from runjournal.cli.target import Target
from runjournal.journal.fsio import check_dir, open_regular
from runjournal.journal.sidefiles import SideFiles
from runjournal.projections.state import RunState
from runjournal.projections.tail import RunTail, wait_until_over

CHUNK = 1 << 16
OUTPUT_POLL_SECONDS = 0.2
"""With --follow, step output is printed at least this often (it grows without journal events)."""


@dataclass
class _Unit:
    """One kept output file and how far it has been printed."""

    step: str
    item: str | None
    path: Path
    offset: int = 0
    decoder: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))

    @property
    def label(self) -> str:
        """How the header names this output."""
        return self.step if self.item is None else f"{self.step} [{self.item}]"


@click.command()
@click.argument("ref", metavar="RUN", shell_complete=complete_run_ids)
@click.argument("unit", nargs=-1, metavar="[STEP [ITEM]]")
@click.option("--step", "step_name", metavar="STEP", help="Only this step's output.")
@click.option("--item", metavar="ITEM", help="Only this item's output (of a fan-out step).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the run is over.")
@click.option("--json", "fmt", flag_value="json",
              help="One JSON document: each step's (or item's) output as text, with its file.")
@click.option("--jsonl", "fmt", flag_value="jsonl",
              help="One JSON object per chunk of output as it is read (works with --follow).")
@click.option("--raw", is_flag=True, help="Do not neutralise control characters in the output.")
@click.pass_obj
def logs(target: Target, ref: str, unit: tuple[str, ...], step_name: str | None, item: str | None, follow: bool,
         fmt: str | None, raw: bool) -> None:
    """Print the output (stdout and stderr) kept for RUN's steps, in step order.

    STEP and ITEM may be given after RUN or as --step and --item. With more than one step
    or item, each output starts with a `==> step [item] <==` header. Control characters
    and escape sequences are shown visibly unless --raw.

    \b
    Examples:
      runjournal logs 20260114T0930
      runjournal logs 20260114T0930 patch web-07
      runjournal logs 20260114T0930 --follow
      runjournal logs 20260114T0930 --json | jq -r '.outputs[] | select(.item == "web-07") | .text'
    """
    step_name, item = _positional_unit(unit, step_name, item)
    if fmt == "json" and follow:
        raise UserError("--json prints one document when the output is complete; use --jsonl with --follow")
    store = target.open()
    tail = RunTail(store, store.resolve(ref))
    for _ in tail.new_events():
        pass
    units = _select(_units(store.side_files, tail.run_id, tail.state), tail.run_id, step_name, item)
    _refuse_planted_dirs(store.side_files, units)
    printer = _Printer(raw, headers=len(units) > 1, fmt=fmt)
    if not follow or tail.state.is_terminal:
        printed = any([printer.drain(unit) for unit in units])
        if fmt == "json":
            emit_json({"run_id": tail.run_id, "outputs": printer.documents(units)})
        elif not printed:
            click.echo(f"runjournal: no output kept for the selected steps of run {tail.run_id}", err=True)
        return
    wait_until_over(tail, poll_seconds=OUTPUT_POLL_SECONDS, on_wake=lambda: _drain_all(printer, units))
    _drain_all(printer, units)


def _positional_unit(unit: tuple[str, ...], step: str | None, item: str | None) -> tuple[str | None, str | None]:
    if len(unit) > 2:
        raise UserError(f"too many arguments: {' '.join(unit[2:])!r} (expected RUN [STEP [ITEM]])")
    given = (unit + (None, None))[:2]
    for name, positional, option in (("step", given[0], step), ("item", given[1], item)):
        if positional is not None and option is not None and positional != option:
            raise UserError(f"two different {name}s given: {positional!r} and --{name} {option!r}")
    return step or given[0], item or given[1]


def _drain_all(printer: _Printer, units: list[_Unit]) -> None:
    for unit in units:
        printer.drain(unit)


def _units(side: SideFiles, run_id: str, state: RunState) -> list[_Unit]:
    log_dir = side.log_dir(run_id)
    planned = {p.name: p.items for p in state.started.steps} if state.started else {}
    units = []
    for step in state.steps.values():
        if planned.get(step.name) is not None or step.items:
            units += [_Unit(step.name, name, unit_log_path(log_dir, step.name, name)) for name in step.items]
        else:
            units.append(_Unit(step.name, None, unit_log_path(log_dir, step.name)))
    return units


def _refuse_planted_dirs(side: SideFiles, units: list[_Unit]) -> None:
    """Refuse a symlinked (or foreign-owned, world-writable) log directory on the way to any output file.

    ``O_NOFOLLOW`` only guards a path's last component; the directories above it are
    checked here, so a link planted as ``logs/<run_id>`` cannot make us print another file.
    """
    try:  # reading another user's journal: directories of the journal's owner are fine too
        journal_owner: int | None = os.stat(side.logs_dir.parent).st_uid
    except OSError:
        journal_owner = None
    for directory in dict.fromkeys([side.logs_dir, *(unit.path.parent for unit in units)]):
        if os.path.lexists(directory):
            check_dir(directory, journal_owner)


def _select(units: list[_Unit], run_id: str, step: str | None, item: str | None) -> list[_Unit]:
    if step is not None:
        steps = list(dict.fromkeys(u.step for u in units))
        if step not in steps:
            raise UserError(f"run {run_id} has no step {step!r} (steps: {', '.join(steps) or 'none'})")
        units = [u for u in units if u.step == step]
    if item is not None:
        units = [u for u in units if u.item == item]
        if not units:
            where = f"step {step!r}" if step else f"run {run_id}"
            raise UserError(f"{where} has no item {item!r}")
    return units


class _Printer:
    """Prints new bytes of output files, sanitised, with a header whenever the file changes.

    ``fmt`` ``jsonl`` prints each chunk as a JSON object; ``json`` keeps the text for
    :meth:`documents` instead of printing it.
    """

    def __init__(self, raw: bool, headers: bool, fmt: str | None = None) -> None:
        self.raw = raw
        self.headers = headers
        self.fmt = fmt
        self.current: _Unit | None = None
        self.kept: dict[int, list[str]] = {}

    def documents(self, units: list[_Unit]) -> list[dict[str, object]]:
        """The ``--json`` objects: each unit's whole output as text."""
        return [{"step": u.step, "item": u.item, "path": str(u.path), "bytes": u.offset,
                 "text": "".join(self.kept.get(id(u), []))} for u in units]

    def drain(self, unit: _Unit) -> bool:
        """Print what ``unit``'s file gained since the last call; return whether anything was printed."""
        try:
            # Only a regular file is read: a FIFO planted here would block, a directory cannot be read.
            fd = open_regular(unit.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        printed = False
        with os.fdopen(fd, "rb") as f:
            f.seek(unit.offset)
            while chunk := f.read(CHUNK):
                unit.offset += len(chunk)
                self._print(unit, unit.decoder.decode(chunk))
                printed = True
        return printed

    def _print(self, unit: _Unit, text: str) -> None:
        if not text:
            return
        if self.fmt == "json":
            self.kept.setdefault(id(unit), []).append(text)
            return
        if self.fmt == "jsonl":
            emit_json({"step": unit.step, "item": unit.item, "text": text})
            return
        if self.headers and self.current is not unit:
            click.echo(f"{'' if self.current is None else chr(10)}==> {clean(unit.label, self.raw)} <==")
        self.current = unit
        click.echo(clean(text, self.raw), nl=False, color=True if self.raw else None)
