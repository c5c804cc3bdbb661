"""The file layout of a JSONL store, without the event machinery.

Layout under the root (``--root``, ``RUNJOURNAL_ROOT``, default ``./.runjournal``)::

    runs/<run_id>.jsonl            the run's events (0600)
    runs/<run_id>.jsonl.torn-<off> a torn tail moved aside by reconciliation (0600)
    runs/<run_id>.cancel           a pending cancel request (0600)
    logs/<run_id>/...              step output kept by the workflow runner
    locks/workflow-<hash>.lock     serialises "is a run of this workflow live?" + start
    index/runs-v<N>-<xx>.jsonl     the history read model (disposable)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from runjournal.journal.errors import AmbiguousRunIdError, RunNotFoundError, UnsafePathError
from runjournal.journal.ids import validate_prefix, validate_run_id
from runjournal.journal.root import default_root

RUN_SUFFIX = ".jsonl"


class StoreLayout:
    """Where a store's files are, and which runs exist: paths, listing, prefix lookup.

    Plain ``os`` work only (no event models), so a read that finds nothing to fold
    (``history`` on a warm index) never pays for importing pydantic.
    """

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.runs_dir = self.root / "runs"
        self.folds_dir = self.root / "index" / "folds"
        """Where the fold records are (:mod:`~runjournal.journal.jsonl.foldrecords`): part of the disposable index."""

    def path(self, run_id: str) -> Path:
        """The journal file of ``run_id`` (validated first: never a path outside the store)."""
        return self.runs_dir / (validate_run_id(run_id) + RUN_SUFFIX)

    def owned_by_us(self) -> bool:
        """Whether this process's effective user owns the root (only then does a reader write caches there)."""
        try:
            return os.stat(self.root).st_uid == os.geteuid()
        except OSError:
            return False

    def check_not_symlinked(self) -> None:
        """Refuse a root or runs directory that is a symlink: every open below it would follow it."""
        for directory in (self.root, self.runs_dir):
            if os.path.islink(directory):
                raise UnsafePathError(f"{directory} is a symlink; refusing to use it as a journal directory")

    def exists(self, run_id: str) -> bool:
        """Whether a journal file for ``run_id`` exists."""
        return os.path.lexists(self.path(run_id))

    def run_ids(self) -> Iterator[str]:
        """Every run id in the store, in no particular order."""
        self.check_not_symlinked()
        try:
            entries = os.scandir(self.runs_dir)
        except FileNotFoundError:
            return
        with entries:
            for entry in entries:
                name = entry.name
                if name.endswith(RUN_SUFFIX) and not name.startswith("."):
                    yield name[: -len(RUN_SUFFIX)]

    def resolve(self, ref: str) -> str:
        """Turn a run id or a unique prefix of one into a run id (like git)."""
        validate_prefix(ref)
        if self.exists(ref):
            return ref
        matches = sorted(rid for rid in self.run_ids() if rid.startswith(ref))
        if not matches:
            raise RunNotFoundError(ref, self.root)
        if len(matches) > 1:
            raise AmbiguousRunIdError(ref, matches)
        return matches[0]
