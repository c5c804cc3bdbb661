"""The PostgreSQL fixtures: the session server answers, and each test gets its own empty database."""

from __future__ import annotations

from collections.abc import Callable

import psycopg


def user_tables(url: str) -> list[str]:
    """Names of the tables in ``url``'s database outside the system schemas."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    return sorted(row[0] for row in rows)


def test_server_is_postgresql_15_or_newer(pg_server_url: str) -> None:
    with psycopg.connect(pg_server_url) as conn:
        version = conn.execute("SELECT version()").fetchone()
        version_num = conn.execute("SHOW server_version_num").fetchone()
    assert version is not None and version[0].startswith("PostgreSQL "), version
    assert version_num is not None and int(version_num[0]) >= 150000, version


def test_pg_url_databases_are_distinct_and_empty(pg_url: str, make_pg_database: Callable[[], str]) -> None:
    other_url = make_pg_database()
    assert other_url != pg_url
    assert user_tables(pg_url) == [] and user_tables(other_url) == []

    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE only_here (id int)")

    assert user_tables(pg_url) == ["only_here"]
    assert user_tables(other_url) == []
