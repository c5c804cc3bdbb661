"""Retention: archive finished runs (optionally), verify the archive, then delete them from the store.

:func:`prune_candidates` picks the runs: those ``history`` lists as finished, started before a
date (orphans are reconciled on the way, so a run whose writer died long ago is recorded
``abandoned`` and goes too). :func:`prune` archives each one first when asked, exactly as
``export`` copies it (its lines byte for byte, after checking the chain and the anchor),
reads the archive's copy back and compares it with the source, and only then lets the store
delete the run (:meth:`~runjournal.journal.store.Store.prune`), which deletes only runs that
are finished and that nobody holds the lock of. A run whose archive failed is kept.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from runjournal.journal.errors import SameStoreError
from runjournal.journal.readmodel import HistoryQuery
from runjournal.journal.status import DERIVED_ABANDONED, TERMINAL_STATUSES
from runjournal.journal.store import Store
from runjournal.projections.history import history_rows
from runjournal.projections.transfer import copy_lines

Outcome = Literal["pruned", "would-prune", "unfinished", "locked", "missing", "conflict", "damaged", "unverified"]
"""What happened to one run: ``pruned``; ``would-prune`` (dry run); kept because it is
``unfinished``, ``locked`` (its writer or a reconciler holds it) or ``missing``; or because its
archive failed: ``conflict`` (the archive holds another run under its id), ``damaged`` (it does
not verify) or ``unverified`` (the archive's copy read back differs)."""

FAILURES = frozenset({"conflict", "damaged", "unverified"})


@dataclass(frozen=True, slots=True)
class PruneResult:
    """The outcome for one run, with why when it was kept."""

    run_id: str
    outcome: Outcome
    detail: str | None = None


def prune_candidates(
    store: Store, before: datetime, statuses: frozenset[str] | None = None, *, reconcile: bool = True,
    lease_intervals: float | None = None,
) -> list[str]:
    """The runs started before ``before`` that ``history`` shows finished (in ``statuses``, if given), oldest first.

    With ``reconcile=False`` (a dry run) nothing is written, and a run whose writer is gone
    (shown ``abandoned?``) counts as the ``abandoned`` run reconciling would record.
    ``lease_intervals``: see :func:`~runjournal.projections.history.history_rows`.
    """
    query = HistoryQuery(statuses=statuses or TERMINAL_STATUSES, until=before)
    finished = TERMINAL_STATUSES if reconcile else TERMINAL_STATUSES | {DERIVED_ABANDONED}
    rows = history_rows(store, query, reconcile=reconcile, lease_intervals=lease_intervals)
    ids = [row.summary.run_id for row in rows if row.status in finished]
    return sorted(ids)


def prune(
    store: Store,
    run_ids: list[str],
    *,
    archive: Store | None = None,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[PruneResult]:
    """Archive (when ``archive`` is given) and verify each run, then delete those that archived cleanly.

    Raises :class:`~runjournal.journal.errors.SameStoreError` if ``archive`` is ``store``
    itself (however named): every run would be found "already archived" and lost.
    """
    if archive is not None:
        check_archive(store, archive)
    results: dict[str, PruneResult] = {}
    ready: list[str] = []
    for index, run_id in enumerate(run_ids):
        if progress is not None:
            progress(index, len(run_ids))
        kept = _archive(store, archive, run_id) if archive is not None and not dry_run else None
        if kept is not None:
            results[run_id] = kept
        else:
            ready.append(run_id)
    if dry_run:
        results |= {run_id: PruneResult(run_id, "would-prune") for run_id in ready}
    else:
        for pruned in store.prune(ready):
            results[pruned.run_id] = PruneResult(pruned.run_id, pruned.outcome)
            if pruned.outcome == "pruned":
                _remove_side_files(store, pruned.run_id)
    return [results[run_id] for run_id in run_ids]


def check_archive(store: Store, archive: Store) -> None:
    """Raise :class:`~runjournal.journal.errors.SameStoreError` if ``archive`` is ``store`` itself, however named."""
    if archive.identity() == store.identity():
        raise SameStoreError(f"the archive {archive.where} is the store being pruned; archive to another directory "
                             "or database")


def _archive(store: Store, archive: Store, run_id: str) -> PruneResult | None:
    """Copy ``run_id`` to ``archive`` and compare the copy read back (an ``unchanged`` one was compared
    as it was found); None when it is safely there."""
    copied = copy_lines(store, archive, run_id, read_back=True)
    if copied.outcome not in ("copied", "unchanged"):
        return PruneResult(run_id, copied.outcome if copied.outcome in FAILURES else "damaged", copied.detail)
    return None


def _remove_side_files(store: Store, run_id: str) -> None:
    """This host's step logs and a stale cancel request of a pruned run (other hosts keep theirs)."""
    side = store.side_files
    shutil.rmtree(side.log_dir(run_id), ignore_errors=True)
    side.cancel_request(run_id).unlink(missing_ok=True)
