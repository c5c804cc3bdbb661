"""What ``--store``/``--root`` name: where runs live, and where this host keeps its side files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runjournal.journal.pgschema import is_postgres_url, redact


@dataclass(frozen=True, slots=True)
class Target:
    """The store a command works on.

    ``root`` is the local journal directory: the runs themselves for the JSONL store, and
    for a PostgreSQL store (``url`` set) only this host's side files (step logs, cancel
    requests). Commands open the store with :meth:`open` (psycopg is imported only then).
    """

    root: Path
    url: str | None = None

    @classmethod
    def from_options(cls, store: str | None, root: Path) -> Target:
        """``--store`` (a PostgreSQL URL or a directory) wins over ``--root``."""
        if store is not None and is_postgres_url(store):
            return cls(root, store)
        return cls(Path(store) if store else root)

    def open(self) -> Any:
        """The store (a :class:`journal.store.Store`)."""
        from runjournal.journal.stores import open_store

        return open_store(self.url, local_root=self.root) if self.url else open_store(self.root)

    def argv(self) -> list[str]:
        """The global options that name this target again (for a detached supervisor)."""
        args = ["--root", str(self.root.resolve())]
        return args + (["--store", self.url] if self.url else [])

    def __str__(self) -> str:
        return redact(self.url) if self.url else str(self.root)
