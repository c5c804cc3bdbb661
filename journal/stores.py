"""Open the store a ``--store`` value names: a PostgreSQL URL, or a directory of JSONL files."""

from __future__ import annotations

from pathlib import Path

from runjournal.journal.pgschema import is_postgres_url
from runjournal.journal.store import JsonlStore, Store


def open_store(target: str | Path | None, *, local_root: Path | None = None) -> Store:
    """The store ``target`` names: ``postgresql://...`` (or ``postgres://``), else a JSONL directory.

    ``local_root`` is where a database store keeps host-local side files (step logs, cancel
    requests); None means the default root.
    """
    if isinstance(target, str) and is_postgres_url(target):
        from runjournal.journal.pgstore import PgStore  # psycopg only when asked for

        return PgStore(target, local_root=local_root)
    return JsonlStore(target)
