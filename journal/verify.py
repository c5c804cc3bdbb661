"""Check a run file completely and report every problem with its location.

Unlike :class:`~journal.reader.RunReader`, which stops at the first bad line, verification
keeps going: after a bad line it resynchronises on that line's own ``h`` and ``seq`` so one
damaged line yields one problem, not one per line after it. A run's anchors (see
:mod:`runjournal.journal.anchors`) are checked too: a line that no longer matches its anchor,
or a run that ends before an anchored line, is a problem of kind ``anchor``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from runjournal.journal.anchors import AnchorCheck
from runjournal.journal.codec import MAX_LINE_BYTES, decode_line, split_hash
from runjournal.journal.errors import CorruptLineError
from runjournal.journal.fsio import open_regular
from runjournal.journal.lines import OverlongLine, RawLine, TornTail, iter_raw_lines
from runjournal.journal.records import GENESIS_HASH, Anchor, Cursor, check_sequence


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a journal file, and where."""

    path: str
    line: int
    offset: int
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} (byte {self.offset}): {self.kind}: {self.reason}"


@dataclass(slots=True)
class _Chain:
    anchors: AnchorCheck
    prev_hash: str = GENESIS_HASH
    seq: int = 0
    lines: int = 0
    end: int = 0


def verify_file(path: Path, run_id: str, anchors: Iterable[Anchor] = ()) -> Iterator[Problem]:
    """Yield every problem in the journal of ``run_id`` at ``path`` (nothing if it is clean).

    ``anchors`` are the run's anchored heads (:meth:`runjournal.journal.store.Store.anchors`).
    """
    where = str(path)
    try:
        fd = open_regular(path, os.O_RDONLY)
    except OSError as exc:
        yield Problem(where, 0, 0, "unreadable", str(exc))
        return
    chain = _Chain(AnchorCheck(anchors, where))
    try:
        for item in iter_raw_lines(fd):
            problem = _check_item(item, chain, run_id, where)
            if problem is not None:
                yield problem
    finally:
        os.close(fd)
    if chain.lines == 0:
        yield Problem(where, 1, 0, "empty", "the journal has no complete line (no 'started' event)")
    yield from _missing_anchor(chain, where)


def verify_lines(lines: Iterable[bytes], run_id: str, where: str, anchors: Iterable[Anchor] = ()) -> Iterator[Problem]:
    """The same checks over a run's lines as a database store holds them (one row, one line)."""
    chain = _Chain(AnchorCheck(anchors, where))
    offset = 0
    for line_no, data in enumerate(lines, 1):
        problem = _check_item(RawLine(line_no, offset, data), chain, run_id, where)
        offset += len(data) + 1
        if problem is not None:
            yield problem
    if chain.lines == 0:
        yield Problem(where, 1, 0, "empty", "the run has no line (no 'started' event)")
    yield from _missing_anchor(chain, where)


def _missing_anchor(chain: _Chain, where: str) -> Iterator[Problem]:
    reason = chain.anchors.missing(Cursor(chain.end, chain.lines + 1, chain.seq, chain.prev_hash))
    if reason is not None:
        yield Problem(where, chain.lines + 1, chain.end, "anchor", reason)


def _check_item(item: RawLine | OverlongLine | TornTail, chain: _Chain, run_id: str, where: str) -> Problem | None:
    if isinstance(item, TornTail):
        return Problem(
            where, item.line_no, item.offset, "torn-tail",
            f"the last {item.length} bytes have no newline (a write cut short by a crash; readers ignore them); "
            "'runjournal reconcile' moves them aside when it records a dead writer's run abandoned; "
            f"on a finished run they are harmless (to drop them: truncate -s {item.offset} {where})",
        )
    chain.lines += 1
    chain.end = item.end
    if isinstance(item, OverlongLine):
        chain.seq += 1
        return Problem(where, item.line_no, item.offset, "corrupt", f"line is {item.length} bytes, over the {MAX_LINE_BYTES}-byte cap")
    try:
        event, digest = decode_line(item.data, chain.prev_hash, path=where, line_no=item.line_no, offset=item.offset)
        check_sequence(event, item, run_id, chain.seq, where)
    except CorruptLineError as exc:
        _resync(chain, item.data)
        return Problem(where, item.line_no, item.offset, _kind(exc), exc.reason)
    chain.prev_hash, chain.seq = digest, chain.seq + 1
    reason = chain.anchors.line(event.seq, digest, item.end)
    return None if reason is None else Problem(where, item.line_no, item.offset, "anchor", reason)


def _kind(exc: CorruptLineError) -> str:
    return {"IntegrityError": "integrity", "SequenceError": "sequence", "UnsupportedVersionError": "version"}.get(
        type(exc).__name__, "corrupt"
    )


def _resync(chain: _Chain, data: bytes) -> None:
    """Continue the chain from a bad line's own claims, so later good lines still check."""

    def ignore(*_: object) -> CorruptLineError:
        return CorruptLineError("", 0, 0, "")

    try:
        chain.prev_hash = split_hash(data, ignore)[1]
    except CorruptLineError:
        pass
    try:
        seq = orjson.loads(data).get("seq")
    except (orjson.JSONDecodeError, AttributeError):
        seq = None
    chain.seq = seq + 1 if isinstance(seq, int) and not isinstance(seq, bool) else chain.seq + 1
