"""Pruning finished runs from the PostgreSQL store: a month whose every run goes loses its partition.

On a session of its own, which takes the lock of every run asked for (a writer, which
may still append late events, or a reconciler holds it: ``locked``), then, holding them,
checks each run against its lines (a terminal event among its rows: else ``unfinished``) and
deletes the finished ones in one transaction. For each month, if every run of the month
goes, its ``rj_events`` partition is dropped (no dead rows, no vacuum); otherwise the
month's rows are deleted. Closing the session releases the locks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from runjournal.journal.ids import validate_run_id
from runjournal.journal.postgres.conn import connect, translate_errors
from runjournal.journal.postgres.schema import lock_key, month_of, next_month, partition_name
from runjournal.journal.status import TERMINAL_TYPES
from runjournal.journal.store import Pruned

if TYPE_CHECKING:
    from runjournal.journal.postgres.store import PgStore

LOCK_SQL = """
SELECT k.run_id, pg_try_advisory_lock(k.key)
FROM unnest(%(run_ids)s::text[], %(keys)s::bigint[]) AS k (run_id, key)
JOIN rj_runs r ON r.run_id = k.run_id
"""
"""Take the lock of each run that exists (the runs not listed are missing)."""

FINISHED_SQL = """
SELECT k.run_id FROM unnest(%(run_ids)s::text[]) AS k (run_id)
WHERE EXISTS (SELECT 1 FROM rj_events e WHERE e.run_id = k.run_id AND e.type = ANY(%(terminal)s))
"""
"""The runs with a terminal event among their lines (the truth, not the summary)."""

MONTH_COUNT_SQL = "SELECT count(*) FROM rj_runs WHERE run_id >= %s AND run_id < %s"

DROP_LOCK_TIMEOUT = "5s"
"""How long dropping a partition waits for its lock before the month's rows are deleted instead."""


def prune_runs(store: PgStore, run_ids: Collection[str]) -> list[Pruned]:
    """Delete the finished, unlocked runs of ``run_ids`` (see the module docstring); one outcome per run."""
    ids = sorted({validate_run_id(run_id) for run_id in run_ids})
    if not ids:
        return []
    store.connection  # noqa: B018 - the schema, checked
    conn = connect(store.url, application_name="runjournal prune")
    try:
        with translate_errors(store.where):
            outcomes = _lock_and_check(conn, ids)
            doomed = [run_id for run_id, outcome in outcomes.items() if outcome == "pruned"]
            if doomed:
                _delete(conn, doomed)
                store.forget_partitions()
    finally:
        conn.close()  # releases every lock taken
    return [Pruned(run_id, outcomes.get(run_id, "missing")) for run_id in ids]


def _lock_and_check(conn: Any, ids: list[str]) -> dict[str, str]:
    keys = [lock_key("run", run_id) for run_id in ids]
    locked = conn.execute(LOCK_SQL, {"run_ids": ids, "keys": keys}).fetchall()
    outcomes = {run_id: ("pruned" if got else "locked") for run_id, got in locked}
    held = [run_id for run_id, got in locked if got]
    if held:
        finished = {row[0] for row in conn.execute(
            FINISHED_SQL, {"run_ids": held, "terminal": sorted(TERMINAL_TYPES)}).fetchall()}
        outcomes |= {run_id: "unfinished" for run_id in held if run_id not in finished}
    return outcomes


def _delete(conn: Any, doomed: list[str]) -> None:
    """In one transaction: drop the partitions of months pruned whole, delete the other rows."""
    by_month: dict[str | None, list[str]] = defaultdict(list)
    for run_id in doomed:
        by_month[month_of(run_id)].append(run_id)
    with conn.transaction():
        rows_left = list(doomed)
        for month, members in by_month.items():
            if month is not None and _drop_month(conn, month, len(members)):
                rows_left = [run_id for run_id in rows_left if month_of(run_id) != month]
        if rows_left:
            conn.execute("DELETE FROM rj_events WHERE run_id = ANY(%s)", (rows_left,))
        conn.execute("DELETE FROM rj_folds WHERE run_id = ANY(%s)", (doomed,))
        conn.execute("DELETE FROM rj_runs WHERE run_id = ANY(%s)", (doomed,))


def _drop_month(conn: Any, month: str, pruned: int) -> bool:
    """Drop ``month``'s partition if every run of the month is among the ``pruned`` ones; whether it was dropped."""
    name = partition_name(month)
    if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is None:
        return False
    if conn.execute(MONTH_COUNT_SQL, (month, next_month(month))).fetchone()[0] != pruned:
        return False
    try:
        with conn.transaction():  # a savepoint: a lock timeout keeps the rest
            conn.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'")
            conn.execute(f'DROP TABLE "{name}"')
    except Exception as exc:  # noqa: BLE001
        if getattr(exc, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        return False
    return True
