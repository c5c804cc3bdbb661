"""The PostgreSQL store: every host's runs in one database (psycopg is imported on first connection)."""

from runjournal.journal.postgres.store import PgStore

__all__ = ["PgStore"]
