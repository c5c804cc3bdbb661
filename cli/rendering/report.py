"""``runjournal report``: one run as a self-contained HTML page (inline CSS and SVG, nothing fetched).

The page has the status and the evidence, the timeline as SVG (one bar per step and item,
the same projection as ``show --timeline``) and the per-item table. Every string from the
journal is HTML-escaped; a Content-Security-Policy forbids the page to load anything, so
opening it never touches the network.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from runjournal.cli.rendering.output import dumps
from runjournal.cli.rendering.textfmt import duration_text, local_time
from runjournal.journal.status import DERIVED_ABANDONED
from runjournal.projections.timeline import IN_FLIGHT, NEVER_STARTED, Bar, Timeline

BAR_COLOURS = {"succeeded": "#2e9d4e", "failed": "#d32f2f", "cancelled": "#f9a825", "skipped": "#9e9e9e",
               IN_FLIGHT: "#1e88e5"}
"""Fill of each bar by status (tests look for these exact colours in a screenshot)."""
SEEN_COLOUR = "#8e24aa"
BADGE_COLOURS = {"succeeded": "#1b5e20", "failed": "#b71c1c", "cancelled": "#8d6e00", "abandoned": "#4a148c",
                 DERIVED_ABANDONED: "#4a148c", "running": "#0d47a1", "unreadable": "#424242"}
LABEL_WIDTH, CHART_WIDTH, AXIS_HEIGHT = 200, 720, 34
MARGIN = 12

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #212121; background: #fff; }
h1 { font-size: 20px; margin: 0 0 12px; }
.badge { color: #fff; padding: 2px 8px; border-radius: 4px; font-weight: 600; }
table { border-collapse: collapse; margin: 8px 0 20px; }
th, td { text-align: left; padding: 3px 10px 3px 0; vertical-align: top; }
th { color: #616161; font-weight: 600; }
table.items td, table.items th { border-bottom: 1px solid #e0e0e0; padding-right: 16px; }
code { font: 12px ui-monospace, monospace; }
svg text { font: 11px ui-monospace, monospace; fill: #212121; }
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def row_height(timeline: Timeline) -> int:
    """Pixels per step or item: smaller when a fan-out has many items."""
    return 18 if len(timeline.bars) <= 40 else 11


def svg_size(timeline: Timeline) -> tuple[int, int]:
    """Width and height of :func:`timeline_svg`'s picture, in pixels."""
    return MARGIN + LABEL_WIDTH + CHART_WIDTH + MARGIN, AXIS_HEIGHT + row_height(timeline) * len(timeline.bars) + MARGIN


def timeline_svg(timeline: Timeline) -> str:
    """The timeline as an SVG element: labels on the left, bars on a time axis, the last-seen line."""
    rows = row_height(timeline)
    width, height = svg_size(timeline)
    left = MARGIN + LABEL_WIDTH
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" shape-rendering="crispEdges">',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
             f'<text x="{left}" y="14">{_e(local_time(timeline.start))}</text>',
             f'<text x="{left + CHART_WIDTH}" y="14" text-anchor="end">{_e(local_time(timeline.end))} '
             f'({_e(duration_text(timeline.duration))})</text>',
             f'<line x1="{left}" y1="{AXIS_HEIGHT - 8}" x2="{left + CHART_WIDTH}" y2="{AXIS_HEIGHT - 8}" '
             'stroke="#9e9e9e"/>']
    for index, bar in enumerate(timeline.bars):
        parts += _bar_svg(timeline, bar, AXIS_HEIGHT + index * rows, rows, left)
    if timeline.last_seen is not None:
        x = left + round(timeline.fraction(timeline.last_seen) * CHART_WIDTH)
        parts.append(f'<line x1="{x}" y1="{AXIS_HEIGHT - 12}" x2="{x}" y2="{height - MARGIN + 4}" '
                     f'stroke="{SEEN_COLOUR}" stroke-width="2"><title>the writer was last seen at '
                     f'{_e(local_time(timeline.last_seen))}</title></line>')
    parts.append("</svg>")
    return "\n".join(parts)


def _bar_svg(timeline: Timeline, bar: Bar, top: int, rows: int, left: int) -> list[str]:
    indent = 0 if bar.item is None else 14
    weight = ' font-weight="bold"' if bar.item is None else ""
    text_y = top + rows - 5
    label = bar.label if len(bar.label) <= 26 else bar.label[:25] + "…"
    parts = [f'<text x="{MARGIN + indent}" y="{text_y}"{weight}>{_e(label)}</text>']
    if bar.status == NEVER_STARTED or bar.start is None:
        parts.append(f'<text x="{left + 4}" y="{text_y}" fill="#9e9e9e">never started</text>')
        return parts
    x0 = left + round(timeline.fraction(bar.start) * CHART_WIDTH)
    x1 = left + round(timeline.fraction(bar.end if bar.end is not None else timeline.end) * CHART_WIDTH)
    tip = f"{bar.step}{'' if bar.item is None else ' [' + bar.item + ']'}: {bar.status}"
    parts.append(f'<rect x="{x0}" y="{top + 3}" width="{max(3, x1 - x0)}" height="{rows - 6}" '
                 f'fill="{BAR_COLOURS.get(bar.status, "#9e9e9e")}"><title>{_e(tip)}</title></rect>')
    return parts


def report_html(timeline: Timeline | None, detail: dict[str, Any], liveness: str | None) -> str:
    """The whole page for one run (``detail`` is ``show --json``'s object)."""
    status = detail["status"]
    title = f"runjournal: {detail['workflow'] or '?'} {detail['run_id']} {status}"
    badge = BADGE_COLOURS.get(status, "#424242")
    body = [f"<h1>{_e(detail['workflow'])} <code>{_e(detail['run_id'])}</code> "
            f'<span class="badge" style="background:{badge}">{_e(status)}</span></h1>',
            _facts(detail, liveness)]
    if detail["evidence"]:
        body += ["<h2>Evidence</h2>", _pairs(detail["evidence"])]
    if timeline is not None:
        body += ["<h2>Timeline</h2>", timeline_svg(timeline), _legend(timeline),
                 "<h2>Steps and items</h2>", _items(timeline)]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">\n"
        f"<title>{_e(title)}</title>\n<style>{CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _facts(detail: dict[str, Any], liveness: str | None) -> str:
    writer = detail["writer"] or {}
    facts = [
        ("status", detail["status"] + (f" ({detail['reason']})" if detail["reason"] and detail["status"] != "succeeded"
                                       else "")),
        ("started", _time(detail["started_at"])), ("ended", _time(detail["ended_at"])),
        ("duration", duration_text(None) if detail["duration_s"] is None else f"{detail['duration_s']:.1f}s"),
        ("writer", f"pid {writer.get('pid')} on {writer.get('host')}, user {writer.get('user')}" if writer else "-"),
        ("command", " ".join(writer.get("argv", [])) if writer else "-"),
        ("liveness", liveness or "-"), ("journal", detail["path"]),
    ]
    return _pairs(dict(facts))


def _time(value: str | None) -> str:
    return "-" if value is None else local_time(datetime.fromisoformat(value))


def _pairs(mapping: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v if isinstance(v, str) else dumps(v))}</td></tr>"
                   for k, v in mapping.items())
    return f"<table>{rows}</table>"


def _legend(timeline: Timeline) -> str:
    keys = " ".join(f'<span style="color:{c}">&#9632;</span> {_e(s)}' for s, c in BAR_COLOURS.items())
    seen = ""
    if timeline.last_seen is not None:
        seen = (f' &nbsp; <span style="color:{SEEN_COLOUR}">&#9474;</span> the writer was last seen at '
                f"{_e(local_time(timeline.last_seen))}")
    return f"<p>{keys} &nbsp; (no bar: never started){seen}</p>"


def _items(timeline: Timeline) -> str:
    head = "<tr><th>step</th><th>item</th><th>status</th><th>started</th><th>ended</th><th>duration</th>" \
           "<th>exit</th><th>message</th></tr>"
    rows = []
    for bar in timeline.bars:
        span = bar.end - bar.start if bar.start is not None and bar.end is not None else None
        ended = None if bar.status == IN_FLIGHT else bar.end
        cells = [bar.step, bar.item or "", bar.status, local_time(bar.start), local_time(ended),
                 duration_text(span) if bar.status != IN_FLIGHT else "-",
                 "-" if bar.exit_code is None else bar.exit_code, bar.message or ""]
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return f'<table class="items">{head}{"".join(rows)}</table>'
