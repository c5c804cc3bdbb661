"""Copy runs between stores, line for line (``runjournal export`` and ``runjournal import``).

A run is copied as its exact lines, so the copy has the same hash chain and a JSONL
export of a PostgreSQL run is byte-identical to the file the JSONL store would have
written. Only finished runs move: an orphan is reconciled in the source first (like
``history`` does), and a run still being written is left where it is, since its writer
keeps appending to the source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from runjournal.journal.errors import JournalError
from runjournal.journal.records import Anchor
from runjournal.journal.store import Store
from runjournal.journal.verify import verify_lines
from runjournal.projections.reconcile import current_state

Outcome = Literal["copied", "unchanged", "running", "conflict", "damaged", "unverified"]
"""What happened to one run: ``copied``; ``unchanged`` (the destination already has the same
lines); ``running`` (not finished, left out); ``conflict`` (the destination has a different
run under this id); ``damaged`` (the source does not verify; nothing copied); ``unverified``
(the copy read back differs from the source: only when asked to read it back)."""

FAILURES = frozenset({"conflict", "damaged", "unverified"})


@dataclass(frozen=True, slots=True)
class Transfer:
    """The outcome for one run, with the number of lines and bytes it has and why, when it did not move."""

    run_id: str
    outcome: Outcome
    lines: int = 0
    bytes: int = 0
    detail: str | None = None


def copy_run(source: Store, destination: Store, run_id: str, *, reconcile: bool = True) -> Transfer:
    """Copy one finished run from ``source`` to ``destination``."""
    try:
        current = current_state(source, run_id, reconcile=reconcile)
    except JournalError as exc:  # a corrupt line, say: reported for this run, the others still move
        return Transfer(run_id, "damaged", detail=f"{exc} (see 'runjournal verify')")
    if current.damage is not None:  # never "running": a damaged run will not end (its prefix is all that reads)
        return Transfer(run_id, "damaged", detail=f"{current.damage} (see 'runjournal verify')")
    if not current.state.is_terminal:
        return Transfer(run_id, "running", detail=f"status {current.status}: copy it once it has ended")
    return copy_lines(source, destination, run_id)


def copy_lines(source: Store, destination: Store, run_id: str, *, read_back: bool = False) -> Transfer:
    """Copy a run known to be finished: its lines, verified (chain and anchor) first, byte for byte.

    With ``read_back``, a copy is read back from ``destination`` and compared with the lines
    copied (``unverified`` if it differs): what ``prune --archive`` needs before it deletes.
    """
    anchors = source.anchors(run_id)  # before the lines: see verify_lines
    lines = list(source.raw_lines(run_id))
    transfer = _copy(source, destination, run_id, lines, anchors)
    if read_back and transfer.outcome == "copied" and list(destination.raw_lines(run_id)) != lines:
        detail = f"the copy in {destination.location(run_id)} reads back different lines"
        return Transfer(run_id, "unverified", transfer.lines, transfer.bytes, detail)
    return transfer


def _copy(source: Store, destination: Store, run_id: str, lines: list[bytes], anchors: list[Anchor]) -> Transfer:
    size = sum(len(line) + 1 for line in lines)
    problems = list(verify_lines(lines, run_id, source.location(run_id), anchors=anchors))
    if problems:
        return Transfer(run_id, "damaged", len(lines), size, f"{problems[0]} (see 'runjournal verify')")
    if destination.exists(run_id):
        same = list(destination.raw_lines(run_id)) == lines
        outcome: Outcome = "unchanged" if same else "conflict"
        detail = None if same else f"{destination.location(run_id)} holds a different run with this id"
        return Transfer(run_id, outcome, len(lines), size, detail)
    try:
        destination.import_lines(run_id, lines)
    except JournalError as exc:
        if not destination.exists(run_id):
            raise
        return Transfer(run_id, "conflict", len(lines), size, str(exc))
    return Transfer(run_id, "copied", len(lines), size)
