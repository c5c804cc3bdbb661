"""Connections to the PostgreSQL store, and turning driver errors into one-line journal errors.

psycopg is imported here, lazily: the JSONL store (the default) never needs it installed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from runjournal.journal.errors import RunExistsError, StoreUnavailableError
from runjournal.journal.postgres.schema import (
    SCHEMA_LOCK_KEY,
    SCHEMA_STATE_SQL,
    SCHEMA_VERSION,
    redact,
    schema_sql,
    writer_tcp_settings,
)

CONNECT_TIMEOUT_SECONDS = 10


def _driver() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StoreUnavailableError(
            "the PostgreSQL store needs psycopg: pip install 'runjournal[postgres]'"
        ) from None
    return psycopg


def connect(
    url: str,
    *,
    application_name: str,
    ensure_schema: bool = False,
    heartbeat_interval: float | None = None,
    timeout: float = CONNECT_TIMEOUT_SECONDS,
) -> Any:
    """An autocommit connection to ``url``.

    A writer's (``heartbeat_interval`` given) carries TCP keepalives and ``tcp_user_timeout``
    both ways, set from that interval (:func:`~runjournal.journal.postgres.schema.writer_tcp_settings`).
    ``timeout`` bounds the connection attempt (psycopg waits at least 2 s).
    """
    psycopg = _driver()
    options: dict[str, Any] = {"autocommit": True, "application_name": application_name,
                               "connect_timeout": max(1, math.ceil(timeout))}
    if heartbeat_interval is not None:
        client, server = writer_tcp_settings(heartbeat_interval)
        options |= client | {"options": server}
    try:
        conn = psycopg.connect(url, **options)
    except psycopg.Error as exc:
        raise StoreUnavailableError(f"cannot connect to PostgreSQL at {redact(url)}: {_first_line(exc)}") from None
    if ensure_schema:
        try:
            with translate_errors(redact(url)):
                _ensure_schema(conn, redact(url))
        except BaseException:
            conn.close()
            raise
    return conn


def _ensure_schema(conn: Any, where: str) -> None:
    """Create the tables if they are missing (serialised: CREATE IF NOT EXISTS races); refuse another schema."""
    if _schema_state(conn) == (("p", str(SCHEMA_VERSION)),):
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        state = _schema_state(conn)
        if not state:
            conn.execute(schema_sql())
        elif state != (("p", str(SCHEMA_VERSION)),):
            raise StoreUnavailableError(_wrong_schema(where, state[0]))


def _schema_state(conn: Any) -> tuple[tuple[str, str | None], ...]:
    """``(relkind of rj_events, schema version)``, or nothing on a database without the tables (one round trip)."""
    return tuple(conn.execute(SCHEMA_STATE_SQL).fetchall())


def _wrong_schema(where: str, state: tuple[str, str | None]) -> str:
    kind, version = state
    if kind == "r" or version == "1":
        return (
            f"PostgreSQL at {where} holds runjournal schema 1 (runjournal 0.2: events in one unpartitioned "
            f"table, no summary rows, no anchors); this version needs schema {SCHEMA_VERSION}. Upgrade it in place "
            "with 'runjournal --store URL upgrade-db' (see docs/postgres.md, 'Upgrading from schema 1')"
        )
    return (
        f"PostgreSQL at {where} holds runjournal schema {version} (rj_events of kind {kind!r}), "
        f"which this version ({SCHEMA_VERSION}) does not know: use the runjournal that made it"
    )


@contextmanager
def translate_errors(where: str, *, exists: str | None = None) -> Iterator[None]:
    """Turn driver errors into journal errors: a lost server is an I/O error, a taken run id exists."""
    psycopg = _driver()
    try:
        yield
    except psycopg.errors.UniqueViolation:
        if exists is None:
            raise
        raise RunExistsError(exists) from None
    except psycopg.OperationalError as exc:
        raise StoreUnavailableError(f"PostgreSQL at {where}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
