"""What the read commands show as text: aligned tables, event lines, progress lists.

Local time in short form, durations like ``1m03s``, colour only on status words (through
:func:`cli.output.status_text`), and every journal-derived string through
:func:`cli.output.clean`. Tables stream: see :func:`aligned`.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from runjournal.cli.rendering.output import clean, status_text
from runjournal.cli.rendering.textfmt import aligned, duration_text, local_time
from runjournal.cli.rendering.views import (
    DERIVED_ABANDONED,
    display_reason,
    display_status,
    progress_units,
    run_duration,
    unit_status,
)
from runjournal.journal.events import Event, StepProgress
from runjournal.journal.plain import PlainProgress, PlainView
from runjournal.projections.leftovers import describe, unit_label
from runjournal.projections.reconcile import CurrentState
from runjournal.projections.state import RunState, StepState

STATUS_WIDTH = len(DERIVED_ABANDONED)
EVENT_TYPE_WIDTH = len("step-progress")




def history_cells(current: CurrentState, raw: bool, now: datetime) -> list[str]:
    """The text cells of one history row (the reason, last, only when the run did not succeed)."""
    state = current.state
    status = display_status(current)
    reason = display_reason(current)
    return [
        clean(current.run_id, raw, inline=True),
        clean(state.workflow or "-", raw, inline=True),
        status,
        local_time(state.started_at),
        duration_text(run_duration(current, now)),
        f"{state.steps_done}/{state.steps_total}",
        "" if reason is None or status == "succeeded" else clean(reason, raw, inline=True),
    ]


STEP_HEADER = ["STEP", "STATUS", "DONE/TOTAL", "STARTED", "DURATION", "EXIT", "MESSAGE"]


def step_table(state: RunState, raw: bool) -> Iterator[str]:
    """The per-step table: state, fan-out progress, start time, duration, exit code, message (streamed)."""
    return aligned((_step_row(state, step, raw) for step in state.steps.values()), STEP_HEADER,
                   styled={1: status_text})


def _step_row(state: RunState, step: StepState, raw: bool) -> list[str]:
    span = step.ended_at - step.started_at if step.started_at and step.ended_at else None
    return [
        clean(step.name, raw, inline=True) + ("" if step.planned else " (unplanned)"),
        unit_status(state, step.state),
        "-" if step.total is None else f"{step.done or 0}/{step.total}",
        local_time(step.started_at),
        duration_text(span),
        "-" if step.exit_code is None else str(step.exit_code),
        clean(step.message, raw, inline=True),
    ]


_LIST_TITLES = ("completed", "in flight", "never started")


def progress_text(state: RunState, raw: bool) -> Iterator[str]:
    """Which steps/items completed, were in flight, never started: one entry per step (and outcome).

    Streamed bucket by bucket: a step's units are contiguous, so only one group is held at a time.
    """
    for title, bucket in zip(_LIST_TITLES, ("ended", "started", "pending"), strict=True):
        label = f"{title}:"
        for (step, status), members in _groups(progress_units(state, bucket)):
            yield from _group_lines(f"{label:<15}", _unit_label(step, status, raw), members, raw)
            label = ""
        if label:
            yield f"{label:<15}-"


def _groups(units: Iterator[dict[str, Any]]) -> Iterator[tuple[tuple[str, str], list[dict[str, Any]]]]:
    key, members = None, []
    for unit in units:
        unit_key = (unit["step"], unit["status"])
        if unit_key != key and members:
            yield key, members  # type: ignore[misc]
            members = []
        key = unit_key
        members.append(unit)
    if members:
        yield key, members  # type: ignore[misc]


def _group_lines(lead: str, step_label: str, members: list[dict[str, Any]], raw: bool) -> Iterator[str]:
    """One step's entry in a list: the step itself, or its items, wrapped between names."""
    if members[0]["item"] is None:
        yield lead + step_label
        return
    head = f"{lead}{step_label} [{len(members)}]: "
    width = max(text_width(), len(head) + 20)
    line = head
    for index, unit in enumerate(members):
        name = clean(unit["item"], raw, inline=True) + ("," if index < len(members) - 1 else "")
        if line != head and len(line) + 1 + len(name) > width:
            yield line
            line = " " * len(head)
        line += ("" if line.endswith(" ") else " ") + name
    yield line


def text_width() -> int:
    """Columns to wrap long lists at: the terminal's width, or 100 when not writing to a terminal."""
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else 100


def _unit_label(name: str, status: str, raw: bool) -> str:
    """A step or item name, with its status when that is not what its list implies."""
    shown = clean(name, raw, inline=True)
    return shown if status in ("succeeded", "started", "pending") else f"{shown} ({status})"


EVENT_HEADER = f"{'SEQ':>5}  {'TIME':<19}  {'EVENT':<{EVENT_TYPE_WIDTH}}  {'STATUS':<{STATUS_WIDTH}}  DETAIL"
"""The header above :func:`event_text` lines."""


def event_text(event: Event | PlainView, state: RunState, raw: bool) -> str:
    """One event as a line: seq, local time, type, status after it, details."""
    detail = event_detail(event, raw)
    status = status_text(state.status, STATUS_WIDTH)
    line = f"{event.seq:>5}  {local_time(event.ts)}  {event.type:<{EVENT_TYPE_WIDTH}}  {status}  {detail}"
    return line.rstrip()


def event_detail(event: Event | PlainView, raw: bool) -> str:
    """The interesting fields of one event (a model, or a plain view of one), in words."""
    def c(text: object) -> str:
        return clean(text, raw, inline=True)

    if event.type == "step-progress":
        return _progress_detail(event, c)  # type: ignore[arg-type]
    if event.type == "started":
        w = event.writer
        return f"workflow {c(event.workflow)}, {len(event.steps)} step(s), writer pid {w.pid} on {c(w.host)}"
    if event.type == "failed":
        parts = [event.reason.value, f"step {c(event.step)}" if event.step else "",
                 f"exit {event.exit_code}" if event.exit_code is not None else ""]
        text = ", ".join(p for p in parts if p)
        return text + (f": {c(event.message)}" if event.message else "")
    if event.type == "cancelled":
        text = f"by {c(event.by)}" + (f": {c(event.reason)}" if event.reason else "")
        return text + (f" ({c(_stopped_summary(event.evidence))})" if event.evidence else "")
    if event.type == "abandoned":
        tail = f"; torn tail moved to {c(event.tail_quarantined.file)}" if event.tail_quarantined else ""
        return f"{event.reason.value} (checked by pid {event.checker.pid} on {c(event.checker.host)}){tail}"
    return c(getattr(event, "message", None))


WORK_KEYS = frozenset({"work", "escaped", "still_running", "environ_unreadable"})
"""Evidence keys about the run's processes, which ``show`` puts in words (:func:`work_lines`)."""


def work_lines(evidence: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(label, text)`` lines saying what was found of each in-flight unit's processes, and of escapees."""
    lines = [f"{unit_label(w.get('step'), w.get('item'))}: {describe(w)}"
             for w in evidence.get("work") or [] if isinstance(w, dict)]
    lines += [f"pid {p.get('pid')} ({unit_label(p.get('step'), p.get('item'))}) left its process group "
              "and was still running" for p in evidence.get("escaped") or [] if isinstance(p, dict)]
    if evidence.get("still_running"):
        lines.append("processes of this run were still running when this was recorded")
    for index, line in enumerate(lines):
        yield ("work" if index == 0 else ""), line


def _stopped_summary(evidence: dict[str, Any]) -> str:
    works = [w for w in evidence.get("work") or [] if isinstance(w, dict)]
    killed = sum(1 for w in works if w.get("outcome") == "killed")
    text = f"stopped {killed} of {len(works)} unit(s) in flight" if works else "nothing was in flight"
    if evidence.get("still_running"):
        text += "; some processes still running"
    return text


def _progress_detail(event: StepProgress | PlainProgress, c: Callable[[object], str]) -> str:
    if event.item is not None:
        text = f"{c(event.step)}[{c(event.item)}] {event.item_state or event.state}"
    else:
        text = f"{c(event.step)} {event.state}"
    if event.process is not None:
        text += f" pid {event.process.pid}"
    if event.exit_code is not None:
        text += f" exit {event.exit_code}"
    if event.total is not None:
        text += f" ({event.done or 0}/{event.total})"
    if event.message:
        text += f": {c(event.message)}"
    return text
