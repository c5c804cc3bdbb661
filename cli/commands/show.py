"""``runjournal show``: one run's projected state, for forensics."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import click

from runjournal.cli.completion import complete_run_ids
from runjournal.cli.errors import JournalClickError, UserError
from runjournal.cli.rendering.output import (
    OutputFormat,
    clean,
    dumps,
    emit_json_streamed,
    emit_lines,
    emit_text,
    output_options,
)
from runjournal.cli.rendering.textfmt import duration_text, local_time, status_with_reason
from runjournal.cli.rendering.textviews import WORK_KEYS, event_detail, progress_text, step_table, work_lines
from runjournal.cli.rendering.timelinetext import timeline_lines
from runjournal.cli.rendering.views import (
    DERIVED_ABANDONED,
    detail_streams,
    display_reason,
    display_status,
    liveness_text,
    run_detail,
    run_duration,
)
from runjournal.cli.target import Target
from runjournal.journal.errors import CorruptLineError, JournalError
from runjournal.journal.events import Event
from runjournal.journal.status import ExitCode
from runjournal.journal.store import Store
from runjournal.projections.reconcile import CurrentState, current_state
from runjournal.projections.timeline import timeline as build_timeline


@click.command()
@click.argument("run", shell_complete=complete_run_ids)
@click.option("--timeline", is_flag=True,
              help="Draw the steps and items on a time axis instead (plain characters when not on a terminal).")
@click.option("--no-reconcile", is_flag=True, help="Do not record the run as abandoned if its writer died.")
@output_options()
@click.pass_obj
def show(target: Target, run: str, timeline: bool, no_reconcile: bool, fmt: OutputFormat, raw: bool) -> None:
    """Show RUN (an id or unique prefix): status, writer, steps, items, evidence.

    Lists each step with its fan-out progress, which steps and items completed, were in
    flight or never started, the evidence if the run was abandoned, late events, anomalies
    and the path of the journal. If the run's writer died, the run is recorded as abandoned
    first (unless --no-reconcile). A damaged journal (a bad line after good ones) is shown
    up to its first bad line, with status `damaged`, and exits 3 naming that line.

    With --timeline, a Gantt chart: one bar per step and item from its start to its end,
    in-flight ones running to the end, never-started ones without a bar, and a mark where
    the writer was last seen. `runjournal report` draws the same as an HTML page.

    \b
    Examples:
      runjournal show 2026
      runjournal show 2026 --timeline
      runjournal show 2026 --json | jq '.in_flight'
    """
    if timeline and fmt is not OutputFormat.TEXT:
        raise UserError("--timeline draws text; for data use --json without it (or runjournal events)")
    store = target.open()
    run_id = store.resolve(run)
    current = current_state(store, run_id, reconcile=not no_reconcile)
    if current.error is not None:
        click.echo(f"runjournal: warning: {clean(str(current.error))}", err=True)
    detail = run_detail(current, store.location(run_id), steps=False)
    if timeline:
        for line in timeline_lines_of(current, raw):
            emit_text(line, raw)
        return
    if fmt is OutputFormat.JSON:
        emit_json_streamed(detail, detail_streams(current.state))  # a million steps are never held as lists
    else:
        late = _late_events(store, run_id, current) if current.state.late_events else {}
        emit_lines(show_lines(current, detail, raw, late), raw)
    if current.damage is not None:
        raise damaged_error(run_id, current.damage)


def damaged_error(run_id: str, damage: CorruptLineError) -> JournalClickError:
    """The one-line error (exit 3) after a damaged run's verified prefix was shown."""
    return JournalClickError(f"run {run_id} is damaged: {damage}; shown: the {damage.line - 1} line(s) before it",
                             ExitCode.JOURNAL)


def timeline_lines_of(current: CurrentState, raw: bool) -> Iterator[str]:
    """``show --timeline``: a one-line header, then the chart."""
    status, reason = display_status(current), display_reason(current)
    yield (f"run {clean(current.run_id, raw, inline=True)}  workflow {clean(current.state.workflow, raw, inline=True)}"
           f"  {status_with_reason(status, reason, raw)}")
    drawn = build_timeline(current, status, reason, datetime.now(UTC))
    if drawn is None:
        yield "(no 'started' event: nothing to draw)"
        return
    yield ""
    yield from timeline_lines(drawn, raw)


def _late_events(store: Store, run_id: str, current: CurrentState) -> dict[int, Event]:
    """The late events themselves (the fold keeps only their seq and type), by seq."""
    wanted = {e.seq for e in current.state.late_events}
    try:
        return {e.seq: e for e in store.read(run_id).events() if e.seq in wanted}
    except (JournalError, OSError):
        return {}


def show_lines(current: CurrentState, detail: dict[str, Any], raw: bool,
               late: dict[int, Event] | None = None) -> Iterator[str]:
    """The text form of ``show``: a header block, the step table, progress lists, oddities."""
    yield from _header(current, detail, raw)
    yield ""
    yield from step_table(current.state, raw)
    yield ""
    yield from progress_text(current.state, raw)
    yield from _listing("late events:", [_late_line(e.seq, e.type, e.ts, (late or {}).get(e.seq), raw)
                                         for e in current.state.late_events])
    yield from _listing("anomalies:", [f"seq {a['seq']} {a['kind']}: {clean(a['message'], raw, inline=True)}"
                                       for a in detail["anomalies"]])


def _header(current: CurrentState, detail: dict[str, Any], raw: bool) -> Iterator[str]:
    state = current.state
    status = display_status(current)
    ended = local_time(state.ended_at) if state.ended_at else "-"
    yield _field("run", clean(current.run_id, raw, inline=True))
    yield _field("workflow", clean(state.workflow, raw, inline=True)
                 + (f" (file {clean(detail['workflow_file'], raw, inline=True)})" if detail["workflow_file"] else ""))
    yield _field("status", status_with_reason(status, display_reason(current), raw))
    if state.terminal is not None and state.terminal.type in ("failed", "cancelled", "succeeded"):
        detail_text = event_detail(state.terminal, raw)
        if detail_text:
            yield _field("detail", detail_text)
    yield _field("started", local_time(state.started_at))
    yield _field("ended", ended)
    if status in ("abandoned", DERIVED_ABANDONED):
        yield _field("last seen", local_time(state.last_activity))
    yield _field("duration", duration_text(run_duration(current, datetime.now(UTC))))
    if detail["rerun_of"]:
        yield _field("rerun of", clean(detail["rerun_of"], raw, inline=True))
    yield from _writer_lines(detail, raw)
    liveness = liveness_text(current)
    if liveness is not None:
        yield _field("liveness", clean(liveness, raw, inline=True))
    if status == DERIVED_ABANDONED:
        yield _field("note", _NOT_RECORDED.get(current.action, "not recorded"))
    if detail["evidence"] is not None:
        evidence = detail["evidence"]
        yield from _mapping("evidence", {k: v for k, v in evidence.items() if k not in WORK_KEYS}, raw)
        yield from _work(evidence, raw)
    yield _field("events", f"{detail['events']} (last seq {detail['last_seq']})")
    yield _field("path", clean(detail["path"], raw, inline=True))


_NOT_RECORDED = {
    None: "not recorded (--no-reconcile)",
    "read-only": "not recorded: the journal is read-only",
    "busy": "not recorded: another process holds the run's lock",
}


def _writer_lines(detail: dict[str, Any], raw: bool) -> Iterator[str]:
    writer = detail["writer"]
    if writer is not None:
        who = f"pid {writer['pid']} on {writer['host']}, user {writer['user']}, tool {writer['tool_version']}"
        yield _field("writer", clean(who, raw, inline=True))
        yield _field("command", clean(shlex.join(writer["argv"]), raw, inline=True))
    checker = detail["checker"]
    if checker is not None:
        yield _field("checked by", clean(f"pid {checker['pid']} on {checker['host']}, user {checker['user']}",
                                         raw, inline=True))


def _work(evidence: dict[str, Any], raw: bool) -> Iterator[str]:
    """What happened to the work in flight, in words (the ``work`` and ``escaped`` evidence)."""
    for label, text in work_lines(evidence):
        yield _field(label, clean(text, raw, inline=True))


def _late_line(seq: int, kind: str, ts: datetime, event: Event | None, raw: bool) -> str:
    line = f"seq {seq} {kind} at {local_time(ts)}"
    if event is not None and event.type in ("cancelled", "failed", "succeeded", "abandoned"):
        line += f": {event_detail(event, raw)}"
    return line


def _mapping(title: str, mapping: dict[str, Any], raw: bool) -> Iterator[str]:
    label = title
    for key, value in mapping.items():
        shown = value if isinstance(value, str) else dumps(value)
        yield _field(label, f"{clean(key, raw, inline=True)}: {clean(shown, raw, inline=True)}")
        label = ""
    if label:
        yield _field(title, "-")


def _listing(title: str, lines: list[str]) -> Iterator[str]:
    for index, line in enumerate(lines):
        yield f"{title if index == 0 else '':<15}{line}"


def _field(label: str, value: str) -> str:
    return f"{label:<14}{value}".rstrip()
