"""Connections to the PostgreSQL store, and turning driver errors into one-line journal errors.

psycopg is imported here, lazily: the JSONL store (the default) never needs it installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from runjournal.journal.errors import RunExistsError, StoreUnavailableError
from runjournal.journal.postgres.schema import (
    SCHEMA_LOCK_KEY,
    SCHEMA_SQL,
    WRITER_CLIENT_KEEPALIVES,
    WRITER_KEEPALIVE_OPTIONS,
    redact,
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


def connect(url: str, *, application_name: str, ensure_schema: bool = False, writer: bool = False) -> Any:
    """An autocommit connection to ``url``; a writer's carries TCP keepalives both ways."""
    psycopg = _driver()
    options: dict[str, Any] = {"autocommit": True, "application_name": application_name}
    options.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
    if writer:
        options |= WRITER_CLIENT_KEEPALIVES | {"options": WRITER_KEEPALIVE_OPTIONS}
    try:
        conn = psycopg.connect(url, **options)
    except psycopg.Error as exc:
        raise StoreUnavailableError(f"cannot connect to PostgreSQL at {redact(url)}: {_first_line(exc)}") from None
    if ensure_schema:
        with translate_errors(redact(url)):
            _ensure_schema(conn)
    return conn


def _ensure_schema(conn: Any) -> None:
    """Create the tables if they are missing; serialised, since CREATE IF NOT EXISTS races."""
    # The trigger is the last object the DDL creates: if it is there, so is everything else.
    exists = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'rj_events_notify')").fetchone()[0]
    if exists:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        conn.execute(SCHEMA_SQL)


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
