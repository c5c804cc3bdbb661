"""Open the store a ``--store`` value names: a PostgreSQL URL, or a directory of JSONL files.

The one place that maps a name to a store class; everything else receives a
:class:`~runjournal.journal.store.Store` and uses only its interface.
"""

from __future__ import annotations

from pathlib import Path

from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.root import default_root
from runjournal.journal.store import Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(text: str) -> bool:
    """Whether a ``--store`` value names a PostgreSQL database rather than a directory.

    Here rather than in the PostgreSQL package, whose import pulls in the event models: a
    JSONL ``history`` must not pay for them.
    """
    return text.startswith(POSTGRES_SCHEMES)


def open_store(target: str | Path | None = None, *, local_root: Path | str | None = None) -> Store:
    """The store ``target`` names: ``postgresql://...`` (or ``postgres://``), else a JSONL directory.

    ``target`` None is the default root (``RUNJOURNAL_ROOT``, else ``./.runjournal``).
    ``local_root`` is where a database store keeps this host's side files (step logs,
    cancel requests); None means the default root.
    """
    if isinstance(target, str) and is_postgres_url(target):
        from runjournal.journal.postgres.store import PgStore  # psycopg only when asked for

        return PgStore(target, local_root=local_root)
    return JsonlStore(target if target is not None else default_root())


def directory_of(target: str | Path | None) -> Path | None:
    """The journal directory ``target`` names (as :func:`open_store` reads it), or None for a database URL."""
    if isinstance(target, str) and is_postgres_url(target):
        return None
    return Path(target) if target is not None else default_root()
