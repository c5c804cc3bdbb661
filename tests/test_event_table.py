"""``runjournal events``: one row per verified line, with the runs' current verdicts, in every output format."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from forensic_journal import IDS, KILLED_ID, add_killed_run, build

from runjournal.cli.main import cli
from runjournal.journal.jsonl import JsonlStore
from runjournal.journal.verify import verify_file
from runjournal.projections.eventtable import COLUMN_NAMES, EventQuery, event_rows


def invoke(root: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(root), "events", *args])


def rows_of(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "runs").iterdir())}


def verified_lines(store: JsonlStore) -> int:
    """Lines of every run up to its first bad line (a torn tail is not a line)."""
    total = 0
    for run_id in store.run_ids():
        path = store.path(run_id)
        bad = [p.line for p in verify_file(path, run_id) if p.kind != "torn-tail"]
        lines = path.read_bytes().count(b"\n")
        total += min(bad) - 1 if bad else lines
    return total


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The forensic journal (killed run included), not yet reconciled; tests copy it before writing."""
    root = tmp_path_factory.mktemp("forensics") / "journal"
    build(root)
    add_killed_run(root)
    return root


@pytest.fixture
def root(journal: Path, tmp_path: Path) -> Path:
    """A private copy of the forensic journal."""
    import shutil

    copy = tmp_path / "journal"
    shutil.copytree(journal, copy)
    return copy


def test_row_count_equals_the_verified_lines(root: Path) -> None:
    """After reconciling, there is one row per verified line; the damaged run is reported and exits 3."""
    result = invoke(root, "--jsonl")
    assert result.exit_code == 3, result.stderr
    rows = rows_of(result)
    assert len(rows) == verified_lines(JsonlStore(root))
    assert not any(row["derived"] for row in rows)
    assert [r["seq"] for r in rows if r["run_id"] == IDS["damaged"]] == [0, 1]
    assert f"run {IDS['damaged']}: " in result.stderr and ":3 (byte " in result.stderr
    assert result.stderr.count("\n") == 1
    assert all(list(row) == list(COLUMN_NAMES) for row in rows)


def test_dead_writers_runs_are_recorded_and_shown_abandoned(root: Path) -> None:
    """The killed and the torn run get a real abandoned event, and every row of them says so."""
    rows = rows_of(invoke(root, "--jsonl"))
    for run_id in (KILLED_ID, IDS["torn"]):
        mine = [r for r in rows if r["run_id"] == run_id]
        assert {r["run_status"] for r in mine} == {"abandoned"}
        assert {r["run_reason"] for r in mine} == {"originating-process-not-alive"}
        assert mine[-1]["type"] == "abandoned" and mine[-1]["data"]["evidence"]["pid_state"] in ("gone", "reused")
    torn_end = [r for r in rows if r["run_id"] == IDS["torn"]][-1]
    assert torn_end["data"]["tail_quarantined"]["offset"] > 0


def test_without_reconciling_a_derived_row_shows_the_verdict_and_nothing_is_written(root: Path) -> None:
    """--no-reconcile writes nothing; a dead writer's run ends with a derived abandoned row."""
    before = snapshot(root)
    rows = rows_of(invoke(root, "--jsonl", "--no-reconcile"))
    assert snapshot(root) == before
    derived = [r for r in rows if r["derived"]]
    assert sorted(r["run_id"] for r in derived) == sorted([KILLED_ID, IDS["torn"]])
    for row in derived:
        assert row["type"] == "abandoned" and row["seq"] is None
        assert row["reason"] == "originating-process-not-alive" and row["run_status"] == "abandoned?"
        assert row["data"]["evidence"]["checked"][0] == "host"
    killed = [r for r in rows if r["run_id"] == KILLED_ID]
    assert killed[-1]["derived"] and killed[-1]["data"]["last_seq"] == killed[-2]["seq"]
    assert {r["run_status"] for r in killed} == {"abandoned?"}
    assert len(rows) - len(derived) == verified_lines(JsonlStore(root))


def test_late_events_and_unknown_codes(root: Path) -> None:
    """Events after the first terminal are marked late; an unknown code reads unknown and is kept as written."""
    rows = rows_of(invoke(root, "--jsonl", IDS["late"], IDS["future"]))
    late = [(r["seq"], r["type"]) for r in rows if r["late"]]
    show = json.loads(CliRunner().invoke(cli, ["--root", str(root), "show", "--json", IDS["late"]]).stdout)
    assert late == [(e["seq"], e["type"]) for e in show["late_events"]] == [(7, "step-progress"), (8, "heartbeat")]
    future = [r for r in rows if r["type"] == "failed" and r["run_id"] == IDS["future"]][0]
    assert (future["reason"], future["reason_as_written"]) == ("unknown", "a-code-from-the-future")
    history = json.loads(CliRunner().invoke(cli, ["--root", str(root), "history", "--json"]).stdout)
    assert {h["run_id"]: h["reason"] for h in history}[IDS["future"]] == future["run_reason"] == "unknown"


def test_filters(root: Path) -> None:
    """Run-level filters choose runs; row-level filters choose rows; --since/--until bound ts."""
    def ids(*args: str) -> set[tuple[str, Any]]:
        return {(r["run_id"], r["seq"]) for r in rows_of(invoke(root, "--jsonl", *args))}

    assert {run for run, _ in ids("--status", "failed")} == {IDS["failed"], IDS["failed2"], IDS["late"], IDS["future"]}
    assert {run for run, _ in ids("--status", "abandoned")} == {KILLED_ID, IDS["torn"]}
    failed_items = rows_of(invoke(root, "--jsonl", "--type", "step-progress", "--item", "b", "--step", "fan"))
    assert {r["state"] for r in failed_items} == {"started", "succeeded", "failed"}
    assert all(r["item"] == "b" for r in failed_items)
    window = rows_of(invoke(root, "--jsonl", "--since", "2026-03-01T13:00:00Z", "--until", "2026-03-01T13:59:59Z"))
    assert {r["run_id"] for r in window} == {IDS["failed"], IDS["failed2"]}
    assert rows_of(invoke(root, "--jsonl", "-w", "nothing-like-it")) == []
    assert {r["type"] for r in rows_of(invoke(root, "--jsonl", "--type", "cancelled", "--type", "succeeded"))} == {
        "cancelled", "succeeded"}


def test_csv_and_jsonl_carry_the_same_rows(root: Path) -> None:
    """CSV has a header of the documented columns and the same values (JSON text for objects)."""
    jsonl = rows_of(invoke(root, "--jsonl", "--no-reconcile"))
    text = invoke(root, "--csv", "--no-reconcile").stdout
    table = list(csv.DictReader(io.StringIO(text)))
    assert list(table[0]) == list(COLUMN_NAMES) and len(table) == len(jsonl)
    for row, obj in zip(table, jsonl, strict=True):
        assert row["run_id"] == obj["run_id"] and (row["ts"] == obj["ts"] or obj["derived"])  # derived: now
        assert row["seq"] == ("" if obj["seq"] is None else str(obj["seq"]))
        assert json.loads(row["data"]) == obj["data"] or obj["derived"]
        assert row["late"] == ("true" if obj["late"] else "false")


def test_parquet_has_typed_columns(root: Path, tmp_path: Path) -> None:
    """--parquet writes the same rows with integer, boolean and timestamp columns typed."""
    pandas = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    result = CliRunner().invoke(cli, ["--root", str(root), "events", "--parquet", "--no-reconcile"])
    path = tmp_path / "events.parquet"
    path.write_bytes(result.stdout_bytes)
    frame = pandas.read_parquet(path)
    assert list(frame.columns) == list(COLUMN_NAMES)
    assert len(frame) == len(rows_of(invoke(root, "--jsonl", "--no-reconcile")))
    assert str(frame["ts"].dtype).startswith("datetime64") and str(frame["late"].dtype) == "bool"
    assert frame["seq"].dropna().astype(int).min() == 0


def test_text_output_is_a_table(root: Path) -> None:
    """The default output is an aligned table with a header, late and derived rows labelled."""
    result = invoke(root, "--no-reconcile", IDS["late"], KILLED_ID)
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["RUN", "SEQ", "TIME", "EVENT", "STEP", "STATE", "EXIT", "DETAIL"]
    assert any("(late)" in line for line in lines)
    assert any("(derived, not in the journal) originating-process-not-alive" in line for line in lines)


def test_rows_stream_run_by_run(root: Path) -> None:
    """The first row is produced before any other run's journal is opened."""
    store = JsonlStore(root)
    opened: list[str] = []
    original = store.read

    def read(run_id: str, cursor: Any = None) -> Any:
        opened.append(run_id)
        return original(run_id, cursor)

    store.read = read  # type: ignore[method-assign]
    rows = event_rows(store, EventQuery(reconcile=False), lambda problem: None)
    first = next(rows)
    assert first["seq"] == 0 and opened.count(first["run_id"]) >= 1
    assert set(opened) == {first["run_id"]}


def test_events_from_the_postgresql_store(pg_url: str, tmp_path: Path) -> None:
    """The same table from a database store: every event, the run's status on every row, unknown codes kept."""
    from runjournal.journal.events import FailReason
    from runjournal.journal.postgres.store import PgStore
    from runjournal.journal.run import start_run

    store = PgStore(pg_url, local_root=tmp_path / "local")
    with start_run("pg-flow", ["a"], store=store) as run:
        run.step_started("a")
        run.step_failed("a", exit_code=2)
        run.fail(FailReason.STEP_FAILED, step="a", exit_code=2)
    result = CliRunner().invoke(cli, ["--root", str(tmp_path / "local"), "--store", pg_url, "events", "--jsonl"])
    assert result.exit_code == 0, result.output
    rows = rows_of(result)
    assert [r["type"] for r in rows] == ["started", "step-progress", "step-progress", "failed"]
    assert {r["run_status"] for r in rows} == {"failed"} and rows[-1]["reason_as_written"] == "step-failed"
    assert all(r["workflow"] == "pg-flow" for r in rows)
