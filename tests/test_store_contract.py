"""The store contract (runjournal.journal.testing.contract) run against every store, plus what only comparing stores shows."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runjournal.journal.events import AbandonReason
from runjournal.journal.jsonl import JsonlStore
from runjournal.journal.memory import MemoryStore
from runjournal.journal.readmodel import RunSummary, summary_of
from runjournal.journal.store import Store
from runjournal.journal.testing.contract import StoreContract
from runjournal.journal.testing.contract_support import RID, write_run
from runjournal.projections.summary import PROJECTOR

REPO = Path(__file__).resolve().parent.parent


class TestJsonlStore(StoreContract):
    """One JSONL file per run."""

    def make_store(self) -> Store:
        root = self.tmp_path / "journal"
        root.mkdir(mode=0o700)
        return JsonlStore(root)

    def drop_last_line(self, store: Store, run_id: str) -> None:
        path = Path(store.location(run_id))
        path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:-1]))


class TestMemoryStore(StoreContract):
    """Runs in this process's memory."""

    shared_between_processes = False

    def make_store(self) -> Store:
        return MemoryStore(self.tmp_path / "side")

    def drop_last_line(self, store: Store, run_id: str) -> None:
        store._lines[run_id].pop()  # type: ignore[attr-defined]


class TestPgStore(StoreContract):
    """One PostgreSQL database (psycopg is imported only by these tests)."""

    abandon_reason = AbandonReason.WRITER_SESSION_ENDED  # the server released the session lock
    keeps_summaries = True  # writers given the projector keep rj_runs.summary current

    @pytest.fixture(autouse=True)
    def _database(self, pg_url: str) -> None:
        self.url = pg_url

    def make_store(self) -> Store:
        from runjournal.journal.postgres import PgStore

        return PgStore(self.url, local_root=self.tmp_path / "local", projector=PROJECTOR)

    def drop_last_line(self, store: Store, run_id: str) -> None:
        import psycopg  # only this suite needs the driver

        with psycopg.connect(self.url) as conn:
            conn.execute("DELETE FROM rj_events WHERE run_id = %s AND seq = (SELECT max(seq) FROM rj_events "
                         "WHERE run_id = %s)", (run_id, run_id))

    def recorded_summary(self, store: Store, run_id: str) -> RunSummary | None:
        """``rj_runs.summary`` when it describes the run up to its head (read with a session of its own)."""
        import psycopg  # only this suite needs the driver

        with psycopg.connect(self.url) as conn:
            rows = conn.execute("SELECT summary FROM rj_runs WHERE run_id = %s AND folded_seq = head_seq",
                                (run_id,)).fetchall()
        return summary_of(run_id, json.loads(rows[0][0])) if rows else None


@pytest.fixture
def stores(journal_dir: Path, pg_url: str, tmp_path: Path) -> Iterator[list[Store]]:
    """One empty store of each kind, for comparing them."""
    from runjournal.journal.postgres import PgStore

    made: list[Store] = [JsonlStore(journal_dir), PgStore(pg_url, local_root=tmp_path / "local"), MemoryStore()]
    yield made
    for store in made:
        store.close()


def test_same_events_give_identical_lines_and_cursors(stores: list[Store]) -> None:
    """The same run (fixed clock, identity, id) has byte-identical lines, records and cursors in every store."""
    for store in stores:
        write_run(store)
    jsonl = stores[0]
    lines = list(jsonl.raw_lines(RID))
    assert Path(jsonl.location(RID)).read_bytes() == b"".join(line + b"\n" for line in lines)
    readers = [store.read(RID) for store in stores]
    records = [list(reader) for reader in readers]
    for store, reader, recs in zip(stores, readers, records, strict=True):
        assert list(store.raw_lines(RID)) == lines, store.where
        assert recs == records[0] and reader.cursor == readers[0].cursor, store.where
    assert readers[0].cursor.offset == sum(len(line) + 1 for line in lines)


def test_import_lines_round_trips_between_stores(stores: list[Store]) -> None:
    """Lines exported from any store and imported into every other read back identical, lines and events."""
    for index, store in enumerate(stores):
        write_run(store, f"from-{index}")
    for i, source in enumerate(stores):
        for j, target in enumerate(stores):
            if i == j:
                continue
            lines = list(source.raw_lines(f"from-{i}"))
            target.import_lines(f"from-{i}", lines)
            assert list(target.raw_lines(f"from-{i}")) == lines
            assert list(target.read(f"from-{i}").events()) == list(source.read(f"from-{i}").events())
            assert target.writer_alive(f"from-{i}") is False


@pytest.mark.slow
def test_the_contract_imports_no_database_driver_for_other_stores() -> None:
    """Running the JSONL and in-memory contract suites never imports psycopg."""
    code = (
        "import sys, pytest\n"
        "rc = pytest.main(['-q', '-p', 'no:cacheprovider', 'tests/test_store_contract.py', '-k', 'TestJsonlStore or TestMemoryStore'])\n"
        "print('psycopg imported:', 'psycopg' in sys.modules)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "psycopg imported: False" in proc.stdout
    assert " passed" in proc.stdout
