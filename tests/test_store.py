"""The JSONL store: safe run ids, prefix lookup, private files, creation and takeover of runs."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runjournal.journal.errors import (
    AmbiguousRunIdError,
    InvalidRunIdError,
    RunExistsError,
    RunNotFoundError,
    UnsafePathError,
    WriterClosedError,
)
from runjournal.journal.events import Heartbeat, Started, StepProgress
from runjournal.journal.ids import RUN_ID_PATTERN, new_run_id, validate_prefix, validate_run_id
from runjournal.journal.jsonl.reader import scan_to_end
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.testing import journal_bytes, make_heartbeat, make_started, make_stream, write_journal

HOSTILE_IDS = [
    "../../etc/passwd",
    "..",
    ".",
    "../x",
    "a/../../b",
    "/etc/passwd",
    "/",
    "run\x00id",
    "\x00",
    "",
    "a" * 129,
    "a\\b",
    "-rf",
    ".hidden",
    "run id",
    "run\nid",
    "rún",
    "ｒｕｎ",  # fullwidth look-alikes
    "run\u202eid",
    "~root",
    "$HOME",
]


@pytest.mark.parametrize("run_id", HOSTILE_IDS)
def test_validate_run_id_refuses_hostile_ids(run_id: str) -> None:
    """Traversal, absolute paths, NUL, empty, overlong and non-ASCII ids are refused with a reason."""
    with pytest.raises(InvalidRunIdError, match="invalid run id") as info:
        validate_run_id(run_id)
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidRunIdError):
        validate_prefix(run_id)


@pytest.mark.parametrize(
    ("run_id", "why"),
    [("", "empty"), ("a" * 129, "129 characters"), ("a\x00", "NUL"), (".x", "must start with"), ("a/b", "separator")],
)
def test_invalid_ids_say_why(run_id: str, why: str) -> None:
    """The error explains what is wrong with the id."""
    with pytest.raises(InvalidRunIdError, match=why):
        validate_run_id(run_id)


def test_non_string_ids_are_refused() -> None:
    """A run id must be a string."""
    with pytest.raises(InvalidRunIdError, match="not a string"):
        validate_run_id(b"abc")


@pytest.mark.parametrize("run_id", HOSTILE_IDS)
def test_the_store_refuses_hostile_ids_before_touching_a_path(tmp_path: Path, run_id: str) -> None:
    """Every store entry point refuses the id; nothing is created, and a planted file is never read."""
    root = tmp_path / "root"
    (root / "runs").mkdir(parents=True, mode=0o700)
    planted = write_journal(tmp_path, make_stream(run_id="planted"))  # tmp_path/runs/planted.jsonl
    store = JsonlStore(root)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for call in (store.path, store.side_files.log_dir, store.exists, store.read, store.open_writer, store.writer_alive,
                 store.resolve):
        with pytest.raises(InvalidRunIdError):
            call(run_id)
    with pytest.raises(InvalidRunIdError):
        store.create(Started.model_construct(**(make_started().__dict__ | {"run_id": run_id})))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert planted.exists()


def test_a_traversal_id_cannot_reach_a_journal_outside_the_store(tmp_path: Path) -> None:
    """``../planted`` would name a real journal one level up; the store refuses instead of reading it."""
    write_journal(tmp_path / "outside", make_stream(run_id="planted"))
    store = JsonlStore(tmp_path / "outside" / "inner")
    with pytest.raises(InvalidRunIdError):
        store.read("../runs/planted")


def test_generated_ids_are_valid_and_sort_by_start_time() -> None:
    """new_run_id gives safe ids whose string order is their time order."""
    start = datetime(2026, 5, 1, tzinfo=UTC)
    ids = [new_run_id(start + timedelta(microseconds=n * 997)) for n in range(50)]
    assert all(RUN_ID_PATTERN.fullmatch(i) for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == 50


@pytest.fixture
def store(journal_dir: Path) -> Iterator[JsonlStore]:
    """A store holding four finished runs with related ids."""
    for run_id in ("20260101T000000000000Z-aaaa", "20260101T000000000000Z-aaab", "20260202T000000000000Z-cccc",
                   "abc", "abcd"):
        write_journal(journal_dir, make_stream(run_id=run_id))
    yield JsonlStore(journal_dir)


def test_prefix_lookup_finds_a_unique_run(store: JsonlStore) -> None:
    """A unique prefix resolves to its run, like git's short hashes."""
    assert store.resolve("202602") == "20260202T000000000000Z-cccc"
    assert store.resolve("20260101T000000000000Z-aaab") == "20260101T000000000000Z-aaab"


def test_an_exact_id_wins_over_longer_ids_it_prefixes(store: JsonlStore) -> None:
    """``abc`` is a run of its own even though ``abcd`` also starts with it."""
    assert store.resolve("abc") == "abc"


def test_an_ambiguous_prefix_lists_the_candidates(store: JsonlStore) -> None:
    """An ambiguous prefix is an error naming how many runs match, and which."""
    with pytest.raises(AmbiguousRunIdError, match="2 runs match") as info:
        store.resolve("20260101")
    assert info.value.matches == ["20260101T000000000000Z-aaaa", "20260101T000000000000Z-aaab"]
    assert isinstance(info.value, LookupError)


def test_a_missing_run_is_not_found(store: JsonlStore) -> None:
    """A prefix nothing matches is a RunNotFoundError that points at history."""
    with pytest.raises(RunNotFoundError, match="no run matches '2027'.*runjournal history"):
        store.resolve("2027")
    with pytest.raises(RunNotFoundError):
        store.read("2027")


def test_run_ids_lists_runs_and_skips_temporary_files(store: JsonlStore) -> None:
    """Files being created (dot-prefixed) and quarantine files are not runs."""
    (store.runs_dir / ".abc.creating-123").write_bytes(b"")
    (store.runs_dir / "abc.jsonl.torn-120").write_bytes(b"x")
    assert sorted(store.run_ids()) == sorted(
        ["20260101T000000000000Z-aaaa", "20260101T000000000000Z-aaab", "20260202T000000000000Z-cccc", "abc", "abcd"]
    )


def test_an_empty_root_has_no_runs(tmp_path: Path) -> None:
    """A root that does not exist yet simply has no runs."""
    assert list(JsonlStore(tmp_path / "nothing").run_ids()) == []


def test_files_are_0600_and_directories_0700_whatever_the_umask(tmp_path: Path) -> None:
    """Run files and every directory the store creates are private even under umask 000."""
    old = os.umask(0)
    try:
        store = JsonlStore(tmp_path / "deep" / "root")
        store.create(make_started(), durability="none").close()
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(store.path(make_started().run_id)) == 0o600
    assert [mode(p) for p in (tmp_path / "deep", store.root, store.runs_dir)] == [0o700] * 3


def test_creating_an_existing_run_is_refused(journal_dir: Path) -> None:
    """A second ``create`` with the same id fails and leaves the first file untouched."""
    store = JsonlStore(journal_dir)
    store.create(make_started(), durability="none").close()
    before = store.path(make_started().run_id).read_bytes()
    with pytest.raises(RunExistsError):
        store.create(make_started(workflow="other"), durability="none")
    assert store.path(make_started().run_id).read_bytes() == before
    assert [p.name for p in store.runs_dir.iterdir()] == [make_started().run_id + ".jsonl"]


def test_a_new_run_file_holds_its_started_line(journal_dir: Path) -> None:
    """``create`` leaves the file with exactly the ``started`` line, chained from genesis."""
    store = JsonlStore(journal_dir)
    started = make_started()
    with store.create(started, durability="none") as writer:
        assert writer.next_seq == 1
    assert store.path(started.run_id).read_bytes() == journal_bytes([started])


def test_open_writer_continues_the_sequence_and_hash_chain(journal_dir: Path) -> None:
    """Taking over a run appends with the next seq, chained to the last line."""
    stream = make_stream(terminal=None)
    write_journal(journal_dir, stream)
    store = JsonlStore(journal_dir)
    with store.open_writer(stream[0].run_id, durability="none") as writer:
        event = writer.append(Heartbeat)
    assert event.seq == len(stream)
    assert scan_to_end(store.path(event.run_id), event.run_id).cursor.seq == len(stream) + 1


def test_append_event_refuses_an_event_that_does_not_continue_the_run(journal_dir: Path) -> None:
    """An importer's event with the wrong seq or run id is refused before anything is written."""
    store = JsonlStore(journal_dir)
    with store.create(make_started(), durability="none") as writer:
        for bad in (make_heartbeat(5), make_heartbeat(1, run_id="other")):
            with pytest.raises(ValueError, match="does not continue run"):
                writer.append_event(bad)
        writer.append_event(make_heartbeat(1))
    assert scan_to_end(writer.path, writer.run_id).cursor.seq == 2


def test_a_writer_refuses_to_append_after_a_torn_tail(journal_dir: Path) -> None:
    """A taken-over run ending in a torn line must be reconciled first; nothing is glued to the fragment."""
    stream = make_stream(terminal=None)
    path = write_journal(journal_dir, stream, fragment=b'{"v":1,"run_')
    before = path.read_bytes()
    writer = JsonlStore(journal_dir).open_writer(stream[0].run_id, durability="none")
    with writer, pytest.raises(WriterClosedError, match="torn line at byte .*runjournal reconcile"):
        writer.append(StepProgress, step="build", state="started")
    assert path.read_bytes() == before


def test_a_symlinked_run_file_is_refused(journal_dir: Path, tmp_path: Path) -> None:
    """A symlink planted where a run file should be is never followed."""
    target = write_journal(tmp_path / "elsewhere", make_stream(run_id="real"))
    runs = journal_dir / "runs"
    runs.mkdir(mode=0o700)
    (runs / "evil.jsonl").symlink_to(target)
    store = JsonlStore(journal_dir)
    with pytest.raises(UnsafePathError, match="symlink"):
        list(store.read("evil"))
    with pytest.raises(UnsafePathError):
        store.open_writer("evil")


def test_a_closed_writer_refuses_appends(journal_dir: Path) -> None:
    """After close, append is a clear error rather than a write to a reused fd."""
    writer = JsonlStore(journal_dir).create(make_started(), durability="none")
    writer.close()
    with pytest.raises(WriterClosedError, match="closed"):
        writer.append(Heartbeat)
