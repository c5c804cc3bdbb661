"""The limits a writer keeps so that every event it accepts is one every reader accepts.

A reader refuses a line over :data:`~runjournal.journal.codec.MAX_LINE_BYTES` (1 MiB), so
the writer checks the encoded line before a byte is written (:class:`EventTooLargeError`).
Values a user legitimately makes long are *clipped* before they reach an event, with a
visible marker, instead of failing the run (``docs/format.md``, "Long values"):

* free text (step and item ``message``, ``cancelled.reason``/``by``, ``succeeded.message``,
  ``failed.message``): at most :data:`MAX_TEXT_BYTES`;
* the writer's ``argv``: each argument at most :data:`MAX_ARG_BYTES`, all of them at most
  :data:`MAX_ARGV_BYTES` (later arguments are replaced by one marker argument);
* ``inputs`` string values: at most :data:`MAX_INPUT_BYTES` each.

A clipped value ends with ``…[clipped: N more bytes]`` (the workflow runner also keeps the
full value in the run's side files and says where). Planned items too many for the
``started`` line are recorded in ``items-planned`` events right after it (see
:mod:`runjournal.journal.run`).

Timing values are bounded too: a heartbeat interval or a step timeout outside
[:data:`MIN_SECONDS`, :data:`MAX_HEARTBEAT_INTERVAL` / :data:`MAX_TIMEOUT`] is refused.
A leaf module: it imports nothing from the project but the error root.
"""

from __future__ import annotations

import math

from runjournal.journal.errors import JournalError

MAX_TEXT_BYTES = 16 * 1024
"""Longest free-text field (a message, a reason) kept in an event, in UTF-8 bytes."""

MAX_ARG_BYTES = 4 * 1024
"""Longest single argument of the writer's argv kept in ``started``."""

MAX_ARGV_BYTES = 64 * 1024
"""Most bytes of the writer's argv kept in ``started``, all arguments together."""

MAX_INPUT_BYTES = 16 * 1024
"""Longest input string value kept in ``started``."""

MAX_INPUTS = 256
"""Most inputs a run may record."""

STARTED_BUDGET = 512 * 1024
"""Above this many bytes, a ``started`` line moves its planned items into ``items-planned`` events."""

ITEMS_CHUNK_BYTES = 256 * 1024
"""Target size of the item list of one ``items-planned`` event."""

MIN_SECONDS = 0.01
"""Shortest heartbeat interval or step timeout (seconds): shorter ones would flood the journal."""

MAX_HEARTBEAT_INTERVAL = 86_400.0
"""Longest heartbeat interval: one day (a lease is a few intervals; longer hides dead writers)."""

MAX_TIMEOUT = 30 * 86_400.0
"""Longest step timeout: thirty days."""

MARKER = "…[clipped: {} more bytes]"


class EventTooLargeError(JournalError, ValueError):
    """An event would not fit in one journal line (or cannot be encoded); nothing was written."""


class BadDurationError(JournalError, ValueError):
    """A heartbeat interval or timeout outside its documented range."""


def encodable(text: str) -> str:
    """``text`` as valid UTF-8 text: lone surrogates (undecodable argv bytes) become ``\\xNN`` escapes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "surrogatepass")
        return raw.decode("utf-8", "backslashreplace")


def clip_text(text: str, limit: int = MAX_TEXT_BYTES) -> str:
    """``text`` if it fits in ``limit`` UTF-8 bytes, else its head and a marker (the whole within ``limit``).

    Lone surrogates are escaped first (:func:`encodable`), so the result can always be encoded.
    """
    text = encodable(text)
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    room = max(0, limit - len(MARKER.format(len(data)).encode()))
    head = data[:room].decode("utf-8", "ignore")
    return head + MARKER.format(len(data) - len(head.encode("utf-8")))


def is_clipped(text: object) -> bool:
    """Whether ``text`` ends with the clip marker."""
    return isinstance(text, str) and text.endswith(" more bytes]") and "…[clipped: " in text


def clip_argv(argv: list[str]) -> list[str]:
    """The argv as ``started`` records it: each argument clipped, the whole within :data:`MAX_ARGV_BYTES`."""
    kept: list[str] = []
    used = 0
    for index, arg in enumerate(argv):
        arg = clip_text(arg, MAX_ARG_BYTES)
        size = len(arg.encode("utf-8")) + 4
        if used + size > MAX_ARGV_BYTES - 64:
            kept.append(f"…[clipped: {len(argv) - index} more arguments]")
            break
        kept.append(arg)
        used += size
    return kept


def check_seconds(value: float, what: str, maximum: float) -> float:
    """``value`` as a float if it is a finite number of seconds in range, else :class:`BadDurationError`."""
    allowed = f"{what} must be a number of seconds from {MIN_SECONDS:.10g} to {maximum:.10g}"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadDurationError(f"{allowed}, got {str(value)[:40]!r}")
    if not MIN_SECONDS <= value <= maximum:
        raise BadDurationError(f"{allowed}, got {value:.10g}")
    return float(value)
