"""The PostgreSQL store at scale: one connection, any collation, anchors, partitions and pruning, the upgrade from schema 1, a lean start."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from click.testing import CliRunner, Result

from runjournal.cli.main import cli
from runjournal.journal.postgres import PgStore
from runjournal.journal.readmodel import HistoryQuery
from runjournal.journal.run import start_run
from runjournal.journal.testing import make_identity, make_started
from runjournal.journal.testing.builders import exited_writer_identity, make_stream, raw_stream_lines
from runjournal.journal.testing.contract_support import begin, started, write_run, writer_alive_after_close
from runjournal.projections.history import history_rows
from runjournal.projections.summary import PROJECTOR

REPO = Path(__file__).resolve().parent.parent


def _cli(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def store(pg_url: str, tmp_path: Path) -> Iterator[PgStore]:
    """A store on a fresh database, given the projector (as the CLI opens it)."""
    made = PgStore(pg_url, local_root=tmp_path / "local", projector=PROJECTOR)
    yield made
    made.close()


def _db(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def _with_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port}").geturl()


# -- one connection -------------------------------------------------------------------------------


@pytest.fixture
def one_connection_role(pg_server_url: str, pg_url: str) -> Iterator[str]:
    """The URL of ``pg_url`` as a role allowed a single connection, which owns the runjournal tables."""
    role = f"rj_one_{uuid.uuid4().hex[:8]}"
    with _db(pg_server_url) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 1')
        admin.execute(f'ALTER DATABASE "{urlsplit(pg_url).path[1:]}" OWNER TO "{role}"')
    url = _with_user(pg_url, role)
    PgStore(url).close()  # ... so that the first connection, this role's, creates the tables
    PgStore(url).connection.close()
    yield url
    with _db(pg_server_url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{urlsplit(pg_url).path[1:]}" WITH (FORCE)')
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_history_works_with_one_connection(one_connection_role: str, pg_url: str, tmp_path: Path) -> None:
    """With a role limited to one connection, `history` lists finished and live runs and reconciles an orphan on that one session."""
    writers = PgStore(pg_url, projector=PROJECTOR)  # the writers connect as the superuser: not this role's budget
    write_run(writers, "20260101T000000000000Z-done")
    live = begin(writers, "20260101T000100000000Z-live")
    orphan = start_run("wf", ["a"], store=writers, run_id="20260101T000200000000Z-gone",
                       identity=exited_writer_identity(), heartbeat_interval=0.01, durability="none")
    orphan.close()  # its lease (3 heartbeat intervals) runs out at once: a writer that no longer reconnects
    assert writer_alive_after_close(writers, "20260101T000200000000Z-gone") is False
    time.sleep(0.1)  # the lease is 3 x 0.01 s of silence on the server's clock: certainly past after this
    out = _cli("--root", str(tmp_path), "--store", one_connection_role, "history", "--json")
    assert out.exit_code == 0, out.stderr
    statuses = {row["run_id"][-4:]: row["status"] for row in json.loads(out.stdout)}
    assert statuses == {"done": "succeeded", "live": "running", "gone": "abandoned"}, out.stderr
    with pytest.raises(psycopg.OperationalError, match="too many connections"):  # the limit is real
        with _db(one_connection_role), _db(one_connection_role):
            pass
    live.close()
    writers.close()


# -- collation -----------------------------------------------------------------------------------


def test_prefix_lookup_uses_the_primary_key_and_ids_sort_as_bytes_under_an_icu_collation(pg_server_url: str) -> None:
    """In a database whose collation is ICU en-US, a prefix lookup is a range scan of the primary key, and ids sort byte-wise."""
    name = f"rj_icu_{uuid.uuid4().hex[:8]}"
    with _db(pg_server_url) as admin:
        admin.execute(f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.utf8'")
    url = urlsplit(pg_server_url)._replace(path=f"/{name}").geturl()
    store = PgStore(url, projector=PROJECTOR)
    try:
        for run_id in ("b-1", "B-2", "a-1", "A-2"):
            write_run(store, run_id)
        assert store.resolve("B") == "B-2"
        with _db(url) as conn:
            conn.execute("SET enable_seqscan = off")
            plan = "\n".join(r[0] for r in conn.execute(
                "EXPLAIN SELECT run_id FROM rj_runs WHERE run_id LIKE 'B%' ORDER BY run_id LIMIT 6").fetchall())
            assert "Index Cond: ((run_id >= 'B'::text) AND (run_id < 'C'::text))" in plan, plan
        listed = [s.run_id for s in store.summaries(HistoryQuery(), PROJECTOR)]
        assert listed == ["b-1", "a-1", "B-2", "A-2"]  # bytes: lowercase after uppercase (en-US would interleave)
    finally:
        store.close()
        with _db(pg_server_url) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


# -- anchors -------------------------------------------------------------------------------------


def _failed_run(store: PgStore, run_id: str) -> list[bytes]:
    lines = raw_stream_lines(make_stream(run_id, terminal="failed"))
    store.import_lines(run_id, lines)
    return lines


def test_a_truncated_run_fails_verify_and_is_never_reconciled(store: PgStore, pg_url: str) -> None:
    """Deleting a finished run's final line is found by `verify` (truncated) and `show`; history shows it damaged, never abandoned."""
    run_id = "20260101T000000000000Z-trnc"
    lines = _failed_run(store, run_id)
    with _db(pg_url) as conn:
        conn.execute("DELETE FROM rj_events WHERE run_id = %s AND seq = %s", (run_id, len(lines) - 1))
        conn.execute("UPDATE rj_runs SET folded_seq = NULL")  # a cold read model: nothing cached hides it
    out = _cli("--store", pg_url, "verify", run_id, "--json")
    assert out.exit_code == 1
    assert [p["kind"] for p in json.loads(out.stdout)["runs"][0]["problems"]] == ["anchor"]
    rows = list(history_rows(store))
    assert [(r.status, "cut short" in (r.reason or "")) for r in rows] == [("damaged", True)]
    assert len(list(store.raw_lines(run_id))) == len(lines) - 1  # nothing appended: not reconciled
    assert _cli("--store", pg_url, "show", run_id).exit_code == 3


def test_a_rewritten_and_rehashed_run_fails_verify(store: PgStore, pg_url: str) -> None:
    """Rewriting a run's `failed` to `succeeded` and re-hashing the chain passes the chain check but not the anchor."""
    run_id = "20260101T000000000000Z-rwrt"
    lines = _failed_run(store, run_id)
    forged = raw_stream_lines(make_stream(run_id, terminal="succeeded"))  # encoded and chained as a writer would
    assert len(forged) == len(lines) and forged[:-1] == lines[:-1] and forged[-1] != lines[-1]
    with _db(pg_url) as conn:
        for seq, line in enumerate(forged):
            conn.execute("UPDATE rj_events SET line = %s WHERE run_id = %s AND seq = %s", (line, run_id, seq))
    out = _cli("--store", pg_url, "verify", run_id, "--json")
    assert out.exit_code == 1
    assert [p["kind"] for p in json.loads(out.stdout)["runs"][0]["problems"]] == ["anchor"]


# -- partitions and pruning ---------------------------------------------------------------------


def _partition_counts(url: str) -> dict[str, int]:
    with _db(url) as conn:
        return dict(conn.execute(
            "SELECT tableoid::regclass::text, count(*) FROM rj_events GROUP BY 1").fetchall())


def test_runs_go_to_their_month_partition_and_pruning_a_whole_month_drops_it(store: PgStore, pg_url: str, tmp_path: Path) -> None:
    """Events land in their run id's month partition (ids without one in rj_events_other); pruning every run of a month drops its partition, archived first, the rest untouched."""
    for run_id in ("20251130T000000000000Z-nov1", "20251201T000000000000Z-dec1", "20251215T000000000000Z-dec2",
                   "deploy-7"):
        write_run(store, run_id)
    assert _partition_counts(pg_url) == {"rj_events_m202511": 5, "rj_events_m202512": 10, "rj_events_other": 5}
    kept = {run_id: list(store.raw_lines(run_id)) for run_id in ("20251130T000000000000Z-nov1", "deploy-7")}
    outcomes = {p.run_id: p.outcome for p in store.prune(["20251201T000000000000Z-dec1", "20251215T000000000000Z-dec2",
                                                           "deploy-7"])}
    assert set(outcomes.values()) == {"pruned"}
    counts = _partition_counts(pg_url)
    assert counts == {"rj_events_m202511": 5}
    with _db(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('rj_events_m202512')").fetchone()[0] is None  # dropped, not emptied
        assert conn.execute("SELECT to_regclass('rj_events_other')").fetchone()[0] is not None  # never dropped
    assert list(store.raw_lines("20251130T000000000000Z-nov1")) == kept["20251130T000000000000Z-nov1"]
    write_run(store, "20251220T000000000000Z-dec3")  # a run of a pruned month recreates its partition
    assert _partition_counts(pg_url)["rj_events_m202512"] == 5


def test_writers_racing_into_a_new_month_all_create_their_runs(pg_url: str) -> None:
    """Six writers creating the first runs of a month at once all succeed, and their lines land in the month's partition."""
    PgStore(pg_url).connection.close()  # the tables, before the race
    barrier, errors = threading.Barrier(6), []

    def create(n: int) -> None:
        racer = PgStore(pg_url, projector=PROJECTOR)
        try:
            barrier.wait(30)
            racer.create(make_started(f"20300115T00000{n}000000Z-race"), durability="none").close()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
        finally:
            racer.close()

    threads = [threading.Thread(target=create, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert _partition_counts(pg_url) == {"rj_events_m203001": 6}


def test_cli_prune_archives_to_jsonl_then_deletes(store: PgStore, pg_url: str, tmp_path: Path) -> None:
    """`prune --before DATE --archive DIR` writes byte-identical JSONL files, deletes the runs, keeps the live one, and says so."""
    started(store, "20251201T000000000000Z-old1", "wf", 0, "succeeded")  # started 2026-01-01 00:00 (the test clock)
    live = started(store, "20251202T000000000000Z-live", "wf", 10, None)
    started(store, "20260301T000000000000Z-new1", "wf", 60, "failed")
    lines = list(store.raw_lines("20251201T000000000000Z-old1"))
    attic = tmp_path / "attic"
    out = _cli("--root", str(tmp_path), "--store", pg_url, "prune", "--before", "2026-01-01T00:30:00+00:00",
               "--archive", str(attic), "--json")
    assert out.exit_code == 0, out.stderr
    assert {r["run_id"]: r["outcome"] for r in json.loads(out.stdout)["runs"]} == {
        "20251201T000000000000Z-old1": "pruned"}
    assert (attic / "runs" / "20251201T000000000000Z-old1.jsonl").read_bytes() == b"".join(l + b"\n" for l in lines)
    assert sorted(store.run_ids()) == ["20251202T000000000000Z-live", "20260301T000000000000Z-new1"]
    live.close()


# -- schema 1 ----------------------------------------------------------------------------------

SCHEMA_V1 = """
CREATE TABLE rj_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE rj_runs (run_id text PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE rj_events (
    run_id text NOT NULL REFERENCES rj_runs (run_id), seq integer NOT NULL CHECK (seq >= 0), type text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(), line bytea NOT NULL, PRIMARY KEY (run_id, seq));
CREATE TABLE rj_folds (run_id text PRIMARY KEY REFERENCES rj_runs (run_id), last_seq integer NOT NULL,
    last_hash text NOT NULL, byte_offset bigint NOT NULL, summary jsonb NOT NULL, state jsonb NOT NULL);
CREATE OR REPLACE FUNCTION rj_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('rj_events', NEW.run_id); RETURN NULL; END $$;
CREATE TRIGGER rj_events_notify AFTER INSERT ON rj_events FOR EACH ROW EXECUTE FUNCTION rj_notify_event();
INSERT INTO rj_meta (key, value) VALUES ('schema_version', '1');
"""
"""The tables runjournal 0.2 created (journal/postgres/schema.py before schema 2)."""


def test_a_schema_1_database_is_refused_with_what_to_do_then_upgraded_in_place(pg_url: str, tmp_path: Path) -> None:
    """A database of runjournal 0.2 gets a one-line error naming `upgrade-db`; after it, every line is there byte for byte and history lists the runs."""
    runs = {"20251101T000000000000Z-aaaa": "succeeded", "20251201T000000000000Z-bbbb": "failed", "deploy-3": None}
    with _db(pg_url) as conn:
        conn.execute(SCHEMA_V1)
        for run_id, terminal in runs.items():
            conn.execute("INSERT INTO rj_runs (run_id) VALUES (%s)", (run_id,))
            for seq, line in enumerate(raw_stream_lines(make_stream(run_id, terminal=terminal))):
                conn.execute("INSERT INTO rj_events (run_id, seq, type, line) VALUES (%s, %s, %s, %s)",
                             (run_id, seq, json.loads(line)["type"], line))
        before = {run_id: [bytes(r[0]) for r in conn.execute(
            "SELECT line FROM rj_events WHERE run_id = %s ORDER BY seq", (run_id,)).fetchall()] for run_id in runs}
    refused = _cli("--root", str(tmp_path), "--store", pg_url, "history")
    assert refused.exit_code == 3
    assert "schema 1" in refused.stderr and "upgrade-db" in refused.stderr and len(refused.stderr.splitlines()) == 1
    upgraded = _cli("--root", str(tmp_path), "--store", pg_url, "upgrade-db")
    assert upgraded.exit_code == 0, upgraded.stderr
    assert f"3 run(s), {sum(map(len, before.values()))} event(s)" in upgraded.stdout
    store = PgStore(pg_url, projector=PROJECTOR)
    assert {run_id: list(store.raw_lines(run_id)) for run_id in runs} == before
    assert all(not list(store.verify(run_id)) for run_id in runs)
    listed = {s.run_id: s.status for s in store.summaries(HistoryQuery(), PROJECTOR)}
    assert listed == {"20251101T000000000000Z-aaaa": "succeeded", "20251201T000000000000Z-bbbb": "failed",
                      "deploy-3": "running"}
    assert set(_partition_counts(pg_url)) == {"rj_events_m202511", "rj_events_m202512", "rj_events_other"}
    again = _cli("--root", str(tmp_path), "--store", pg_url, "upgrade-db")
    assert "nothing to do" in again.stdout
    store.close()


# -- what history reads ---------------------------------------------------------------------------


class Counting:
    """A connection proxy counting the statements run through it."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements: list[str] = []

    def execute(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        self.statements.append(str(sql))
        return self.conn.execute(sql, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def test_history_of_live_runs_reads_no_line_and_probes_them_in_one_statement(store: PgStore, pg_url: str) -> None:
    """With 12 live runs (writers holding their locks), history reads no event line and asks for all their locks in one statement."""
    runs = [begin(store, f"20260101T0000{n:02d}000000Z-live") for n in range(12)]
    for run in runs:
        run.heartbeat()
    write_run(store, "20260101T000000000000Z-done")
    reader = PgStore(pg_url, projector=PROJECTOR)
    reader._conn = Counting(reader.connection)  # noqa: SLF001 - what the test is about
    rows = list(history_rows(reader))
    assert [r.status for r in rows].count("running") == 12
    sql = reader._conn.statements  # noqa: SLF001
    assert not [s for s in sql if "rj_events" in s], sql
    assert len(sql) <= 2, sql  # one page of summaries, one probe of every live run's lock
    for run in runs:
        run.close()
    reader.close()


def test_a_limited_cold_listing_keeps_what_it_folded(store: PgStore, pg_url: str) -> None:
    """Runs imported without a summary are folded once by the first listing that reaches them: a listing stopped early saves what it folded."""
    plain = PgStore(pg_url)  # no projector: imports leave the summary to readers
    for n in range(60):
        run_id = f"20260101T0000{n:02d}000000Z-cold"
        plain.import_lines(run_id, raw_stream_lines(make_stream(run_id, terminal="succeeded")))
    listing = store.summaries(HistoryQuery(limit=5), PROJECTOR)
    first = [next(listing).run_id for _ in range(5)]
    listing.close()  # type: ignore[attr-defined]  # what `history -n 5` does when it has printed 5
    with _db(pg_url) as conn:
        folded = {r[0] for r in conn.execute("SELECT run_id FROM rj_runs WHERE folded_seq = head_seq").fetchall()}
    assert set(first) <= folded and len(folded) < 60
    list(store.summaries(HistoryQuery(), PROJECTOR))
    with _db(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM rj_runs WHERE folded_seq = head_seq").fetchone()[0] == 60
    plain.close()


@pytest.mark.slow
def test_history_on_postgres_imports_no_event_model(store: PgStore, pg_url: str, tmp_path: Path) -> None:
    """`history` on PostgreSQL, with finished runs and a live one whose writer holds its lock, never imports pydantic."""
    write_run(store, "20260101T000000000000Z-done")
    live = begin(store, "20260101T000100000000Z-live")
    code = (
        "import sys\n"
        "from runjournal.cli.main import cli\n"
        "try:\n"
        f"    cli.main(['--root', {str(tmp_path)!r}, '--store', {pg_url!r}, 'history'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('pydantic imported:', 'pydantic' in sys.modules, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert "running" in proc.stdout and "succeeded" in proc.stdout, proc.stdout + proc.stderr
    assert "pydantic imported: False" in proc.stderr
    live.close()
    assert make_identity()  # the builders are what wrote the runs
