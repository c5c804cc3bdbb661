"""What ``--store``/``--root`` name: where runs live, and where this host keeps its side files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the store module only when a command opens a store: --version and --help stay light
    from runjournal.journal.store import Store


@dataclass(frozen=True, slots=True)
class Target:
    """The store a command works on, as the global options named it.

    ``store`` is ``--store`` (a URL or a directory; None: ``root`` holds the runs) and
    ``root`` is ``--root``: the runs themselves when ``store`` is not given, and otherwise
    only this host's side files (step logs, cancel requests). Commands open the store with
    :meth:`open`; what kind of store it is stays the store's business.
    """

    root: Path
    store: str | None = None

    def open(self) -> Store:
        """The store (opened on each call; a database store connects on first use).

        Given the history projector, so a database store's writers keep each run's summary row current.
        """
        from runjournal.journal.stores import open_store  # the store classes only when a command needs one
        from runjournal.projections.summary import PROJECTOR

        return open_store(self.store if self.store else self.root, local_root=self.root, projector=PROJECTOR)

    def require_destination(self) -> None:
        """Refuse (exit 2, one line) a destination directory that is a file: copying into it cannot work."""
        from runjournal.journal.stores import directory_of

        directory = directory_of(self.store if self.store else self.root)
        if directory is not None and directory.exists() and not directory.is_dir():
            from runjournal.cli.errors import UserError

            raise UserError(f"{directory} is not a directory (name a journal directory or a postgresql:// URL)")

    def require_existing(self, named_by: str = "--root, --store or RUNJOURNAL_ROOT") -> None:
        """Refuse (exit 2, one line) a journal directory that does not exist: reading it would say "no runs".

        ``named_by`` is what the user should check (the option or argument that named it).
        """
        from runjournal.journal.stores import directory_of

        directory = directory_of(self.store if self.store else self.root)
        if directory is not None and not directory.is_dir():
            from runjournal.cli.errors import UserError

            what = "is not a directory" if directory.exists() else "does not exist"
            raise UserError(f"journal directory {directory} {what} (check {named_by})")
