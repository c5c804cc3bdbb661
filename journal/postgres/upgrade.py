"""Upgrading a database made by runjournal 0.2 (schema 1) to schema 2, in place, in one transaction.

Schema 1 kept every event in one unpartitioned ``rj_events`` (with a notify trigger), a bare
``rj_runs`` and a ``rj_folds`` cache. The upgrade renames the old tables aside, creates
schema 2, creates the month partitions the run ids need, copies every line as it is
(byte for byte: the hash chains are untouched), builds each run's row (its head, the anchor,
from its last line; its status by the status table; its workflow and start from its
``started`` line; the summary left for the first ``history`` to fold, once), and drops the
old tables. It refuses while runjournal writers of schema 1 are connected, and locks the old
tables against any that connect meanwhile. Anything failing rolls the whole upgrade back.
"""

from __future__ import annotations

from typing import Any

from runjournal.journal.errors import StoreUnavailableError
from runjournal.journal.postgres.conn import connect, translate_errors
from runjournal.journal.postgres.schema import SCHEMA_LOCK_KEY, SCHEMA_STATE_SQL, SCHEMA_VERSION, schema_sql
from runjournal.journal.status import TERMINAL_TYPES

WRITERS_SQL = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name LIKE 'runjournal writer %'
"""

RENAME_SQL = """
LOCK TABLE rj_runs, rj_events IN ACCESS EXCLUSIVE MODE;
DROP TRIGGER IF EXISTS rj_events_notify ON rj_events;
DROP FUNCTION IF EXISTS rj_notify_event();
DROP TABLE IF EXISTS rj_folds;
ALTER TABLE rj_events RENAME TO rj_events_v1;
ALTER INDEX rj_events_pkey RENAME TO rj_events_v1_pkey;
ALTER TABLE rj_runs RENAME TO rj_runs_v1;
ALTER INDEX rj_runs_pkey RENAME TO rj_runs_v1_pkey;
"""

MONTHS_SQL = """
SELECT DISTINCT substring(run_id FROM '^[0-9]{4}(?:0[1-9]|1[0-2])') AS month FROM rj_runs_v1
"""

COPY_SQL = f"""
INSERT INTO rj_events (run_id, seq, type, received_at, line)
SELECT run_id, seq, type, received_at, line FROM rj_events_v1;
INSERT INTO rj_runs (run_id, created_at, head_seq, head_hash, head_offset, received_at, status, workflow, started_at)
SELECT r.run_id, r.created_at, h.seq, convert_from(h.line, 'UTF8')::jsonb ->> 'h',
       (SELECT sum(octet_length(e.line) + 1) FROM rj_events_v1 e WHERE e.run_id = r.run_id), h.received_at,
       coalesce((SELECT e.type FROM rj_events_v1 e WHERE e.run_id = r.run_id
                 AND e.type IN ({", ".join(f"'{t}'" for t in sorted(TERMINAL_TYPES))}) ORDER BY e.seq LIMIT 1), 'running'),
       convert_from(s.line, 'UTF8')::jsonb ->> 'workflow',
       (convert_from(s.line, 'UTF8')::jsonb ->> 'ts')::timestamptz
FROM rj_runs_v1 r
JOIN LATERAL (SELECT seq, line, received_at FROM rj_events_v1 WHERE run_id = r.run_id ORDER BY seq DESC LIMIT 1) h ON true
LEFT JOIN rj_events_v1 s ON s.run_id = r.run_id AND s.seq = 0;
DROP TABLE rj_events_v1;
DROP TABLE rj_runs_v1;
UPDATE rj_meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema_version';
"""
"""Every terminal event type is named after the status it ends a run with, so the first one is the status."""


def upgrade(url: str, where: str) -> str:
    """Upgrade the database at ``url`` to the current schema; return what was done, in one line."""
    conn = connect(url, application_name="runjournal upgrade")
    try:
        with translate_errors(where), conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            state = conn.execute(SCHEMA_STATE_SQL).fetchall()
            if not state:
                conn.execute(schema_sql())
                return f"{where}: created schema {SCHEMA_VERSION}"
            if state[0] == ("p", str(SCHEMA_VERSION)):
                return f"{where}: already at schema {SCHEMA_VERSION}, nothing to do"
            if state[0][0] != "r":
                raise StoreUnavailableError(f"{where}: unknown runjournal schema ({state[0]}); not upgraded")
            return _from_v1(conn, where)
    finally:
        conn.close()


def _from_v1(conn: Any, where: str) -> str:
    writers = conn.execute(WRITERS_SQL).fetchone()[0]
    if writers:
        raise StoreUnavailableError(
            f"{where}: {writers} runjournal writer session(s) of the old version are connected; "
            "let their runs end (or stop them), then upgrade"
        )
    conn.execute(RENAME_SQL)
    conn.execute(schema_sql())
    months = [row[0] for row in conn.execute(MONTHS_SQL).fetchall() if row[0] is not None]
    for month in months:
        conn.execute("SELECT rj_ensure_partition(%s)", (month,))
    conn.execute(COPY_SQL)
    runs, events = conn.execute("SELECT (SELECT count(*) FROM rj_runs), (SELECT count(*) FROM rj_events)").fetchone()
    return (f"{where}: upgraded schema 1 to {SCHEMA_VERSION}: {runs} run(s), {events} event(s) copied, "
            f"{len(months)} month partition(s); summaries are folded by the next 'history'")
