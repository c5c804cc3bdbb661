"""``runjournal export`` / ``import`` between the JSONL store and PostgreSQL: lossless, byte for byte.

Journals are written with :func:`journal.testing.write_journal` (real hash chains, fixed
clock), moved JSONL -> PostgreSQL -> JSONL through the CLI, and the files compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from runjournal.cli.main import cli
from runjournal.journal.postgres.store import PgStore
from runjournal.journal.run import start_run
from runjournal.journal.testing import make_stream, write_journal

FINISHED = {
    "20260102T140000000000Z-aaaa": "succeeded",
    "20260102T150000000000Z-bbbb": "failed",
    "20260102T160000000000Z-cccc": "abandoned",
    "20260102T170000000000Z-dddd": "cancelled",
}


def _cli(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A JSONL root with one run of each terminal kind."""
    root = tmp_path / "src"
    for run_id, terminal in FINISHED.items():
        write_journal(root, make_stream(run_id, terminal=terminal))
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "runs").glob("*.jsonl"))}


def test_round_trip_through_postgres_is_byte_identical(source: Path, pg_url: str, tmp_path: Path) -> None:
    """JSONL -> PostgreSQL -> JSONL gives back the very same files."""
    out = _cli("--store", str(source), "export", pg_url, "--json")
    assert out.exit_code == 0, out.output
    assert {r["outcome"] for r in json.loads(out.output)["runs"]} == {"copied"}
    back = tmp_path / "back"
    assert _cli("--store", pg_url, "export", str(back)).exit_code == 0
    assert _files(back) == _files(source)
    store = PgStore(pg_url)
    for run_id in FINISHED:
        data = (source / "runs" / f"{run_id}.jsonl").read_bytes()
        assert b"".join(line + b"\n" for line in store.raw_lines(run_id)) == data


def test_import_is_the_reverse_of_export(source: Path, pg_url: str, tmp_path: Path) -> None:
    """`import SOURCE` into PostgreSQL, then `import` back into a directory, round-trips too."""
    assert _cli("--store", pg_url, "import", str(source)).exit_code == 0
    back = tmp_path / "back"
    assert _cli("--store", str(back), "import", pg_url).exit_code == 0
    assert _files(back) == _files(source)
    history = json.loads(_cli("--store", pg_url, "history", "--json").output)
    assert {row["run_id"]: row["status"] for row in history} == FINISHED


def test_second_export_reports_unchanged(source: Path, pg_url: str) -> None:
    """Exporting twice copies nothing the second time and still exits 0."""
    _cli("--store", str(source), "export", pg_url)
    again = _cli("--store", str(source), "export", pg_url, "--json")
    assert again.exit_code == 0
    assert {r["outcome"] for r in json.loads(again.output)["runs"]} == {"unchanged"}


def test_a_different_run_under_the_same_id_is_a_conflict(source: Path, pg_url: str, tmp_path: Path) -> None:
    """A destination run with other lines is never overwritten: `conflict`, exit 3."""
    run_id = next(iter(FINISHED))
    other = tmp_path / "other"
    write_journal(other, make_stream(run_id, steps=("only",), terminal="failed"))
    _cli("--store", str(other), "export", pg_url)
    result = _cli("--store", str(source), "export", pg_url, run_id)
    assert result.exit_code == 3
    assert "conflict" in result.output
    assert b"".join(line + b"\n" for line in PgStore(pg_url).raw_lines(run_id)) == _files(other)[f"{run_id}.jsonl"]


def test_damaged_run_is_not_copied(source: Path, pg_url: str) -> None:
    """A run whose chain is broken is reported `damaged` (exit 3) and never reaches the destination."""
    run_id = "20260102T150000000000Z-bbbb"
    path = source / "runs" / f"{run_id}.jsonl"
    data = bytearray(path.read_bytes())
    data[data.index(b'"h":"') + 5] ^= 0x01  # flip one hash character on the first line
    path.write_bytes(bytes(data))
    result = _cli("--store", str(source), "export", pg_url, "--json")
    assert result.exit_code == 3
    outcomes = {r["run_id"]: r["outcome"] for r in json.loads(result.stdout)["runs"]}
    assert outcomes[run_id] == "damaged"
    assert not PgStore(pg_url).exists(run_id)


def test_running_run_stays_in_the_source(tmp_path: Path, pg_url: str) -> None:
    """A run whose writer is alive is left out (`running`) and not copied."""
    root = tmp_path / "live"
    with start_run("live", ["a"], root=root) as run:
        result = _cli("--store", str(root), "export", pg_url, "--json")
        assert result.exit_code == 0
        assert json.loads(result.output)["runs"] == [
            {"run_id": run.run_id, "outcome": "running", "lines": 0, "bytes": 0,
             "detail": "status running: copy it once it has ended"}
        ]
        assert not PgStore(pg_url).exists(run.run_id)


def test_a_run_cut_short_after_it_finished_is_damaged_not_running(tmp_path: Path) -> None:
    """A finished run (anchored by its writer) whose last line was removed exports as `damaged` (exit 3), never `running`."""
    root = tmp_path / "src"
    with start_run("cut", ["a"], root=root) as run:
        run.step_started("a")
        run.step_succeeded("a")
        run.succeed()
    path = root / "runs" / f"{run.run_id}.jsonl"
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:-1]))
    result = CliRunner().invoke(cli, ["--root", str(root), "export", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 3, result.stderr
    (cut,) = json.loads(result.stdout)["runs"]
    assert cut["outcome"] == "damaged" and "cut short" in cut["detail"]
