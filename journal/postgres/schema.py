"""The PostgreSQL store's tables, statements, lock keys and connection settings (see ``docs/postgres.md``).

Kept apart from the store so the layout can be read (and documented) in one place.
Nothing here imports psycopg.

Schema 2 (this module) keeps one row per run in ``rj_runs``: the run's **head** (its last
seq and that line's hash, written by every append in the append's own statement: the
anchor ``verify`` checks the lines against), the server's clock at that append, and the
run's **summary** (what ``history`` lists, kept current by writers that were given the
projector, else folded forward by readers). ``rj_events`` is partitioned by the month in
the run id (``rj_events_m202601`` holds the runs ``202601...``; ids without a month go to
``rj_events_other``), so pruning a month drops a partition.
"""

from __future__ import annotations

import hashlib
import math
import re
from urllib.parse import unquote, urlsplit, urlunsplit

from runjournal.journal.status import TERMINAL_STATUSES

SCHEMA_VERSION = 2

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS rj_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS rj_runs (
    run_id text COLLATE "C" PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    head_seq integer NOT NULL,
    head_hash text NOT NULL,
    head_offset bigint NOT NULL,
    received_at timestamptz NOT NULL,
    folded_seq integer,
    status text COLLATE "C",
    workflow text COLLATE "C",
    started_at timestamptz,
    damaged boolean NOT NULL DEFAULT false,
    summary text
) WITH (fillfactor = 80);
CREATE INDEX IF NOT EXISTS rj_runs_status ON rj_runs (status, run_id);
CREATE INDEX IF NOT EXISTS rj_runs_workflow ON rj_runs (workflow, run_id);
CREATE INDEX IF NOT EXISTS rj_runs_started ON rj_runs (started_at);
CREATE INDEX IF NOT EXISTS rj_runs_damaged ON rj_runs (run_id) WHERE damaged;
CREATE TABLE IF NOT EXISTS rj_events (
    run_id text COLLATE "C" NOT NULL,
    seq integer NOT NULL CHECK (seq >= 0),
    type text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    line bytea NOT NULL,
    PRIMARY KEY (run_id, seq)
) PARTITION BY RANGE (run_id);
CREATE TABLE IF NOT EXISTS rj_events_other PARTITION OF rj_events DEFAULT;
CREATE TABLE IF NOT EXISTS rj_folds (
    run_id text COLLATE "C" PRIMARY KEY,
    last_seq integer NOT NULL,
    last_hash text NOT NULL,
    byte_offset bigint NOT NULL,
    state text NOT NULL
);
CREATE OR REPLACE FUNCTION rj_ensure_partition(month text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    name text := 'rj_events_m' || month;
    next text := to_char(to_date(month, 'YYYYMM') + interval '1 month', 'YYYYMM');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN true;
    END IF;
    PERFORM pg_advisory_xact_lock(%(partition_lock)s);
    IF to_regclass(name) IS NOT NULL THEN
        RETURN true;
    END IF;
    PERFORM set_config('lock_timeout', '2s', true);
    EXECUTE format('CREATE TABLE %%I PARTITION OF rj_events FOR VALUES FROM (%%L) TO (%%L)', name, month, next);
    RETURN true;
EXCEPTION
    WHEN duplicate_table OR unique_violation THEN
        -- Another writer created it first (the advisory lock does not refresh the catalog
        -- this statement sees, so both can get here): it exists, which is all we want.
        RETURN true;
    WHEN lock_not_available OR check_violation THEN
        -- A long reader (a dump) holds the table, or the default partition already has runs of
        -- this month: the runs go to rj_events_other, which is correct, only slower to prune.
        RETURN false;
END $$;
INSERT INTO rj_meta (key, value) VALUES ('schema_version', '2') ON CONFLICT (key) DO NOTHING;
COMMENT ON TABLE rj_events IS 'runjournal schema 2';
"""
"""Idempotent DDL (``%(partition_lock)s`` is filled in by :func:`schema_sql`).

``rj_events.line`` is the event's exact JSONL line without its newline, so an export is
byte-identical to the JSONL store's file. ``received_at`` is the server's clock when the row
was written: liveness is judged on it (through ``rj_runs.received_at``), never on a
writer's own clock. ``rj_runs.summary`` is the :class:`~runjournal.journal.readmodel.RunSummary`
values as a JSON array, describing events ``0..folded_seq`` (current when ``folded_seq =
head_seq``); ``status``, ``workflow`` and ``started_at`` are copies of three of them, for
the filters and their indexes. ``rj_folds`` keeps the fold state of runs a reader folded
while they were not finished (to fold on from). The summary columns and ``rj_folds`` are
read models: ``UPDATE rj_runs SET folded_seq = NULL`` and ``TRUNCATE rj_folds`` lose
nothing, the next ``history`` rebuilds them. The head columns are not: they are the anchor.
``run_id`` is ``COLLATE "C"`` everywhere, so ids sort as bytes (as the JSONL store sorts
them) and a prefix ``LIKE`` uses the primary key whatever the database's collation."""

PARTITION_LOCK_KEY = 0x726A_0000_0000_0002
"""Advisory lock serialising the creation of month partitions."""

SCHEMA_LOCK_KEY = 0x726A_0000_0000_0001
"""Advisory lock taken while creating the tables, so two first users do not race the DDL."""


def schema_sql() -> str:
    """The DDL with its constants filled in."""
    return SCHEMA_SQL % {"partition_lock": PARTITION_LOCK_KEY}


def writer_tcp_settings(heartbeat_interval: float) -> tuple[dict[str, int], str]:
    """TCP settings for a writer's session, from its heartbeat interval: ``(client, server)``.

    The client's keepalives and ``tcp_user_timeout`` make a writer cut off from the server
    notice within one heartbeat interval of sending (unacknowledged data times out) or about
    two of silence (idle probes); the same settings on the server's side (``options``) make
    the server drop a vanished writer's session, releasing the run's lock, as soon. Keepalive
    times are whole seconds (at least 1); ``tcp_user_timeout`` is milliseconds (at least 500).
    These apply to TCP only: a Unix-socket peer's death is seen at once.
    """
    idle = max(1, math.ceil(heartbeat_interval))
    interval = max(1, math.ceil(heartbeat_interval / 2))
    user_timeout = max(500, round(heartbeat_interval * 1000))
    client = {"keepalives": 1, "keepalives_idle": idle, "keepalives_interval": interval, "keepalives_count": 2,
              "tcp_user_timeout": user_timeout}
    server = (f"-c tcp_keepalives_idle={idle} -c tcp_keepalives_interval={interval} -c tcp_keepalives_count=2 "
              f"-c tcp_user_timeout={user_timeout}")
    return client, server




SCHEMA_STATE_SQL = """
SELECT c.relkind::text, substring(obj_description(c.oid, 'pg_class') FROM '^runjournal schema (\\d+)$')
FROM pg_class c WHERE c.oid = to_regclass('rj_events')
"""
"""The kind of ``rj_events`` (``p`` partitioned: schema 2; ``r`` a plain table: schema 1) and the
schema version in its comment; no row on a database without runjournal's tables. One round
trip per connection, whatever the state (the version is a comment so that the query never
names a table that may not exist)."""

_MONTH = re.compile(r"(\d{4})(0[1-9]|1[0-2])")


def month_of(run_id: str) -> str | None:
    """The partition month of a run id (``202601`` for ``20260102T...``), None for ids without one."""
    match = _MONTH.match(run_id)
    return match.group(0) if match else None


def next_month(month: str) -> str:
    """The month after ``month`` (``202612`` -> ``202701``)."""
    year, number = int(month[:4]), int(month[4:])
    return f"{year + number // 12:04d}{number % 12 + 1:02d}"


def partition_name(month: str | None) -> str:
    """The ``rj_events`` partition holding the runs of ``month`` (None: the ids without a month)."""
    return f"rj_events_m{month}" if month else "rj_events_other"


WATCH_CHANNEL_PREFIX = "rj_run_"


def watch_channel(run_id: str) -> str:
    """The NOTIFY channel of one run (a per-run channel: a follower is woken by its own run only)."""
    return f"{WATCH_CHANNEL_PREFIX}{lock_key('run', run_id) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


_OWN_LOCKS = """
    SELECT bool_or(classid = %(classid)s::bigint::oid AND objid = %(objid)s::bigint::oid
                   AND pid = pg_backend_pid()) AS mine,
           bool_or(classid = %(wclassid)s::bigint::oid AND objid = %(wobjid)s::bigint::oid) AS watched
    FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 1
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
"""One scan of the lock table: does this session hold the run's lock, and does anyone follow the run?"""

CREATE_RUN = f"""
WITH lk AS ({_OWN_LOCKS}),
run AS (
    INSERT INTO rj_runs (run_id, head_seq, head_hash, head_offset, received_at, folded_seq, status, workflow,
                         started_at, summary)
    SELECT %(run_id)s, 0, %(hash)s, %(offset)s, clock_timestamp(), %(folded_seq)s, 'running', %(workflow)s,
           %(started_at)s, %(summary)s
    FROM lk WHERE lk.mine
    RETURNING received_at
),
ev AS (
    INSERT INTO rj_events (run_id, seq, type, received_at, line)
    SELECT %(run_id)s, 0, %(type)s, run.received_at, %(line)s FROM run
    RETURNING seq
)
SELECT count(*) FROM ev
"""
"""A run's row and its ``started`` line, in one statement (one transaction), only while this
session holds the run's lock. A taken run id raises a unique violation on ``rj_runs``.

``status``, ``workflow`` and ``started_at`` are facts of the lines, kept by every writer with
or without a projector: the workflow and start time of the ``started`` line (always seq 0),
and the status after the status table (:data:`~runjournal.journal.status.EVENT_STATUS`:
``running``, then the first terminal event's). So the filters on them are exact for every
run, even one whose summary a reader has yet to fold."""

_TERMINAL = ", ".join(f"'{status}'" for status in sorted(TERMINAL_STATUSES))

_APPEND_EVENT = f"""
WITH lk AS ({_OWN_LOCKS}),
ev AS (
    INSERT INTO rj_events (run_id, seq, type, line)
    SELECT r.run_id, %(seq)s, %(type)s, %(line)s
    FROM lk, rj_runs r
    WHERE lk.mine AND r.run_id = %(run_id)s AND r.head_seq = %(seq)s - 1 AND r.head_hash = %(prev_hash)s
    RETURNING received_at
),
run AS (
    UPDATE rj_runs SET head_seq = %(seq)s, head_hash = %(hash)s, head_offset = %(offset)s, received_at = ev.received_at,
        status = CASE WHEN rj_runs.status IN ({_TERMINAL}) THEN rj_runs.status
                      ELSE coalesce(%(status_after)s, rj_runs.status) END{{summary}}
    FROM ev WHERE rj_runs.run_id = %(run_id)s
    RETURNING rj_runs.run_id
){{folds}}
SELECT (SELECT count(*) FROM run), (SELECT bool_or(mine) FROM lk),
       (SELECT count(pg_notify(%(channel)s, %(run_id)s)) FROM lk, run WHERE lk.watched)
"""

_SUMMARY_SET = """,
        folded_seq = %(seq)s, summary = %(summary)s, damaged = false"""

_DROP_FOLD = """,
gone AS (DELETE FROM rj_folds f USING run WHERE f.run_id = run.run_id)"""

APPEND = _APPEND_EVENT.format(summary="", folds="")
"""An append by a writer without a projector: the line and the head, nothing else (readers fold the summary on)."""

APPEND_FOLDED = _APPEND_EVENT.format(summary=_SUMMARY_SET, folds="")
"""An append that also brings the run's summary up to this event (the writer's own fold)."""

APPEND_FOLDED_FINAL = _APPEND_EVENT.format(summary=_SUMMARY_SET, folds=_DROP_FOLD)
"""The same for an event after which the run is finished: a saved live fold state is no longer needed."""

# Every append is one statement, so one round trip and one transaction: the line lands only
# while this session holds the run's lock (a writer whose session was dropped and that
# reconnected cannot append: fencing, ``docs/postgres.md``), only if it continues the head
# (the seq after it, chained to its hash), and the head moves with it. The NOTIFY is sent
# only when someone follows the run (holds its watch lock): a NOTIFY makes its commit take
# a lock every notifying commit in the cluster queues on, which halves the append rate of
# concurrent writers, so writers nobody watches do not pay for it.

LOCK_HOLDER_SQL = """
SELECT l.pid, host(a.client_addr), a.backend_start, a.application_name
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
    SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %(classid)s::bigint::oid AND l.objid = %(objid)s::bigint::oid AND l.objsubid = 1
"""
"""Who holds a run's advisory lock right now (no rows: nobody)."""

PROBE_SQL = """
SELECT now(), r.received_at, l.pid, host(a.client_addr), a.backend_start, a.application_name
FROM (SELECT 1) one
LEFT JOIN rj_runs r ON r.run_id = %(run_id)s
LEFT JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND l.classid = %(classid)s::bigint::oid AND l.objid = %(objid)s::bigint::oid
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
"""
"""A run's liveness facts in one round trip: the server's clock, when it last received an event
of the run (from the run's row: no scan of its events), and who holds its lock."""

PROBE_MANY_SQL = """
SELECT k.run_id, now(), r.received_at, l.pid, host(a.client_addr), a.backend_start, a.application_name
FROM unnest(%(run_ids)s::text[], %(classids)s::bigint[], %(objids)s::bigint[]) AS k (run_id, classid, objid)
JOIN rj_runs r ON r.run_id = k.run_id
LEFT JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND l.classid = k.classid::oid AND l.objid = k.objid::oid
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
"""
"""The same for many runs in one query (history's runs that are not finished)."""


def lock_key(namespace: str, name: str) -> int:
    """A signed 64-bit advisory lock key for ``name`` in ``namespace`` ("run", "workflow", "watch").

    64 bits of SHA-256: at a million runs the chance that two share a key is about 3e-8.
    """
    digest = hashlib.sha256(f"runjournal:{namespace}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_parts(key: int) -> dict[str, int]:
    """How ``pg_locks`` shows a bigint advisory key: high and low 32 bits, as unsigned."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return {"classid": unsigned >> 32, "objid": unsigned & 0xFFFF_FFFF}


def run_lock_params(run_id: str) -> dict[str, int]:
    """The lock parameters of :data:`APPEND` and :data:`CREATE_RUN`: the run's lock and its watch lock."""
    watch = lock_parts(lock_key("watch", run_id))
    return {**lock_parts(lock_key("run", run_id)), "wclassid": watch["classid"], "wobjid": watch["objid"]}


def is_postgres_url(text: str) -> bool:
    """Whether a ``--store`` value names a PostgreSQL database rather than a directory."""
    from runjournal.journal.stores import is_postgres_url as named

    return named(text)


SECRET_PARAMETERS = frozenset({"password", "sslpassword", "passfile", "sslkey"})
"""libpq connection parameters whose values are secrets (or name where one is) in a URL's query string."""


def redact(url: str) -> str:
    """The URL without its secrets, for messages and evidence: ``user:***@`` and ``password=***`` alike."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{netloc[-1]}")
    if parts.query:
        pairs = [pair.split("=", 1) for pair in parts.query.split("&")]
        parts = parts._replace(query="&".join(
            f"{pair[0]}=***" if len(pair) == 2 and unquote(pair[0]).lower() in SECRET_PARAMETERS else "=".join(pair)
            for pair in pairs
        ))
    return urlunsplit(parts)
