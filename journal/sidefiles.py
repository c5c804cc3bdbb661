"""Host-local side files: what a run keeps beside its journal on the host that runs it.

Step output, cancel requests and a detached supervisor's output live in a directory on the
writer's own host, whatever store holds the events (a database cannot hold a step's
terminal output as it streams, and a cancel request is for the process on this host)::

    <root>/logs/<run_id>/...      step output kept by the workflow runner
    <root>/runs/<run_id>.cancel   a pending cancel request

For the JSONL store ``root`` is the journal directory itself; for the others it is
``--root`` (default ``./.runjournal``). What goes in these directories is the workflow
engine's business (:mod:`runjournal.cli.engine.runfiles`); this class only says where.
"""

from __future__ import annotations

from pathlib import Path

from runjournal.journal.ids import validate_run_id

CANCEL_SUFFIX = ".cancel"


class SideFiles:
    """The side-file directory of one host (see the module docstring)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.logs_dir = self.root / "logs"
        """Every run's step-output directory is under here."""
        self.requests_dir = self.root / "runs"
        """Cancel requests (beside the JSONL store's run files, where runjournal has always kept them)."""

    def log_dir(self, run_id: str) -> Path:
        """The step-output directory of ``run_id`` (validated: never a path outside the root)."""
        return self.logs_dir / validate_run_id(run_id)

    def cancel_request(self, run_id: str) -> Path:
        """Where a cancel request for ``run_id`` is written."""
        return self.requests_dir / f"{validate_run_id(run_id)}{CANCEL_SUFFIX}"

    def __repr__(self) -> str:
        return f"SideFiles({str(self.root)!r})"
