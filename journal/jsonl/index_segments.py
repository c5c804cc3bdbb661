"""The finished runs of the history index: segments loaded as they are reached, changes kept until saved.

:class:`SegmentSet` answers for the segments a manifest names
(:mod:`~runjournal.journal.jsonl.index_files`): their runs newest first, one run's entry,
the runs of one segment (for the sweep), which listed runs are new or gone (reading only the
segments whose count or fingerprint no longer matches). Changes (:meth:`SegmentSet.put`) are
written by :meth:`SegmentSet.save` as new segment files: a segment that grew past twice
:data:`~runjournal.journal.jsonl.index_files.SEGMENT_RUNS` is split, an emptied one dropped.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from runjournal.journal.jsonl.index_files import (
    SEGMENT_RUNS,
    Segment,
    fingerprint,
    load_segment,
    new_segment_name,
    parse_entry,
    write_segment,
)

_MASK = (1 << 64) - 1


class SegmentSet:
    """The segments of one manifest, and the changes to them (see the module docstring)."""

    def __init__(self, directory: Path, segments: list[Segment]) -> None:
        self.directory = directory
        self.segments = list(segments)
        self._lows = [s.low for s in self.segments]
        self._loaded: dict[int, dict[str, bytes]] = {}
        self._changes: dict[str, bytes | None] = {}
        self._lost: dict[int, bool] = {}

    @property
    def count(self) -> int:
        """How many runs the segments hold (as the manifest says)."""
        return sum(s.count for s in self.segments)

    # ---- reading ------------------------------------------------------------------------

    def _position(self, run_id: str) -> int:
        return max(0, bisect.bisect_right(self._lows, run_id) - 1)

    def _load(self, position: int) -> dict[str, bytes]:
        loaded = self._loaded.get(position)
        if loaded is None:
            pairs = load_segment(self.directory, self.segments[position].name)
            self._lost[position] = pairs is None
            loaded = self._loaded[position] = dict(pairs or ())
        return loaded

    def lost(self, position: int) -> bool:
        """Whether the segment's file turned out to be gone or damaged (its runs must be found by listing)."""
        self._load(position)
        return self._lost[position]

    def newest_first(self) -> Iterator[tuple[str, bytes | None]]:
        """Every run in the segments, newest first, as ``(run_id, entry line)`` (the line changed, if it was).

        Raises :class:`LostSegment` on reaching a segment whose file is gone or damaged.
        """
        changes = self._changes
        for position in range(len(self.segments) - 1, -1, -1):
            loaded = self._load(position)
            if self._lost[position]:
                raise LostSegment(position)
            if changes:
                yield from ((run_id, changes.get(run_id, line)) for run_id, line in loaded.items())
            else:
                yield from loaded.items()

    def entry(self, run_id: str) -> list[Any] | None:
        """The saved (or changed) entry of ``run_id``, parsed; None if it has none."""
        if run_id in self._changes:
            line = self._changes[run_id]
        elif not self.segments:
            return None
        else:
            line = self._load(self._position(run_id)).get(run_id)
        return None if line is None else parse_entry(line, run_id)

    def ids_at(self, position: int) -> list[str]:
        """The run ids of the segment at ``position`` (for the sweep)."""
        return list(self._load(position))

    def range_of(self, position: int) -> tuple[str, str | None]:
        """The ids segment ``position`` stands for: ``[low, next segment's low)``."""
        upper = self._lows[position + 1] if position + 1 < len(self._lows) else None
        return ("" if position == 0 else self._lows[position]), upper

    def diff(self, listed: Iterable[str]) -> tuple[set[str], set[str]]:
        """``(new, gone)``: listed ids no segment holds, and held ids no longer listed.

        A segment whose listed ids have its count and fingerprint is taken as is; only the
        others are read.
        """
        groups: dict[int, list[str]] = {}
        for run_id in listed:
            groups.setdefault(self._position(run_id) if self.segments else -1, []).append(run_id)
        new: set[str] = set(groups.pop(-1, ()))
        gone: set[str] = set()
        for position, segment in enumerate(self.segments):
            ids = groups.get(position, [])
            if len(ids) == segment.count and sum(map(fingerprint, ids)) & _MASK == segment.fp:
                continue
            held, listed_here = self._load(position), set(ids)
            new.update(r for r in ids if r not in held)
            gone.update(r for r in held if r not in listed_here)
        return new, gone

    # ---- changing -----------------------------------------------------------------------

    def put(self, run_id: str, line: bytes | None) -> None:
        """Record ``run_id``'s new entry (None: it has none here any more), written by :meth:`save`."""
        self._changes[run_id] = line

    @property
    def changed(self) -> bool:
        """Whether :meth:`save` has anything to write."""
        return bool(self._changes) or any(self._lost.values())

    def all_present(self) -> bool:
        """Whether every segment file the manifest names exists (one ``stat`` each)."""
        return all((self.directory / s.name).exists() for s in self.segments)

    def save(self) -> list[Segment]:
        """Write the segments that changed (new files) and return the manifest's new segment list."""
        if not self._changes and not any(self._lost.values()):
            return self.segments
        touched: dict[int, dict[str, bytes | None]] = {}
        for run_id, line in self._changes.items():
            touched.setdefault(self._position(run_id) if self.segments else 0, {})[run_id] = line
        result: list[Segment] = []
        for position in range(max(len(self.segments), 1)):
            if position not in touched and not self._lost.get(position):
                if position < len(self.segments):
                    result.append(self.segments[position])
                continue
            runs = dict(self._load(position)) if position < len(self.segments) else {}
            for run_id, line in touched.get(position, {}).items():
                if line is None:
                    runs.pop(run_id, None)
                else:
                    runs[run_id] = line
            result.extend(self._write(runs))
        self._changes.clear()
        return result

    def _write(self, runs: dict[str, bytes]) -> list[Segment]:
        """New segment files for ``runs`` (split into :data:`SEGMENT_RUNS` if too many), ascending."""
        ordered = sorted(runs, reverse=True)
        if not ordered:
            return []
        size = SEGMENT_RUNS if len(ordered) > 2 * SEGMENT_RUNS else len(ordered)
        chunks = [ordered[i : i + size] for i in range(0, len(ordered), size)]
        made = []
        for chunk in reversed(chunks):  # ascending, as the manifest lists them
            name = new_segment_name()
            write_segment(self.directory, name, [runs[r] for r in chunk])
            made.append(Segment(chunk[-1], chunk[0], name, len(chunk), sum(map(fingerprint, chunk)) & _MASK))
        return made


class LostSegment(Exception):
    """A segment the manifest names cannot be read: the index is rebuilt from a listing."""

    def __init__(self, position: int) -> None:
        super().__init__(f"segment {position} is gone or damaged")
        self.position = position
