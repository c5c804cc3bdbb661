"""``runjournal prune`` on the JSONL store: files, quarantined tails, index entries and step logs go; nothing unfinished does."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from runjournal.cli.main import cli
from runjournal.journal.jsonl import JsonlStore
from runjournal.journal.jsonl.index import INDEX_DIR
from runjournal.journal.jsonl.index_files import load_manifest
from runjournal.journal.jsonl.index_segments import SegmentSet
from runjournal.journal.testing.builders import exited_writer_identity
from runjournal.journal.testing.contract_support import begin, started, writer_alive_after_close


def _cli(root: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(root), *args])


def _indexed(root: Path) -> set[str]:
    manifest = load_manifest(root / INDEX_DIR)
    finished = SegmentSet(root / INDEX_DIR, manifest.segments).newest_first()
    return {run_id for run_id, _ in finished} | set(manifest.live)


def _store(root: Path) -> JsonlStore:
    """Runs old and new, finished, orphaned and live, with a step log and a quarantined tail."""
    store = JsonlStore(root)
    started(store, "old-ok", "build", 0, "succeeded")
    started(store, "old-failed", "build", 1, "failed")
    begin(store, "old-orphan", identity=exited_writer_identity()).close()  # started at minute 0 too
    started(store, "new-ok", "build", 600, "succeeded")
    store.side_files.log_dir("old-ok").mkdir(parents=True)
    (store.side_files.log_dir("old-ok") / "build.log").write_text("output\n")
    (store.runs_dir / "old-failed.jsonl.torn-999").write_bytes(b'{"torn')
    assert writer_alive_after_close(store, "old-orphan") is False
    return store


def test_prune_deletes_files_index_entries_and_logs_of_old_finished_runs(tmp_path: Path) -> None:
    """Old finished runs (an orphan recorded abandoned first) lose their file, quarantined tail, index entry and logs; newer and live runs stay."""
    root = tmp_path / "journal"
    store = _store(root)
    live = started(store, "old-live", "build", 2, None)
    assert _cli(root, "history").exit_code == 0  # the index knows every run
    out = _cli(root, "prune", "--before", "2026-01-01T05:00:00+00:00", "--json")
    assert out.exit_code == 0, out.stderr
    outcomes = {r["run_id"]: r["outcome"] for r in json.loads(out.stdout)["runs"]}
    assert outcomes == {"old-ok": "pruned", "old-failed": "pruned", "old-orphan": "pruned"}
    assert sorted(store.run_ids()) == ["new-ok", "old-live"]
    assert _indexed(root) == {"new-ok", "old-live"}
    assert not store.side_files.log_dir("old-ok").exists()
    assert not list(store.runs_dir.glob("old-failed*"))
    live.close()


def test_dry_run_changes_nothing_and_status_filters(tmp_path: Path) -> None:
    """`--dry-run` lists what would go (the orphan included) and writes nothing; `--status failed` prunes only failed runs."""
    root = tmp_path / "journal"
    store = _store(root)
    before = {p.name: p.read_bytes() for p in store.runs_dir.iterdir()}
    dry = _cli(root, "prune", "--before", "2026-01-01T05:00:00+00:00", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    assert {r["outcome"] for r in json.loads(dry.stdout)["runs"]} == {"would-prune"}
    assert len(json.loads(dry.stdout)["runs"]) == 3
    assert {p.name: p.read_bytes() for p in store.runs_dir.iterdir()} == before
    failed = _cli(root, "prune", "--before", "2026-01-01T05:00:00+00:00", "--status", "failed")
    assert failed.exit_code == 0, failed.stderr
    assert "old-failed  pruned" in failed.stdout and "1 run(s): 1 pruned" in failed.stderr
    assert sorted(store.run_ids()) == ["new-ok", "old-ok", "old-orphan"]


def test_a_run_the_archive_cannot_take_is_kept_and_the_exit_code_says_so(tmp_path: Path) -> None:
    """Archiving into a directory that holds another run under the same id is a conflict: that run is kept, exit 3."""
    root, attic = tmp_path / "journal", tmp_path / "attic"
    _store(root)
    other = JsonlStore(attic)
    started(other, "old-ok", "elsewhere", 0, "failed")
    out = _cli(root, "prune", "--before", "2026-01-01T05:00:00+00:00", "--archive", str(attic))
    assert out.exit_code == 3
    assert "old-ok  conflict" in out.stdout and "old-failed  pruned" in out.stdout
    assert JsonlStore(root).exists("old-ok") and (attic / "runs" / "old-failed.jsonl").exists()


def test_an_archive_that_is_the_journal_itself_is_refused_whatever_its_name(tmp_path: Path) -> None:
    """--archive naming the journal being pruned (as given, with a trailing slash, or through a symlink) exits 2, deletes nothing."""
    root = tmp_path / "journal"
    store = _store(root)
    (tmp_path / "alias").symlink_to(root)
    before = sorted(store.run_ids())
    for name in (str(root), f"{root}/", str(tmp_path / "alias")):
        out = _cli(root, "prune", "--before", "2026-01-01T05:00:00+00:00", "--archive", name)
        assert out.exit_code == 2 and "is the store being pruned" in out.stderr, out.stderr
        assert out.stderr.count("\n") == 1
    assert sorted(store.run_ids()) == before


def test_an_archive_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    """--archive naming a regular file exits 2 with one line saying so, and prunes nothing."""
    root = tmp_path / "journal"
    store = _store(root)
    (tmp_path / "afile").write_text("")
    out = _cli(root, "prune", "--before", "2026-01-01T05:00:00+00:00", "--archive", str(tmp_path / "afile"))
    assert out.exit_code == 2 and out.stderr.count("\n") == 1 and "is not a directory" in out.stderr, out.stderr
    assert len(list(store.run_ids())) == 4
