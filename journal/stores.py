"""Open the store a ``--store`` value names: a PostgreSQL URL, or a directory of JSONL files.

The one place that maps a name to a store class; everything else receives a
:class:`~runjournal.journal.store.Store` and uses only its interface.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.root import default_root
from runjournal.journal.store import Store

if TYPE_CHECKING:
    from runjournal.journal.readmodel import Projector
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(text: str) -> bool:
    """Whether a ``--store`` value names a PostgreSQL database rather than a directory.

    Here rather than in the PostgreSQL package, whose import pulls in the event models: a
    JSONL ``history`` must not pay for them.
    """
    return text.startswith(POSTGRES_SCHEMES)



def open_store(
    target: str | Path | None = None, *, local_root: Path | str | None = None, projector: Projector | None = None
) -> Store:
    """The store ``target`` names: ``postgresql://...`` (or ``postgres://``), else a JSONL directory.

    ``target`` None is the default root (``RUNJOURNAL_ROOT``, else ``./.runjournal``).
    ``local_root`` is where a database store keeps this host's side files (step logs,
    cancel requests); None means the default root. ``projector`` is the history read
    model's fold (``runjournal.projections.summary.PROJECTOR``): a store whose writers keep
    each run's summary with every append (the database) uses it; without it, readers fold
    the summaries on when they list them.
    """
    if isinstance(target, str) and is_postgres_url(target):
        from runjournal.journal.postgres.store import PgStore  # psycopg only when asked for

        return PgStore(target, local_root=local_root, projector=projector)
    return JsonlStore(target if target is not None else default_root())


def directory_of(target: str | Path | None) -> Path | None:
    """The journal directory ``target`` names (as :func:`open_store` reads it), or None for a database URL."""
    if isinstance(target, str) and is_postgres_url(target):
        return None
    return Path(target) if target is not None else default_root()


def upgrade_store(target: str | Path) -> str:
    """Bring the store ``target`` names to the layout this version uses, in place; say what was done in one line.

    Only a database made by an older runjournal has anything to upgrade (schema 1 to 2, see
    ``docs/postgres.md``); a journal directory is read as it is.
    """
    if isinstance(target, str) and is_postgres_url(target):
        from runjournal.journal.postgres.schema import redact
        from runjournal.journal.postgres.upgrade import upgrade

        return upgrade(target, redact(target))
    return f"{target}: a journal directory needs no upgrade"
