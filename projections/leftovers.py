"""What a run left running: its in-flight units' process groups, found, stopped, and put in words.

A run whose writer is gone may still have work running: the commands its steps started.
The runner's watchdog stops them when the writer dies (``cli/engine/watchdog.py``), but a
reconciler or a canceller cannot take that on faith. :func:`stop_leftovers` looks for the
process group of every unit that was in flight (recorded in the journal when the unit
started), stops what still runs (identity-checked, see :mod:`runjournal.journal.processes`),
and looks for processes that carry the run's marker outside every recorded group: those
*escaped* their group on purpose and are reported, never signalled.

The result is evidence (:meth:`Leftovers.to_evidence`), recorded in the ``abandoned`` (or
``cancelled``) event, so the journal says what happened to the work, not only to the writer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from runjournal.journal.events import StepProcess
from runjournal.journal.processes import (
    GroupRecord,
    GroupStop,
    marked_processes,
    normalise_boot_id,
    observe_group,
    stop_groups,
)
from runjournal.journal.procfacts import boot_id, host_name
from runjournal.projections.state import RunState

STOP_GRACE = 1.0
"""Seconds between SIGTERM and SIGKILL for what a dead writer left running."""

STILL_RUNNING = frozenset({"alive", "not-permitted", "survived"})
"""Unit outcomes that mean processes of the run still run."""


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit of work the run left in flight: a step, or one item of a fan-out step."""

    step: str
    item: str | None
    process: StepProcess | None

    @property
    def label(self) -> str:
        """``step`` or ``step[item]``."""
        return unit_label(self.step, self.item)


@dataclass(slots=True)
class UnitWork:
    """What was found (and done) for one in-flight unit.

    ``outcome``: ``killed`` (found alive, stopped), ``alive`` (found alive, left alone: a
    look, not a stop), ``gone`` (nothing left), ``not-permitted`` (alive, another user's),
    ``survived`` (alive after SIGKILL), ``unchecked`` (no process recorded, another host,
    or not visible from here).
    """

    unit: Unit
    outcome: str
    pids: list[int] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)
    note: str | None = None

    def to_data(self) -> dict[str, Any]:
        """As evidence."""
        process = self.unit.process
        data: dict[str, Any] = {"step": self.unit.step, "item": self.unit.item, "outcome": self.outcome,
                                "pgid": process.pgid if process else None, "pids": self.pids,
                                "signals": self.signals}
        if self.note:
            data["note"] = self.note
        return data


@dataclass(slots=True)
class Leftovers:
    """Every in-flight unit's work, and the run's processes found outside its recorded groups."""

    units: list[UnitWork] = field(default_factory=list)
    escaped: list[dict[str, Any]] = field(default_factory=list)
    unreadable: int = 0

    @property
    def still_running(self) -> bool:
        """Whether some process of the run is alive and was not stopped."""
        return bool(self.escaped) or any(u.outcome in STILL_RUNNING for u in self.units)

    def running_units(self) -> set[tuple[str, str | None]]:
        """``(step, item)`` of every unit with a process still alive (escaped ones included)."""
        units = {(u.unit.step, u.unit.item) for u in self.units if u.outcome in STILL_RUNNING}
        return units | {(e["step"], e["item"]) for e in self.escaped if e["step"] is not None}

    def to_evidence(self) -> dict[str, Any]:
        """The evidence keys: ``work``, ``escaped``, ``still_running`` (see ``docs/liveness.md``)."""
        evidence: dict[str, Any] = {"work": [u.to_data() for u in self.units], "escaped": self.escaped,
                                    "still_running": self.still_running}
        if self.unreadable:
            evidence["environ_unreadable"] = self.unreadable
        return evidence


def in_flight(state: RunState) -> Iterator[Unit]:
    """The units ``state`` shows started and never ended."""
    for step in state.steps.values():
        if step.items:
            for item in step.items.values():
                if item.state == "started":
                    yield Unit(step.name, item.name, item.process)
        elif step.state == "started":
            yield Unit(step.name, None, step.process)


def stop_leftovers(state: RunState, *, grace: float = STOP_GRACE, stop: bool = True) -> Leftovers:
    """Find what the run's in-flight units left running and (``stop``) stop it; then look for escapees."""
    units = list(in_flight(state))
    here = _here(state)
    if here is not None:
        return Leftovers([UnitWork(u, "unchecked", note=here) for u in units])
    recorded = [u for u in units if u.process is not None]
    records = [GroupRecord.from_data(u.process.model_dump()) for u in recorded]  # type: ignore[union-attr]
    if stop:
        outcomes = [_from_stop(u, s) for u, s in zip(recorded, stop_groups(records, grace), strict=True)]
    else:
        outcomes = [_from_look(u, r) for u, r in zip(recorded, records, strict=True)]
    by_unit = {(w.unit.step, w.unit.item): w for w in outcomes}
    works = [by_unit.get((u.step, u.item)) or UnitWork(u, "unchecked", note="no process recorded") for u in units]
    escaped, unreadable = find_escaped(state)
    return Leftovers(works, escaped, unreadable)


def _here(state: RunState) -> str | None:
    """Why the run's processes cannot be looked at from this process (None: they can)."""
    writer = state.started.writer if state.started is not None else None
    if writer is None:
        return "no 'started' event"
    if writer.host != host_name():
        return f"written on host {writer.host}: its processes are not visible here"
    return None


def _from_stop(unit: Unit, stop: GroupStop) -> UnitWork:
    return UnitWork(unit, stop.outcome, sorted(stop.pids), list(stop.signals), stop.note)


def _from_look(unit: Unit, record: GroupRecord) -> UnitWork:
    facts = observe_group(record)
    return UnitWork(unit, facts.state, sorted(m.pid for m in facts.members), [], facts.note)


def find_escaped(state: RunState) -> tuple[list[dict[str, Any]], int]:
    """Live processes with the run's marker that are in none of its recorded groups, and how many
    processes could not be looked at (another user's environment)."""
    writer = state.started.writer if state.started is not None else None
    if writer is None or state.run_id is None or _here(state) is not None:
        return [], 0
    if normalise_boot_id(writer.boot_id) != normalise_boot_id(boot_id()):
        return [], 0
    groups = {p.pgid for p in _recorded(state)}
    if not groups:
        return [], 0  # no command of this run was started by a runner that marks them: nothing to find
    found, unreadable = marked_processes(state.run_id, not_before=writer.start_ticks)
    escaped = [{"pid": m.stat.pid, "pgid": m.stat.pgid, "start_ticks": m.stat.start_ticks, "step": m.step,
                "item": m.item} for m in found if m.stat.pgid not in groups]
    return escaped, unreadable


def _recorded(state: RunState) -> Iterator[StepProcess]:
    for step in state.steps.values():
        if step.process is not None:
            yield step.process
        yield from (i.process for i in step.items.values() if i.process is not None)


def unit_label(step: str | None, item: str | None) -> str:
    """``step``, ``step[item]``, or ``?`` for a process that names no step."""
    if step is None:
        return "?"
    return step if item is None else f"{step}[{item}]"


def conflicts(leftovers: Leftovers, skipped: set[tuple[str, str | None]]) -> tuple[list[str], list[int]]:
    """What still runs of the run, outside the units in ``skipped`` (``(step, item)``; ``item`` None for
    a whole step): one description per unit or escaped process, and their pids, for a refusal."""
    lines, pids = [], []
    for work in leftovers.units:
        if work.outcome in STILL_RUNNING and not _skipped(work.unit.step, work.unit.item, skipped):
            lines.append(f"{work.unit.label} (pids {', '.join(map(str, work.pids)) or '?'})")
            pids += work.pids
    for process in leftovers.escaped:
        if not _skipped(process["step"], process["item"], skipped):
            label = unit_label(process["step"], process["item"])
            lines.append(f"{label} (pid {process['pid']}, which left its process group)")
            pids.append(process["pid"])
    return lines, pids


def _skipped(step: str | None, item: str | None, skipped: set[tuple[str, str | None]]) -> bool:
    return step is not None and ((step, item) in skipped or (step, None) in skipped)


def describe(work: dict[str, Any]) -> str:
    """One unit's evidence (an entry of ``work``) in words."""
    pids = ", ".join(str(p) for p in work.get("pids") or [])
    found = f"pid {pids}" if "," not in pids else f"pids {pids}"
    outcome = work.get("outcome")
    if outcome == "killed":
        return f"{found} found running, stopped ({' then '.join(work.get('signals') or []) or 'signalled'})"
    if outcome == "gone":
        return "already gone" + (f" ({work['note']})" if work.get("note") else "")
    if outcome == "alive":
        return f"{found} still running"
    if outcome == "not-permitted":
        return f"{found} still running: cannot be stopped (another user's)"
    if outcome == "survived":
        return f"{found} still running after SIGKILL"
    return f"could not be checked: {work.get('note') or 'unknown'}"
