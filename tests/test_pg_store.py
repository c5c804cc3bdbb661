"""What only the PostgreSQL store has: fencing a writer whose session the server ended."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from runjournal.journal.errors import WriterClosedError, WriterFencedError
from runjournal.journal.events import Heartbeat
from runjournal.journal.postgres import PgStore
from runjournal.journal.testing.contract_support import RID, begin, writer_alive_after_close
from runjournal.projections.reconcile import current_state, reconcile_run


@pytest.mark.parametrize("lost", ["terminated", "reconnected", "relocked"])
def test_stale_pg_writer_is_fenced_after_abandon(pg_url: str, tmp_path: Path, lost: str) -> None:
    """A PostgreSQL writer whose session was killed, then reconciled ``abandoned`` past its lease, cannot append."""
    store = PgStore(pg_url, local_root=tmp_path)
    stale = begin(store).writer
    store.connection.execute("SELECT pg_terminate_backend(%s)", (stale.conn.info.backend_pid,))  # type: ignore[attr-defined]
    assert writer_alive_after_close(store, RID) is False
    assert reconcile_run(store, RID).action == "unknown"  # within its lease the writer may come back
    assert reconcile_run(store, RID, lease_intervals=1e-9).action == "abandoned"
    lines = list(store.raw_lines(RID))
    if lost != "terminated":  # the stale writer got a new session: without the lock, or relocked after reconcile
        stale.conn = psycopg.connect(pg_url, autocommit=True)  # type: ignore[attr-defined]
        assert lost == "reconnected" or stale.try_lock() is True  # type: ignore[attr-defined]
    # "terminated": it reconnects by itself, takes the lock back, and finds another writer's line at the head.
    with pytest.raises(WriterFencedError):
        stale.append(Heartbeat)
    with pytest.raises(WriterClosedError):  # and refuses for good
        stale.append(Heartbeat)
    assert list(store.raw_lines(RID)) == lines
    assert current_state(store, RID).status == "abandoned"
    stale.close()
    store.close()


def test_the_same_database_under_another_name_is_the_same_store(pg_url: str, tmp_path: Path) -> None:
    """A URL naming the same server by another host name has the same identity; another database does not."""
    alias = pg_url.replace("127.0.0.1", "localhost") if "127.0.0.1" in pg_url else pg_url.replace("localhost", "127.0.0.1")
    assert alias != pg_url
    first, second = PgStore(pg_url, local_root=tmp_path), PgStore(alias, local_root=tmp_path)
    try:
        assert first.identity() == second.identity()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS rj_identity_other")
            conn.execute("CREATE DATABASE rj_identity_other")
        base, _, _ = pg_url.rpartition("/")
        other = PgStore(f"{base}/rj_identity_other", local_root=tmp_path)
        assert other.identity() != first.identity()
        other.close()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP DATABASE rj_identity_other")
    finally:
        first.close()
        second.close()
