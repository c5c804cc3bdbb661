"""Reconciliation: record ``abandoned`` for runs whose writer is gone, and read runs with it done.

:func:`reconcile_run` judges a run from outside its lock first (cheap, no write), and only
when the verdict is ``dead`` (or an operator forces an ``unknown`` run) takes the run's
lock, re-reads the run and re-judges it under the lock before it appends anything. So two
reconcilers never both append (the second finds the lock taken, or the run terminal), a
live writer is never abandoned (it holds the lock), and reconciling twice changes no byte.

:func:`current_state` is what every status-showing command calls: the folded state, with
orphans reconciled first; on a read-only journal it returns the derived verdict instead
(shown as ``abandoned?``), writing nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from runjournal.journal.errors import (
    CorruptLineError,
    FsyncFailedError,
    JournalError,
    JournalWriteError,
    NotReconcilableError,
    RunLockedError,
    ShortWriteError,
    WriterClosedError,
    is_read_only_error,
)
from runjournal.journal.identity import checker_identity
from runjournal.journal.readmodel import Folded
from runjournal.journal.status import DAMAGED, DERIVED_ABANDONED
from runjournal.journal.store import LockedRun, Store
from runjournal.projections.fold import fold_into
from runjournal.projections.leftovers import stop_leftovers
from runjournal.projections.liveness import (
    DEFAULT_LEASE_INTERVALS,
    Verdict,
    judge,
    no_writer_verdict,
    operator_verdict,
)
from runjournal.projections.state import RunState
from runjournal.projections.summary import PROJECTOR

Action = Literal["abandoned", "would-abandon", "alive", "unknown", "terminal", "busy", "read-only"]
"""What reconciling a run did (or, with ``dry_run``, would do):

``abandoned``: appended ``abandoned``; ``would-abandon``: dry run of that; ``alive``: the
writer lives; ``unknown``: cannot tell (another host within its lease, a lock held by
someone other than the recorded process, or no ``started`` event), reported, not written;
``terminal``: already ended, nothing to do; ``busy``: a live writer or another reconciler
holds the lock; ``read-only``: should be abandoned but the journal cannot be written.
"""


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """The outcome for one run: the action, the verdict behind it, and the state after it."""

    run_id: str
    action: Action
    verdict: Verdict | None
    state: RunState


@dataclass(frozen=True, slots=True)
class CurrentState:
    """A run as a status-showing command should present it.

    ``derived`` is the liveness verdict of a run that is still non-terminal in its journal
    (None for terminal or empty runs). ``error`` is set when the run could not be read or
    reconciled (the state is then what could be folded before the problem). ``damage`` is
    the first bad line of a damaged run: ``state`` is the fold of the lines before it.
    """

    run_id: str
    state: RunState
    derived: Verdict | None = None
    action: Action | None = None
    error: JournalError | OSError | None = None
    damage: CorruptLineError | None = None

    @property
    def status(self) -> str:
        """The status to show: ``damaged``, the folded one, or ``abandoned?`` for a dead writer not yet recorded."""
        if self.damage is not None:
            return DAMAGED
        if not self.state.is_terminal and self.derived is not None and self.derived.dead:
            return DERIVED_ABANDONED
        return self.state.status

    @property
    def reason(self) -> str | None:
        """The terminal event's reason, or the derived verdict's for ``abandoned?``."""
        if self.state.is_terminal:
            return self.state.reason
        if self.derived is not None and self.derived.reason is not None:
            return self.derived.reason.value
        return None


LOCK_ATTEMPTS = 40
"""How often to try for the lock of a dead writer's run before reporting ``busy``: another
reader's momentary lock probe, or another reconciler at work, must not make an orphan look
busy."""

OUTLIVED_LOCK_ATTEMPTS = 4
"""The same when the recorded process is gone but its lock was held when we looked: most
likely a reconciler finishing (a millisecond's work); a child that inherited the lock may
hold it for hours, and each read of that run should not wait long for it."""

_LOCK_BACKOFF_SECONDS = 0.005


def _utc_now() -> datetime:
    return datetime.now(UTC)


def fold_run(store: Store, run_id: str, known: Folded | None = None) -> Folded:
    """Fold ``run_id`` from its start, or only the events after ``known`` onto ``known.state`` (which it updates).

    Resuming from a cursor checks that the new lines continue the hash chain there, as
    every incremental read does; a long run is then read once however often it is judged.
    From the start, the store projects the run (:meth:`Store.project`: a run verified
    before is not checked again). Raises the first bad line's error.
    """
    if known is None:
        projection = store.project(run_id, PROJECTOR)
        if projection.damage is not None:
            raise projection.damage
        return Folded(projection.state, projection.cursor)
    reader = store.read(run_id, known.cursor)
    state = fold_into(known.state, reader.events())
    return Folded(state, reader.cursor)


def reconcile_run(
    store: Store,
    run_id: str,
    *,
    dry_run: bool = False,
    operator: str | None = None,
    now: datetime | None = None,
    lease_intervals: float = DEFAULT_LEASE_INTERVALS,
    known: Folded | None = None,
) -> ReconcileResult:
    """Reconcile one run: append ``abandoned`` if (and only if) its writer is dead.

    ``operator`` is the operator's reason text: with it, a run whose liveness is
    ``unknown`` is abandoned with reason ``operator`` (a run whose writer is alive never
    is). ``now`` is the reader's clock for cross-host leases (default: now). ``known`` is a
    fold of the run the caller hands over (only later events are read). Raises
    :class:`JournalError` for a run that cannot be read (corrupt, missing).
    """
    moment = now or _utc_now()
    folded = fold_run(store, run_id, known)
    state = folded.state
    if state.is_terminal:
        return ReconcileResult(run_id, "terminal", None, state)
    if state.started is None:
        return ReconcileResult(run_id, "unknown", no_writer_verdict(), state)
    verdict = judge(state, store.writer_facts(run_id, state.started.writer), moment, lease_intervals)
    wanted = _wanted(verdict, operator)
    if dry_run or (wanted is None and not _lock_outlived_writer(verdict)):
        return ReconcileResult(run_id, _report_action(verdict, wanted), wanted or verdict, state)
    # Either the writer is dead, or it is gone while someone (another reconciler, most
    # likely) holds its lock: wait briefly for that lock; holding it, everything is re-judged.
    attempts = LOCK_ATTEMPTS if wanted is not None else OUTLIVED_LOCK_ATTEMPTS
    return _with_lock(store, run_id, folded, (verdict, wanted), attempts, operator, moment, lease_intervals)


def _with_lock(
    store: Store, run_id: str, folded: Folded, verdicts: tuple[Verdict, Verdict | None], attempts: int,
    operator: str | None, now: datetime, lease_intervals: float,
) -> ReconcileResult:
    """Try for the run's lock ``attempts`` times and reconcile under it; else ``busy`` (or ``terminal``).

    ``verdicts`` are the verdict judged without the lock and the one to record (if any).
    """
    verdict, wanted = verdicts
    for attempt in range(attempts):
        try:
            with store.locked_run(run_id, resume=folded.cursor) as locked:
                return _reconcile_locked(store, run_id, locked, folded, operator, (now, lease_intervals))
        except RunLockedError:
            folded = fold_run(store, run_id, folded)
            if folded.state.is_terminal:
                return ReconcileResult(run_id, "terminal", None, folded.state)
            if attempt + 1 < attempts:
                time.sleep(_LOCK_BACKOFF_SECONDS)
        except OSError as exc:
            if is_read_only_error(exc):
                return ReconcileResult(run_id, "read-only", wanted or verdict, folded.state)
            raise
    return ReconcileResult(run_id, "busy", verdict, folded.state)


def _lock_outlived_writer(verdict: Verdict) -> bool:
    """Whether the recorded process is gone (same host) but the run's lock is still held."""
    ev = verdict.evidence
    return ev.get("pid_state") in ("gone", "zombie", "reused") and ev.get("lock") == "held"


def _wanted(verdict: Verdict, operator: str | None) -> Verdict | None:
    """The verdict to record, if any: a dead writer's, or the operator's for an unknown one."""
    if verdict.dead:
        return verdict
    if verdict.liveness == "unknown" and operator is not None:
        return operator_verdict(verdict, operator, _operator_name())
    return None


def _report_action(verdict: Verdict, wanted: Verdict | None) -> Action:
    if wanted is not None:
        return "would-abandon"
    if verdict.liveness == "unknown" and verdict.evidence.get("lock") == "held":
        return "busy"
    return "alive" if verdict.liveness == "alive" else "unknown"


def _reconcile_locked(
    store: Store, run_id: str, locked: LockedRun, folded: Folded, operator: str | None,
    clock: tuple[datetime, float],
) -> ReconcileResult:
    """Holding the lock: read what was appended since ``folded``, re-judge, append ``abandoned`` if still dead."""
    now, lease_intervals = clock
    state = fold_into(folded.state, locked.events(after=folded.cursor))
    if state.is_terminal:
        return ReconcileResult(run_id, "terminal", None, state)
    if state.started is None:
        return ReconcileResult(run_id, "unknown", no_writer_verdict(), state)
    # Holding the lock proves nobody else does; the pid facts must still say dead.
    facts = store.writer_facts(run_id, state.started.writer, lock_held=False)
    verdict = judge(state, facts, now, lease_intervals)
    wanted = _wanted(verdict, operator)
    if wanted is None or wanted.reason is None:
        return ReconcileResult(run_id, _report_action(verdict, None), verdict, state)
    # Abandoned means stopped: what the dead writer's units left running is stopped first,
    # and the evidence says, unit by unit, what was found.
    wanted = replace(wanted, evidence=wanted.evidence | stop_leftovers(state).to_evidence())
    try:
        event = locked.append_abandoned(
            reason=wanted.reason, evidence=wanted.evidence, checker=checker_identity(), last_seq=state.last_seq
        )
    except NotReconcilableError:
        return ReconcileResult(run_id, "terminal", None, state)
    return ReconcileResult(run_id, "abandoned", wanted, fold_into(state, [event]))


_WRITE_ERRORS = (JournalWriteError, FsyncFailedError, ShortWriteError, WriterClosedError)


def current_state(
    store: Store,
    run_id: str,
    *,
    reconcile: bool = True,
    now: datetime | None = None,
    lease_intervals: float = DEFAULT_LEASE_INTERVALS,
    known: Folded | None = None,
) -> CurrentState:
    """The run's state for display, reconciling it first if its writer is dead.

    With ``reconcile=False`` nothing is written, but a non-terminal run still carries its
    derived verdict. A journal that cannot be written gives the derived verdict too
    (status ``abandoned?``). A journal with a bad line after a verified prefix is shown as
    that prefix, ``damaged`` and never reconciled. ``known``: a fold of the run the caller
    hands over, so only later events are read. Raises :class:`JournalError` if nothing of
    the run can be read.
    """
    moment = now or _utc_now()
    if not reconcile:
        return _derived_only(store, run_id, moment, lease_intervals)
    try:
        result = reconcile_run(store, run_id, now=moment, lease_intervals=lease_intervals, known=known)
    except CorruptLineError:
        return _derived_only(store, run_id, moment, lease_intervals)
    except _WRITE_ERRORS as exc:
        # Disk full, failed fsync ...: a read must still show the run, with the verdict and the error.
        return replace(_derived_only(store, run_id, moment, lease_intervals), error=exc)
    state = result.state
    derived = result.verdict if not state.is_terminal and state.started is not None else None
    return CurrentState(run_id, state, derived, result.action)


def _derived_only(store: Store, run_id: str, now: datetime, lease_intervals: float) -> CurrentState:
    state, damage = verified_prefix(store, run_id)
    if state.is_terminal or state.started is None:
        return CurrentState(run_id, state, damage=damage)
    verdict = judge(state, store.writer_facts(run_id, state.started.writer), now, lease_intervals)
    return CurrentState(run_id, state, verdict, damage=damage)


def verified_prefix(store: Store, run_id: str) -> tuple[RunState, CorruptLineError | None]:
    """The fold of every line before the first bad one, and that bad line's error (None: no bad line).

    Raises the error itself when not even the first line verifies (nothing to show).
    """
    projection = store.project(run_id, PROJECTOR)
    if projection.damage is not None and projection.state.events == 0:
        raise projection.damage
    return projection.state, projection.damage


def _operator_name() -> str:
    checker = checker_identity()
    return f"{checker.user}@{checker.host}"
