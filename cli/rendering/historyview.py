"""How ``history`` shows a run: the documented JSON object and the text cells, from a
:class:`~projections.history.HistoryRow` (an index summary), without the event models.

The field names and formats are the ones ``show`` uses for the same fields (see
``docs/cli.md``): times are ISO 8601 UTC with six fractional digits.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from runjournal.cli.rendering.output import clean
from runjournal.cli.rendering.textfmt import TO_LAST_ACTIVITY, duration_text, local_time, run_span
from runjournal.journal.readmodel import parse_time
from runjournal.journal.status import UNREADABLE, UNTRUSTED
from runjournal.projections.history import HistoryRow

_from_iso = datetime.fromisoformat


def row_duration(row: HistoryRow, now: datetime | None = None) -> timedelta | None:
    """How long the run ran: to its terminal event; abandoned runs to their last progress; else to ``now``."""
    if row.status == UNREADABLE:
        return None
    summary = row.summary
    # Only the two times the rule needs are parsed: history does this for every run it lists.
    abandoned = row.status in TO_LAST_ACTIVITY
    ended = None if abandoned else parse_time(summary.ended_at)
    last = parse_time(summary.last_activity) if abandoned or (ended is None and row.status in UNTRUSTED) else None
    return run_span(row.status, parse_time(summary.started_at), ended, last, now)


def history_object(row: HistoryRow, path: Path | str) -> dict[str, Any]:
    """The history JSON object of a run (``show --json`` starts with the same fields).

    Built once per run, a hundred thousand times for a big ``history --json``: the common
    case is kept to one dict display and, for an ended run, one duration.
    """
    summary, status = row.summary, row.status
    if status == UNREADABLE:
        return _unreadable_object(row, path)
    duration = None
    if status in TO_LAST_ACTIVITY:
        span = row_duration(row)
        duration = None if span is None else round(span.total_seconds(), 6)
    elif summary.ended_at is not None and summary.started_at is not None:
        # run_span's rule for an ended run, inlined: this line runs once per listed run.
        seconds = (_from_iso(summary.ended_at) - _from_iso(summary.started_at)).total_seconds()
        duration = round(seconds, 6) if seconds > 0 else 0.0
    return {
        "run_id": summary.run_id, "workflow": summary.workflow, "status": status, "reason": row.reason,
        "started_at": summary.started_at, "ended_at": summary.ended_at, "duration_s": duration,
        "host": summary.host, "pid": summary.pid, "steps_done": summary.steps_done,
        "steps_total": summary.steps_total, "rerun_of": summary.rerun_of, "path": str(path),
        "error": row.reason if status in UNTRUSTED else None,  # a damaged run: its prefix, and why it stops
    }


def _unreadable_object(row: HistoryRow, path: Path | str) -> dict[str, Any]:
    """An unreadable run: nothing of its summary is to be trusted, only its id and the error."""
    return {
        "run_id": row.summary.run_id, "workflow": None, "status": row.status, "reason": row.reason,
        "started_at": None, "ended_at": None, "duration_s": None, "host": None, "pid": None, "steps_done": 0,
        "steps_total": 0, "rerun_of": None, "path": str(path), "error": row.reason,
    }


def history_cells(row: HistoryRow, raw: bool, now: datetime) -> list[str]:
    """The text cells of one history row (the reason, last, only when the run did not succeed)."""
    summary = row.summary
    unreadable = row.status == UNREADABLE
    return [
        clean(summary.run_id, raw, inline=True),
        "-" if unreadable else clean(summary.workflow or "-", raw, inline=True),
        row.status,
        local_time(None if unreadable else parse_time(summary.started_at)),
        duration_text(row_duration(row, now)),
        "0/0" if unreadable else f"{summary.steps_done}/{summary.steps_total}",
        "" if row.reason is None or row.status == "succeeded" else clean(row.reason, raw, inline=True),
    ]
