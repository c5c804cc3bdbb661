"""Stream a journal file as raw lines, in bounded memory, without parsing them.

A final fragment without its newline is a :class:`TornTail` (what a SIGKILL mid-``write``
or a reader racing the writer sees) and is never handed out as a line. A line longer than
:data:`MAX_LINE_BYTES` is an :class:`OverlongLine`: skipped to its newline
without being held in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

CHUNK_BYTES = 1 << 20
"""The largest read. Reads start at :data:`FIRST_CHUNK_BYTES` and double: asking for 1 MiB
costs ~30 us even when the file holds 5 kB (the buffer is allocated, then shrunk), which
is most of the cost of reading a short run."""
FIRST_CHUNK_BYTES = 1 << 16

MAX_LINE_BYTES = 1024 * 1024
"""Longest accepted line, newline included (1 MiB). Longer lines are corrupt.

Defined here, a leaf without the event models, so that listing runs never imports them;
:mod:`runjournal.journal.codec` re-exports it."""


class RawLine(NamedTuple):
    """One newline-terminated line; ``data`` excludes the newline (a named tuple: one per line read)."""

    line_no: int
    offset: int
    data: bytes

    @property
    def end(self) -> int:
        """Byte offset just past this line's newline."""
        return self.offset + len(self.data) + 1


@dataclass(frozen=True, slots=True)
class OverlongLine:
    """A line over the size cap; ``length`` includes its newline."""

    line_no: int
    offset: int
    length: int

    @property
    def end(self) -> int:
        """Byte offset just past this line's newline."""
        return self.offset + self.length


@dataclass(frozen=True, slots=True)
class TornTail:
    """Bytes after the last newline: a line still being written, or torn by a crash."""

    line_no: int
    offset: int
    length: int
    preview: bytes


def iter_raw_lines(
    fd: int, offset: int = 0, line_no: int = 1, *, max_line: int = MAX_LINE_BYTES
) -> Iterator[RawLine | OverlongLine | TornTail]:
    """Yield the lines of ``fd`` from byte ``offset``, then a :class:`TornTail` if one is left.

    Reads with ``os.pread`` so the fd's position is untouched and an ``O_APPEND`` writer fd
    can be scanned too. Stops at the size seen when the scan reaches it: bytes appended
    later are picked up by the next call from the returned offsets.
    """
    buf = b""
    buf_offset = offset
    skipping: int | None = None  # start offset of an overlong line being skipped
    size = FIRST_CHUNK_BYTES
    while True:
        chunk = os.pread(fd, size, buf_offset + len(buf))
        if not chunk:
            break
        size = min(size * 2, CHUNK_BYTES)
        buf += chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line_start = buf_offset + start
            if skipping is not None:
                yield OverlongLine(line_no, skipping, buf_offset + nl + 1 - skipping)
                skipping = None
            elif nl - start + 1 > max_line:
                yield OverlongLine(line_no, line_start, nl - start + 1)
            else:
                yield RawLine(line_no, line_start, buf[start:nl])
            line_no += 1
            start = nl + 1
        buf_offset += start
        buf = buf[start:]
        if len(buf) > max_line:
            # Keep memory bounded: remember where the long line began and drop its bytes.
            if skipping is None:
                skipping = buf_offset
            buf_offset += len(buf)
            buf = b""
    if skipping is not None:
        yield TornTail(line_no, skipping, buf_offset + len(buf) - skipping, b"")
    elif buf:
        yield TornTail(line_no, buf_offset, len(buf), buf[:64])


def iter_line_batches(
    fd: int, offset: int = 0, line_no: int = 1, *, end: int | None = None
) -> Iterator[list[bytes] | OverlongLine | TornTail]:
    """The lines of ``fd`` from ``offset`` as lists of whole lines (newlines dropped), for hot loops.

    What :func:`iter_raw_lines` yields, but a batch is every whole line of one read (each
    line takes ``len(line) + 1`` bytes, so the caller counts offsets), which makes a line a
    list item instead of an object. Stops at ``end`` if given (a line boundary verified
    before: read as is), else at the end of the file, then yields a :class:`TornTail` if
    one is left. From an over-long line on, it defers to :func:`iter_raw_lines` (one-line
    batches), which skips such lines in bounded memory.
    """
    buf = b""
    pos = offset  # the file offset of buf[0]
    size = FIRST_CHUNK_BYTES
    while True:
        want = size if end is None else min(size, end - pos - len(buf))
        chunk = os.pread(fd, want, pos + len(buf)) if want > 0 else b""
        if not chunk:
            break
        size = min(size * 2, CHUNK_BYTES)
        parts = (buf + chunk).split(b"\n")
        buf = parts.pop()
        if end is None and ((parts and max(map(len, parts)) >= MAX_LINE_BYTES) or len(buf) >= MAX_LINE_BYTES):
            yield from _one_line_batches(fd, pos, line_no)
            return
        if parts:
            yield parts
            pos += sum(map(len, parts)) + len(parts)
            line_no += len(parts)
    if buf and end is None:
        yield TornTail(line_no, pos, len(buf), buf[:64])


def _one_line_batches(fd: int, offset: int, line_no: int) -> Iterator[list[bytes] | OverlongLine | TornTail]:
    for item in iter_raw_lines(fd, offset, line_no):
        yield [item.data] if isinstance(item, RawLine) else item
