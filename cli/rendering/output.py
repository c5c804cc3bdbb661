"""Shared output machinery: one set of output flags, JSON emitters, colour and sanitising.

Data goes to stdout, diagnostics to stderr. Colour only when stdout is a terminal (not
``TERM=dumb``) and ``NO_COLOR`` is unset or empty. Text from journals goes through :func:`cli.sanitize.sanitize` unless
``--raw`` is given.
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click
import orjson

from runjournal.cli.rendering.sanitize import sanitize
from runjournal.journal.status import DERIVED_ABANDONED

F = TypeVar("F", bound=Callable[..., Any])


class OutputFormat(enum.Enum):
    """How a read command prints its data."""

    TEXT = "text"
    JSON = "json"
    JSONL = "jsonl"


def output_options(*, jsonl: bool = False) -> Callable[[F], F]:
    """Add ``--json`` (and ``--jsonl`` for streaming commands) and ``--raw``; they set ``fmt`` and ``raw``."""

    def decorate(fn: F) -> F:
        fn = click.option("--raw", is_flag=True, help="Do not neutralise control characters in journal text.")(fn)
        if jsonl:
            fn = click.option(
                "--jsonl", "fmt", flag_value=OutputFormat.JSONL, help="One JSON object per line, streamed."
            )(fn)
        fn = click.option("--json", "fmt", flag_value=OutputFormat.JSON, help="One JSON document on stdout.")(fn)
        return click.option("--text", "fmt", flag_value=OutputFormat.TEXT, default=True, hidden=True)(fn)

    return decorate


def dumps(obj: Any) -> str:
    """Serialise ``obj`` as compact JSON (datetimes as ISO 8601, UTC)."""
    return orjson.dumps(obj, default=_default, option=orjson.OPT_UTC_Z).decode()


def _default(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def emit_json(obj: Any) -> None:
    """Print one JSON document."""
    click.echo(dumps(obj))


def emit_json_streamed(obj: dict[str, Any], streams: dict[str, Iterable[Any]], batch: int = 512) -> None:
    """Print ``obj`` as one JSON document (the bytes :func:`emit_json` would print), the values of
    the keys in ``streams`` written element by element from their iterables instead of held.

    For ``show --json`` of a run of a million steps: the steps and the progress lists are
    never built as lists.
    """
    out = sys.stdout
    out.write("{")
    for index, (key, value) in enumerate(obj.items()):
        out.write(("," if index else "") + dumps(key) + ":")
        if key not in streams:
            out.write(dumps(value))
            continue
        pending, separator = ["["], ""
        for element in streams[key]:
            pending.append(separator + dumps(element))
            separator = ","
            if len(pending) >= batch:
                out.write("".join(pending))
                pending.clear()
        pending.append("]")
        out.write("".join(pending))
    out.write("}\n")
    out.flush()


def emit_json_array(rows: Iterable[Any], batch: int = 256) -> None:
    """Stream a JSON array one element per line, without holding the rows in memory.

    Lines are written ``batch`` at a time: one ``write`` per row is a measurable share of
    ``history --json`` over tens of thousands of runs.
    """
    out = sys.stdout
    out.flush()
    binary = out.buffer  # bytes straight from orjson: no decode and re-encode per row
    encode, pending, separator = orjson.dumps, [b"["], b"\n"
    for row in rows:
        pending.append(separator)
        pending.append(encode(row, default=_default, option=orjson.OPT_UTC_Z))
        separator = b",\n"
        if len(pending) >= batch:
            binary.write(b"".join(pending))
            pending.clear()
    pending.append(b"]\n" if separator == b"\n" else b"\n]\n")
    binary.write(b"".join(pending))
    binary.flush()


def emit_objects(objects: Iterable[Any], fmt: OutputFormat) -> None:
    """Print ``objects`` as one JSON array (``--json``) or one object per line (``--jsonl``), streamed."""
    if fmt is OutputFormat.JSON:
        emit_json_array(objects)
    else:
        for obj in objects:
            emit_json(obj)


def emit_text(line: str, raw: bool = False) -> None:
    """Print one line of text output; with ``raw``, exactly as given (click would strip ANSI codes off a pipe)."""
    click.echo(line, color=True if raw else None)


def emit_lines(lines: Iterable[str], raw: bool = False, batch: int = 512) -> None:
    """Print lines of text output as :func:`emit_text` would, a batch per write (a million-line ``show``)."""
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == batch:
            emit_text("\n".join(chunk), raw)
            chunk = []
    if chunk:
        emit_text("\n".join(chunk), raw)


def use_color() -> bool:
    """Whether to colour stdout: a terminal that is not ``TERM=dumb``, and ``NO_COLOR`` unset or empty.

    (no-color.org: only a non-empty ``NO_COLOR`` turns colour off.)
    """
    return not os.environ.get("NO_COLOR") and can_redraw(sys.stdout)


def can_redraw(stream: Any) -> bool:
    """Whether ``stream`` is a terminal that understands cursor codes (``\\r``, ``ESC [K``): not ``TERM=dumb``."""
    return bool(stream.isatty()) and os.environ.get("TERM") != "dumb"


STATUS_COLORS = {
    "succeeded": "green",
    "failed": "red",
    "abandoned": "magenta",
    DERIVED_ABANDONED: "magenta",
    "cancelled": "yellow",
    "running": "cyan",
    "damaged": "red",
    "unreadable": "red",
}


def status_text(status: str, width: int = 0) -> str:
    """A status word, padded to ``width`` and coloured when colour is on."""
    padded = status.ljust(width)
    color = STATUS_COLORS.get(status)
    return click.style(padded, fg=color) if color and use_color() else padded


def clean(text: object, raw: bool = False, *, inline: bool = False) -> str:
    """Journal text made safe for a terminal (unless ``raw``).

    ``inline`` is for one cell of a table or one line of a listing: newlines and tabs are
    shown as ``\\n`` and ``\\t`` even with ``raw``, so one value can never break a row.
    """
    value = "" if text is None else str(text)
    if value.isascii() and value.isprintable():
        return value  # nothing to neutralise or escape (the common case, a million times in a big `show`)
    if not raw:
        value = sanitize(value, keep_newlines=not inline)
    return value.replace("\n", "\\n").replace("\t", "\\t") if inline else value
