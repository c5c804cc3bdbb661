"""Text formatting shared by every read command, with no dependency on the event models.

``history`` on a warm index imports only this, so it never pays for pydantic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta

from runjournal.cli.rendering.output import clean, status_text
from runjournal.journal.status import DERIVED_ABANDONED, UNTRUSTED

TO_LAST_ACTIVITY = frozenset({"abandoned", DERIVED_ABANDONED})
"""Statuses whose duration runs to the last sign of life: when the writer died, not when someone noticed."""


def run_span(
    status: str, started: datetime | None, ended: datetime | None, last_activity: datetime | None, now: datetime | None
) -> timedelta | None:
    """How long a run ran: to its terminal event; an abandoned one to its last progress (not to
    whenever someone noticed it); a damaged one that never reads to an end, to its last line
    that reads (it will not end); a live one until ``now``. One rule for ``history`` and ``show``."""
    if started is None:
        return None
    if status in TO_LAST_ACTIVITY:
        end = last_activity
    elif ended is not None:
        end = ended
    elif status in UNTRUSTED:
        end = last_activity
    else:
        end = now
    return None if end is None else max(end - started, timedelta(0))


def local_time(moment: datetime | None) -> str:
    """A timestamp in local time, short form (``2026-01-02 14:03:05``); ``-`` for none."""
    return "-" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration_text(span: timedelta | None) -> str:
    """A duration like ``42s``, ``1m03s``, ``2h05m`` or ``3d04h``; ``-`` for none."""
    if span is None:
        return "-"
    seconds = int(span.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def status_with_reason(status: str, reason: str | None, raw: bool) -> str:
    """``failed (step-failed)``, the status coloured; just the status when there is no reason or it succeeded."""
    if reason is None or status == "succeeded":
        return status_text(status)
    return f"{status_text(status)} ({clean(reason, raw, inline=True)})"


def aligned(
    rows: Iterable[list[str]], header: list[str], *, styled: dict[int, Callable[[str, int], str]] | None = None,
    chunk: int = 64,
) -> Iterator[str]:
    """Rows as aligned text lines under ``header``, streamed; nothing at all when there are no rows.

    Widths are fitted per chunk of rows and only grow, so memory stays bounded. ``styled``
    maps a column to a function ``(cell, width) -> text`` that pads and colours it (colour
    codes must not count towards the width). The last column is not padded.
    """
    widths = [len(h) for h in header]
    for index, batch in enumerate(_chunks(rows, chunk)):
        widths = [max(w, *(len(r[i]) for r in batch)) for i, w in enumerate(widths)]
        if index == 0:
            yield _join(header, widths, {})
        for cells in batch:
            yield _join(cells, widths, styled or {})


def _chunks(rows: Iterable[list[str]], size: int) -> Iterator[list[list[str]]]:
    batch: list[list[str]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _join(cells: list[str], widths: list[int], styled: dict[int, Callable[[str, int], str]]) -> str:
    last = len(cells) - 1
    parts = [cell.ljust(width) for cell, width in zip(cells[:last], widths, strict=False)]
    parts.append(cells[last])
    for i, style in styled.items():
        if i < len(cells):
            parts[i] = style(cells[i], 0 if i == last else widths[i])
    return "  ".join(parts).rstrip()


HISTORY_HEADER = ["RUN", "WORKFLOW", "STATUS", "STARTED", "DURATION", "STEPS", "REASON"]
