"""Anchors: a finished run's head, recorded outside the run's own lines, and the check readers make.

The hash chain of a run proves that its lines follow one another unchanged, but not that
the chain is whole: dropping the final lines leaves a valid, shorter chain, and anyone who
can write the file can rewrite a line and re-hash everything after it. So when a run
finishes, its writer records the run's head, an :class:`~runjournal.journal.records.Anchor`
(seq, hash and end offset of its last line), somewhere else: the JSONL store in its
append-only, hash-chained anchor log, the in-memory store beside its lines. Every later
append to a finished run (a late event) records its new head too.

From then on every reader checks, as the lines go past, that each anchored line still has
its anchored hash and ends at its anchored offset, and that the run still reaches every
anchored line. A run cut back below an anchor, or rewritten and re-hashed, fails with an
:class:`~runjournal.journal.errors.IntegrityError` naming the line (or the end of the run)
and what the anchor says. ``docs/format.md`` ("Anchors") says what this does and does not
detect.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from runjournal.journal.errors import IntegrityError
from runjournal.journal.records import Anchor, Cursor
from runjournal.journal.status import TERMINAL_TYPES

__all__ = ["Anchor", "AnchorCheck", "finished_head"]


class AnchorCheck:
    """The anchors of one run that a read from ``start_seq`` on still has to pass.

    :meth:`line` is called with each line's seq, hash and end; :meth:`finish` at the end of
    the run. Both raise :class:`IntegrityError` (``raising=True``) or return the reason
    (for ``verify``, which reports every problem and goes on).
    """

    __slots__ = ("path", "pending")

    def __init__(self, anchors: Iterable[Anchor], path: str, start_seq: int = 0) -> None:
        self.path = path
        self.pending: dict[int, list[Anchor]] = {}
        for anchor in anchors:
            if anchor.seq >= start_seq:
                self.pending.setdefault(anchor.seq, []).append(anchor)

    def line(self, seq: int, digest: str, end: int) -> str | None:
        """Why the line ``seq`` (hash ``digest``, ending at byte ``end``) breaks an anchor, or None."""
        anchors = self.pending.pop(seq, None)
        if anchors is None:
            return None
        for anchor in anchors:
            if anchor.hash != digest or anchor.offset != end:
                return (
                    f"the run was changed after it finished: this line (seq {seq}) is not the one anchored "
                    f"then (hash {anchor.hash[:16]}..., ending at byte {anchor.offset}); "
                    "its lines were rewritten and re-hashed, or replaced"
                )
        return None

    def check_line(self, seq: int, digest: str, end: int, line_no: int, offset: int) -> None:
        """Raise :class:`IntegrityError` if the line breaks an anchor."""
        reason = self.line(seq, digest, end)
        if reason is not None:
            raise IntegrityError(self.path, line_no, offset, reason)

    def missing(self, cursor: Cursor) -> str | None:
        """Why a run that ends at ``cursor`` falls short of an anchor, or None.

        Only anchors at or past ``cursor.seq`` count: a line before it was passed (and, if it
        was damaged, reported as such).
        """
        beyond = [seq for seq in self.pending if seq >= cursor.seq]
        if not beyond:
            return None
        anchor = self.pending[min(beyond)][0]
        return (
            f"the run was cut short after it finished: it ends at seq {cursor.seq - 1} (byte {cursor.offset}), "
            f"but seq {anchor.seq} (ending at byte {anchor.offset}) was anchored when it finished; "
            "its final lines were removed"
        )

    def finish(self, cursor: Cursor) -> None:
        """Raise :class:`IntegrityError` (at the end of the run) if an anchored line was never reached."""
        reason = self.missing(cursor)
        if reason is not None:
            raise IntegrityError(self.path, cursor.line, cursor.offset, reason)


def finished_head(lines: list[bytes]) -> Anchor | None:
    """The anchor of a whole run's last line if one of its lines is a terminal event, else None.

    ``lines`` are verified lines without their newlines (what :meth:`Store.import_lines` gets).
    """
    ended = False
    for line in lines:
        ended = ended or orjson.loads(line).get("type") in TERMINAL_TYPES
    if not ended:
        return None
    last = orjson.loads(lines[-1])
    return Anchor(last["seq"], last["h"], sum(len(line) + 1 for line in lines))
