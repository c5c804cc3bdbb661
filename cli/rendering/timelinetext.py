"""``show --timeline``: a run's steps and items as a Gantt chart in the terminal.

One line per step and per item: the bar spans its start to its end on the run's time axis.
With colour (a terminal, ``NO_COLOR`` unset or empty, not ``TERM=dumb``) bars are blocks
coloured by status; otherwise plain characters carry the status, so a pipe, a log file
or a screen reader still gets all of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import click

from runjournal.cli.rendering.output import clean, use_color
from runjournal.cli.rendering.textfmt import duration_text, local_time
from runjournal.cli.rendering.textviews import text_width
from runjournal.projections.timeline import IN_FLIGHT, NEVER_STARTED, Bar, Timeline

PLAIN = {"succeeded": "=", "failed": "x", "cancelled": "/", "skipped": ".", IN_FLIGHT: ">"}
"""The bar character of each status without colour."""
COLOURS = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "skipped": "bright_black", IN_FLIGHT: "cyan"}
SEEN_PLAIN, SEEN_COLOUR = "|", "magenta"
MAX_LABEL = 28
MIN_AXIS = 20


@dataclass(frozen=True, slots=True)
class _Layout:
    label: int
    axis: int
    colour: bool

    def column(self, timeline: Timeline, moment: object) -> int:
        return round(timeline.fraction(moment) * (self.axis - 1))  # type: ignore[arg-type]


def timeline_lines(timeline: Timeline, raw: bool, width: int | None = None) -> Iterator[str]:
    """The chart: a header, the axis, one line per step and item, and a legend."""
    labels = [_label(bar, raw) for bar in timeline.bars]
    label_width = min(MAX_LABEL, max((len(label) for label in labels), default=4))
    total = width or text_width()
    layout = _Layout(label_width, max(MIN_AXIS, total - label_width - 2 - 24), use_color())
    start, end = local_time(timeline.start), local_time(timeline.end)
    yield f"{'':<{label_width}}  {start}{end[-8:]:>{layout.axis - len(start)}}"
    yield f"{'':<{label_width}}  |{'-' * (layout.axis - 2)}|  {duration_text(timeline.duration)}"
    seen = None if timeline.last_seen is None else layout.column(timeline, timeline.last_seen)
    for bar, label in zip(timeline.bars, labels, strict=True):
        cells = _bar_cells(timeline, bar, layout, seen)
        yield f"{label[:label_width]:<{label_width}}  {cells}  {_outcome(bar, layout)}".rstrip()
    yield from _legend(timeline, layout)


def _label(bar: Bar, raw: bool) -> str:
    return clean(bar.label, raw, inline=True) if bar.item is None else "  " + clean(bar.label, raw, inline=True)


def _bar_cells(timeline: Timeline, bar: Bar, layout: _Layout, seen: int | None) -> str:
    cells = [" "] * layout.axis
    if bar.start is not None and bar.status != NEVER_STARTED:
        first = layout.column(timeline, bar.start)
        last = layout.column(timeline, bar.end if bar.end is not None else timeline.end)
        glyph = "█" if layout.colour else PLAIN.get(bar.status, "=")
        for col in range(first, max(first, last) + 1):
            cells[col] = glyph
    if seen is not None and cells[seen] == " ":
        cells[seen] = "│" if layout.colour else SEEN_PLAIN
    if not layout.colour:
        return "".join(cells)
    return "".join(_paint(cell, bar.status) for cell in cells)


def _paint(cell: str, status: str) -> str:
    if cell == "█":
        return click.style(cell, fg=COLOURS.get(status))
    if cell == "│":
        return click.style(cell, fg=SEEN_COLOUR)
    return cell


def _outcome(bar: Bar, layout: _Layout) -> str:
    if bar.status in (NEVER_STARTED, IN_FLIGHT) or bar.start is None or bar.end is None:
        word = bar.status
    else:
        word = f"{bar.status} {short_duration(bar.end - bar.start)}"
    if bar.exit_code not in (None, 0):
        word += f" (exit {bar.exit_code})"
    return click.style(word, fg=COLOURS[bar.status]) if layout.colour and bar.status in COLOURS else word


def short_duration(span: timedelta) -> str:
    """Like ``1m03s``, with a tenth of a second under ten seconds (``0.9s``): steps are often short."""
    seconds = span.total_seconds()
    return f"{seconds:.1f}s" if seconds < 10 else duration_text(span)


def _legend(timeline: Timeline, layout: _Layout) -> Iterator[str]:
    yield ""
    if layout.colour:
        keys = "  ".join(click.style("█", fg=c) + f" {s}" for s, c in COLOURS.items())
        seen_mark = click.style("│", fg=SEEN_COLOUR)
    else:
        keys = "  ".join(f"{g} {s}" for s, g in PLAIN.items())
        seen_mark = SEEN_PLAIN
    yield f"{keys}  (no bar: never started)"
    if timeline.last_seen is not None:
        yield f"{seen_mark} the writer was last seen at {local_time(timeline.last_seen)}"
