"""The history read model: incremental, disposable, and never half-written."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from run_helpers import append_bytes, last_hash

from runjournal.journal.events import Event
from runjournal.journal.jsonl.index import FORMAT, INDEX_DIR, HistoryIndex
from runjournal.journal.jsonl.index_files import MANIFEST, SUMMARY_LENGTH, load_manifest, load_segment
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.readmodel import SUMMARY_FIELDS, RunSummary, parse_time
from runjournal.journal.run import start_run
from runjournal.journal.testing import (
    event_streams,
    journal_bytes,
    journal_lines,
    make_heartbeat,
    make_stream,
    torn_streams,
    write_journal,
)
from runjournal.projections.fold import fold
from runjournal.projections.summary import PROJECTOR, summarize

REPO = Path(__file__).resolve().parent.parent


def fresh_summaries(store: JsonlStore) -> list[RunSummary]:
    """The reference: every run folded from its first byte, newest first, no index involved."""
    return [summarize(fold(store.read(rid).events()), rid) for rid in sorted(store.run_ids(), reverse=True)]


def indexed(store: JsonlStore) -> list[RunSummary]:
    """What a fresh HistoryIndex (loading whatever is saved) lists."""
    return list(HistoryIndex(store, PROJECTOR).summaries())


def replace_file(path: Path, data: bytes) -> None:
    """Put new bytes under the same name as a new inode (what an editor or a copy does)."""
    tmp = path.with_name(".replacing")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def parse_segment(data: bytes) -> tuple[dict[str, Any], list[Any]]:
    """A segment file's header and entries; raises if any line is not whole JSON or the file is cut."""
    if not data.endswith(b"\n"):
        raise ValueError("segment does not end with a newline")
    header, *lines = data[:-1].split(b"\n")
    return orjson.loads(header), [orjson.loads(line) for line in lines]


def indexed_ids(root: Path) -> set[str]:
    """Every run id the saved index holds (live runs in the manifest, finished ones in its segments)."""
    directory = root / INDEX_DIR
    manifest = load_manifest(directory)
    ids = set(manifest.live)
    for segment in manifest.segments:
        ids.update(run_id for run_id, _ in load_segment(directory, segment.name) or ())
    return ids


def folds(index: HistoryIndex) -> dict[str, int]:
    """How many runs a pass folded on from a cursor and from their start."""
    return {k: index.counts[k] for k in ("appended", "refolded")}


def unique_streams(streams: Sequence[list[Event]]) -> list[list[Event]]:
    """Drop streams whose run id repeats one drawn earlier."""
    seen: dict[str, list[Event]] = {}
    for stream in streams:
        seen.setdefault(stream[0].run_id, stream)
    return list(seen.values())


@given(st.lists(event_streams(), min_size=1, max_size=4), st.data())
def test_incremental_index_equals_fresh_fold(streams: list[list[Event]], data: st.DataObject) -> None:
    """Indexing prefixes of random runs, then the rest appended, gives what folding the whole files gives."""
    streams = unique_streams(streams)
    with tempfile.TemporaryDirectory() as tmp:
        store = JsonlStore(tmp)
        cuts = [data.draw(st.integers(1, len(s)), label="cut") for s in streams]
        paths = [write_journal(tmp, s[:cut]) for s, cut in zip(streams, cuts, strict=True)]
        assert indexed(store) == fresh_summaries(store)
        for stream, cut, path in zip(streams, cuts, paths, strict=True):
            append_bytes(path, b"".join(journal_lines(stream[cut:], last_hash(stream[:cut]))))
        assert indexed(store) == fresh_summaries(store)
        newest_first = sorted(streams, key=lambda s: s[0].run_id, reverse=True)
        for stream, summary in zip(newest_first, indexed(store), strict=True):
            assert summary.events == len(stream)


@given(torn_streams())
def test_torn_tail_is_left_out_until_its_line_is_complete(torn) -> None:  # type: ignore[no-untyped-def]
    """A torn final line is not folded; once the writer finishes the line, the index folds it."""
    with tempfile.TemporaryDirectory() as tmp:
        store = JsonlStore(tmp)
        path = write_journal(tmp, torn.events, fragment=torn.fragment)
        assert indexed(store) == [summarize(fold(torn.events), torn.events[0].run_id)]
        full = journal_bytes([*torn.events, torn.torn])
        append_bytes(path, full[len(torn.data) :])
        assert indexed(store) == [summarize(fold([*torn.events, torn.torn]), torn.events[0].run_id)]


def test_append_after_indexing_is_seen_without_refolding(journal_dir: Path) -> None:
    """Events appended through the API after a refresh show up, folded from the saved cursor."""
    store = JsonlStore(journal_dir)
    with start_run("deploy", steps=["build", "ship"], store=store, durability="none") as run:
        run.step_started("build")
        first = indexed(store)
        assert [(s.status, s.steps_done, s.events) for s in first] == [("running", 0, 2)]
        run.step_succeeded("build", exit_code=0)
        index = HistoryIndex(store, PROJECTOR)
        (summary,) = index.summaries()
        assert (summary.status, summary.steps_done, summary.events) == ("running", 1, 3)
        assert folds(index) == {"appended": 1, "refolded": 0}
    (summary,) = indexed(store)
    assert summary.status == "succeeded" and summary.ended_at is not None


def test_unchanged_runs_are_not_read_again(journal_dir: Path) -> None:
    """A second pass over unchanged files folds nothing."""
    store = JsonlStore(journal_dir)
    for n in range(5):
        write_journal(journal_dir, make_stream(f"run-{n}", terminal="succeeded" if n % 2 else None))
    first = HistoryIndex(store, PROJECTOR)
    assert len(list(first.summaries())) == 5 and first.counts["refolded"] == 5
    second = HistoryIndex(store, PROJECTOR)
    assert list(second.summaries()) == fresh_summaries(store)
    assert folds(second) == {"appended": 0, "refolded": 0}


def test_replaced_file_is_refolded(journal_dir: Path) -> None:
    """A run file replaced by another (new inode), even a longer one, is folded from its start."""
    store = JsonlStore(journal_dir)
    path = write_journal(journal_dir, make_stream("r1", steps=["a"], terminal=None))
    indexed(store)
    other = make_stream("r1", steps=["x", "y", "z"], terminal="failed")
    replace_file(path, journal_bytes(other))
    index = HistoryIndex(store, PROJECTOR)
    assert list(index.summaries()) == [summarize(fold(other), "r1")]
    assert folds(index) == {"appended": 0, "refolded": 1}


def test_truncated_live_file_is_refolded(journal_dir: Path) -> None:
    """A live run's file cut back into what was indexed is folded again from its start."""
    store = JsonlStore(journal_dir)
    stream = make_stream("r1", steps=["a", "b"], terminal=None)
    path = write_journal(journal_dir, stream)
    assert indexed(store)[0].status == "running"
    os.truncate(path, len(journal_bytes(stream[:2])))
    index = HistoryIndex(store, PROJECTOR)
    assert list(index.summaries()) == [summarize(fold(stream[:2]), "r1")]
    assert index.counts["refolded"] == 1


def test_a_finished_run_cut_short_is_listed_with_the_anchor_error(journal_dir: Path) -> None:
    """A finished run settled for a while is anchored when history first sees it; cut back later, it is listed
    with an error, not as a shorter run."""
    store = JsonlStore(journal_dir)
    stream = make_stream("r1", steps=["a", "b"], terminal="succeeded")
    path = write_journal(journal_dir, stream)
    settled = time.time() - 3600
    os.utime(path, (settled, settled))
    assert indexed(store)[0].status == "succeeded"
    assert [a.seq for a in store.anchors("r1")] == [len(stream) - 1]
    os.truncate(path, len(journal_bytes(stream[:2])))
    (summary,) = indexed(store)
    assert summary.error is not None and "cut short after it finished" in summary.error


def test_rewrite_in_place_with_same_size_is_refolded(journal_dir: Path) -> None:
    """Same inode, same size, another mtime: the bytes may differ, so the run is folded again."""
    store = JsonlStore(journal_dir)
    stream = make_stream("r1", terminal="succeeded")
    path = write_journal(journal_dir, stream)
    indexed(store)
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    index = HistoryIndex(store, PROJECTOR)
    list(index.summaries())
    assert index.counts["refolded"] == 1


def test_late_events_after_terminal_are_counted(journal_dir: Path) -> None:
    """A finished run that grows (a writer that came back) is folded again: its late events show."""
    store = JsonlStore(journal_dir)
    stream = make_stream("r1", terminal="abandoned")
    path = write_journal(journal_dir, stream)
    assert indexed(store)[0].late_events == 0
    append_bytes(path, b"".join(journal_lines([make_heartbeat(len(stream), run_id="r1")], last_hash(stream))))
    (summary,) = indexed(store)
    assert (summary.status, summary.late_events) == ("abandoned", 1)


def test_deleting_the_index_gives_the_same_output(journal_dir: Path) -> None:
    """The index is disposable: removed, it is rebuilt and lists exactly the same summaries."""
    store = JsonlStore(journal_dir)
    for n in range(20):
        write_journal(journal_dir, make_stream(f"2026-{n:02d}", terminal=(None, "succeeded", "failed")[n % 3]))
    before = indexed(store)
    for file in (journal_dir / INDEX_DIR).iterdir():
        file.unlink()
    (journal_dir / INDEX_DIR).rmdir()
    assert indexed(store) == before == fresh_summaries(store)
    assert [s.run_id for s in before] == [f"2026-{n:02d}" for n in reversed(range(20))]


def test_deleted_runs_are_dropped_from_the_index(journal_dir: Path) -> None:
    """A run whose file is gone is neither listed nor kept in the saved index."""
    store = JsonlStore(journal_dir)
    for rid in ("a1", "b2"):
        write_journal(journal_dir, make_stream(rid))
    indexed(store)
    store.path("a1").unlink()
    assert [s.run_id for s in indexed(store)] == ["b2"]
    assert indexed_ids(journal_dir) == {"b2"}


def test_corrupt_run_is_listed_with_its_error_and_refolded_when_fixed(journal_dir: Path) -> None:
    """A bad line stops that run's fold with an error naming the line; a repaired file is folded again."""
    store = JsonlStore(journal_dir)
    stream = make_stream("r1", steps=["a", "b"], terminal="succeeded")
    good = journal_bytes(stream)
    lines = good.splitlines(keepends=True)
    bad = b"".join([*lines[:2], lines[2].replace(b'"a"', b'"A"'), *lines[3:]])
    path = write_journal(journal_dir, stream, data=bad)
    (summary,) = indexed(store)
    assert summary.status == "running" and summary.events == 2
    assert summary.error is not None and ":3 (byte" in summary.error and "hash chain" in summary.error
    assert indexed(store) == [summary]
    replace_file(path, good)
    assert indexed(store) == [summarize(fold(stream), "r1")]


def test_index_files_are_private_and_versioned(journal_dir: Path) -> None:
    """The index directory is 0700, its files 0600: a manifest of our format, segments of a header line and one JSON line per run."""
    store = JsonlStore(journal_dir)
    write_journal(journal_dir, make_stream("r1"))
    indexed(store)
    directory = journal_dir / INDEX_DIR
    assert directory.stat().st_mode & 0o777 == 0o700
    files = [f for f in directory.iterdir() if f.is_file()]
    assert files and all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    assert orjson.loads((directory / MANIFEST).read_bytes())["format"] == FORMAT
    segments = [f for f in files if f.name.startswith("seg-")]
    assert segments and all(parse_segment(f.read_bytes())[0]["format"] == FORMAT for f in segments)


@pytest.mark.parametrize("damage", ["segment", "manifest"])
def test_a_damaged_index_file_is_ignored_and_rebuilt(journal_dir: Path, damage: str) -> None:
    """A segment or manifest cut short (a disk that lied) costs a re-fold, never a wrong answer or a crash."""
    store = JsonlStore(journal_dir)
    write_journal(journal_dir, make_stream("r1"))
    write_journal(journal_dir, make_stream("r2", terminal=None))
    expected = indexed(store)
    directory = journal_dir / INDEX_DIR
    path = directory / MANIFEST if damage == "manifest" else next(directory.glob("seg-*"))
    path.write_bytes(path.read_bytes()[:-20])
    index = HistoryIndex(store, PROJECTOR)
    assert list(index.summaries()) == expected and index.counts["refolded"] >= 1
    assert indexed(store) == expected


def test_summary_layout_matches_the_saved_rows() -> None:
    """The storage module's row length is the summary's field count (a mismatch would drop every entry)."""
    assert len(SUMMARY_FIELDS) == SUMMARY_LENGTH


def test_summary_times_parse_back(journal_dir: Path) -> None:
    """Summary timestamps are UTC ISO strings that parse back to the events' datetimes."""
    store = JsonlStore(journal_dir)
    stream = make_stream("r1")
    write_journal(journal_dir, stream)
    (summary,) = indexed(store)
    assert parse_time(summary.started_at) == stream[0].ts
    assert parse_time(summary.ended_at) == stream[-1].ts


def test_unwritable_index_still_lists_runs(journal_dir: Path) -> None:
    """When the index cannot be saved (its path is taken by a file), history still works and says why."""
    store = JsonlStore(journal_dir)
    write_journal(journal_dir, make_stream("r1"))
    (journal_dir / INDEX_DIR).write_bytes(b"not a directory")
    index = HistoryIndex(store, PROJECTOR)
    assert list(index.summaries()) == fresh_summaries(store)
    assert index.problem is not None and "not saved" in index.problem


_REFRESHER = textwrap.dedent(
    """
    import sys, time
    from runjournal.journal.jsonl.store import JsonlStore
    from runjournal.journal.jsonl.index import HistoryIndex
    from runjournal.projections.summary import PROJECTOR
    store, deadline = JsonlStore(sys.argv[1]), time.monotonic() + float(sys.argv[2])
    while time.monotonic() < deadline:
        HistoryIndex(store, PROJECTOR).refresh()
    """
)

_APPENDER = textwrap.dedent(
    """
    import sys, time
    from runjournal.journal.run import start_run
    root, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
    n = 0
    while time.monotonic() < deadline:
        with start_run("churn", steps=["s"], root=root, durability="none") as run:
            for _ in range(20):
                run.heartbeat()
                time.sleep(0.002)
        n += 1
    """
)


@pytest.mark.slow
def test_concurrent_refreshes_never_expose_a_half_written_index(journal_dir: Path) -> None:
    """Refreshers racing while runs are appended: every manifest and segment read parses, and the end result is right."""
    store = JsonlStore(journal_dir)
    for n in range(200):
        write_journal(journal_dir, make_stream(f"base-{n:03d}", terminal=None if n % 7 == 0 else "succeeded"))
    seconds = "3"
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, "-c", _APPENDER, str(journal_dir), seconds], env=env)]
    refresher = [sys.executable, "-c", _REFRESHER, str(journal_dir), seconds]
    procs += [subprocess.Popen(refresher, env=env) for _ in range(3)]
    reads = _read_index_until_done(journal_dir / INDEX_DIR, procs)
    assert all(p.returncode == 0 for p in procs)
    assert reads > 20
    assert indexed(store) == fresh_summaries(store)


def _read_index_until_done(directory: Path, procs: list[subprocess.Popen[bytes]]) -> int:
    """Parse the manifest and every segment it names over and over while ``procs`` run; fail on any partial document."""
    reads = 0
    errors: list[str] = []

    def reader() -> None:
        nonlocal reads
        while any(p.poll() is None for p in procs):
            if not (directory / MANIFEST).exists():
                continue
            try:
                manifest = orjson.loads((directory / MANIFEST).read_bytes())
                for name in [row[2] for row in manifest["segments"]]:
                    header, _ = parse_segment((directory / name).read_bytes())
                    if header.get("format") != FORMAT:
                        errors.append(f"{name}: wrong format")
            except FileNotFoundError:
                continue  # a segment a newer manifest dropped, removed after its minute
            except (orjson.JSONDecodeError, ValueError) as exc:
                errors.append(str(exc))
                return
            reads += 1
            summaries = list(HistoryIndex(JsonlStore(directory.parent), PROJECTOR, save=False).summaries())
            if any(s.error for s in summaries):
                errors.append("a run read as corrupt mid-append")

    thread = threading.Thread(target=reader)
    thread.start()
    deadline = time.monotonic() + 60
    for p in procs:
        p.wait(timeout=max(1.0, deadline - time.monotonic()))
    thread.join()
    assert errors == []
    return reads


def test_leftovers_of_crashed_refreshers_and_old_versions_are_removed(journal_dir: Path) -> None:
    """A save removes temporary files and unnamed segments older than a minute and files of other index versions, nothing else."""
    store = JsonlStore(journal_dir)
    write_journal(journal_dir, make_stream("r1"))
    indexed(store)
    directory = journal_dir / INDEX_DIR
    old_temp, new_temp = directory / ".tmp-00-1-aa", directory / ".tmp-00-2-bb"
    old_segment = directory / "seg-0-aa.jsonl"
    old_version = directory / "runs-v3-00.jsonl"
    for file in (old_temp, new_temp, old_version, old_segment):
        file.write_bytes(b"{")
    for file in (old_temp, old_segment):
        os.utime(file, (time.time() - 120, time.time() - 120))
    write_journal(journal_dir, make_stream("r2"))
    indexed(store)
    assert not old_temp.exists() and not old_version.exists() and not old_segment.exists()
    assert new_temp.exists() and indexed_ids(journal_dir) == {"r1", "r2"}


@pytest.mark.parametrize("change", [
    {"anchors": [[1, 2]]}, {"segments": [["a", "z", "../../escape.jsonl", 1, 0]]}, {"runs_dir": "x"}, {"sweep": "1"},
], ids=["short-anchors", "segment-outside", "runs-dir", "sweep"])
def test_a_manifest_with_foreign_values_costs_a_rebuild_never_a_crash(journal_dir: Path, change: dict[str, Any]) -> None:
    """A manifest whose values are not what we write (a hand edit, another tool) is ignored or read as cold."""
    store = JsonlStore(journal_dir)
    write_journal(journal_dir, make_stream("r1"))
    write_journal(journal_dir, make_stream("r2", terminal=None))
    expected = indexed(store)
    path = journal_dir / INDEX_DIR / MANIFEST
    path.write_bytes(orjson.dumps({**orjson.loads(path.read_bytes()), **change}))
    assert indexed(store) == expected
    assert indexed(store) == expected
