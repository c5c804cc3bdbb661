"""history when a store's handed-over fold of an unfinished run cannot be computed."""

from __future__ import annotations

from pathlib import Path

from runjournal.journal.errors import IntegrityError
from runjournal.journal.memory import MemoryStore
from runjournal.journal.readmodel import LiveFold
from runjournal.journal.testing.contract_support import begin
from runjournal.projections.history import history_rows


class FailingHandOver(MemoryStore):
    """A store whose listed run changed before its fold was computed (the fold raises, as a damaged run's does)."""

    def take_fold(self, run_id: str) -> LiveFold | None:
        def fold() -> object:
            raise IntegrityError("memory", 2, 0, "changed since it was listed")

        return LiveFold(None, fold)  # type: ignore[arg-type]


def test_a_hand_over_that_fails_is_read_again_not_a_crash(tmp_path: Path) -> None:
    """A live run whose handed-over fold raises is read by reconcile instead, and listed running."""
    store = FailingHandOver(tmp_path / "side")
    run = begin(store, "live-run")
    run.heartbeat()
    (row,) = list(history_rows(store))
    assert (row.summary.run_id, row.status) == ("live-run", "running")
    run.close()
