"""The PostgreSQL store's tables, lock keys and connection settings (see ``docs/postgres.md``).

Kept apart from :mod:`journal.pgstore` so the layout can be read (and documented) in one
place. Nothing here imports psycopg.
"""

from __future__ import annotations

import hashlib
import math
from urllib.parse import urlsplit, urlunsplit

SCHEMA_VERSION = 1

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS rj_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS rj_runs (
    run_id text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS rj_events (
    run_id text NOT NULL REFERENCES rj_runs (run_id),
    seq integer NOT NULL CHECK (seq >= 0),
    type text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    line bytea NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS rj_folds (
    run_id text PRIMARY KEY REFERENCES rj_runs (run_id),
    last_seq integer NOT NULL,
    last_hash text NOT NULL,
    byte_offset bigint NOT NULL,
    summary jsonb NOT NULL,
    state jsonb NOT NULL
);
CREATE OR REPLACE FUNCTION rj_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rj_events', NEW.run_id);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS rj_events_notify ON rj_events;
CREATE TRIGGER rj_events_notify AFTER INSERT ON rj_events FOR EACH ROW EXECUTE FUNCTION rj_notify_event();
INSERT INTO rj_meta (key, value) VALUES ('schema_version', '1') ON CONFLICT (key) DO NOTHING;
"""
"""Idempotent DDL. ``rj_events.line`` is the event's exact JSONL line without its newline, so
an export is byte-identical to the JSONL store's file. ``received_at`` is the server's clock
when the row was written: liveness is judged on it, never on a writer's own clock.
Every insert notifies channel ``rj_events`` with the run id (delivered at commit), which
``follow`` listens on. ``rj_folds`` is a read model (a fold state keyed by the last seq folded): it can be dropped
at any time and is rebuilt from ``rj_events``."""

NOTIFY_CHANNEL = "rj_events"

SCHEMA_LOCK_KEY = 0x726A_0000_0000_0001
"""Advisory lock taken while creating the tables, so two first users do not race the DDL."""

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


FENCED_INSERT = """
INSERT INTO rj_events (run_id, seq, type, line)
SELECT %(run_id)s, %(seq)s, %(type)s, %(line)s
WHERE EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
      AND classid = %(classid)s::bigint::oid AND objid = %(objid)s::bigint::oid AND objsubid = 1
)
"""
"""An append that only lands while this session holds the run's advisory lock: a writer
whose session was dropped and that reconnected cannot append (fencing, ``docs/postgres.md``)."""

LOCK_HOLDER_SQL = """
SELECT l.pid, host(a.client_addr), a.backend_start, a.application_name
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
    SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %(classid)s::bigint::oid AND l.objid = %(objid)s::bigint::oid AND l.objsubid = 1
"""
"""Who holds a run's advisory lock right now (no rows: nobody)."""

HELD_RUN_LOCKS_SQL = """
SELECT l.classid::bigint, l.objid::bigint FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.database = (
    SELECT oid FROM pg_database WHERE datname = current_database())
"""
"""Every advisory lock held in this database, for probing many runs in one query."""


def lock_key(namespace: str, name: str) -> int:
    """A signed 64-bit advisory lock key for ``name`` in ``namespace`` ("run", "workflow").

    64 bits of SHA-256: at a million runs the chance that two share a key is about 3e-8.
    """
    digest = hashlib.sha256(f"runjournal:{namespace}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_parts(key: int) -> dict[str, int]:
    """How ``pg_locks`` shows a bigint advisory key: high and low 32 bits, as unsigned."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return {"classid": unsigned >> 32, "objid": unsigned & 0xFFFF_FFFF}


def is_postgres_url(text: str) -> bool:
    """Whether a ``--store`` value names a PostgreSQL database rather than a directory."""
    from runjournal.journal.stores import is_postgres_url as named

    return named(text)


def redact(url: str) -> str:
    """The URL without its password, for messages and evidence."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))
