"""Verify once, then read fast: the JSONL store's fast path gives exactly what the strict path gives, and stays honest."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from run_helpers import append_bytes, last_hash

from runjournal.journal.errors import CorruptLineError, IntegrityError, JournalError
from runjournal.journal.jsonl import JsonlStore
from runjournal.journal.jsonl.foldrecords import load as load_record
from runjournal.journal.run import start_run
from runjournal.journal.testing import JournalFile, journal_files, journal_lines, make_heartbeat, write_journal
from runjournal.projections.fold import fold, fold_into
from runjournal.projections.state import RunState
from runjournal.projections.summary import PROJECTOR

STRICT = 1 << 62
"""A fold-record threshold no test run reaches: every read is a strict one."""


def stores(tmp: str) -> tuple[JsonlStore, JsonlStore]:
    """A store that always reads strictly and one that records every run (and so reads fast when it can)."""
    strict, fast = JsonlStore(Path(tmp) / "strict"), JsonlStore(Path(tmp) / "fast")
    strict.fold_record_min_bytes = STRICT
    fast.fold_record_min_bytes = 0
    return strict, fast


def outcome(store: JsonlStore, call: Callable[[], Any]) -> tuple[str, Any]:
    """What a read gave: its value, or its error with the store's root taken out of the message."""
    try:
        return ("ok", call())
    except (JournalError, OSError) as exc:
        return ("error", type(exc).__name__, str(exc).replace(str(store.root), "<root>"))


def projected(store: JsonlStore, run_id: str) -> tuple[Any, Any, str | None]:
    """A run's projection as comparable values: the fold, where it stopped, and the first bad line's error."""
    p = store.project(run_id, PROJECTOR)
    return p.state, p.cursor, None if p.damage is None else str(p.damage).replace(str(store.root), "<root>")


def reads(store: JsonlStore, run_id: str) -> list[tuple[str, Any]]:
    """The fold, the plain events, and the fold again (the second read of each can take the fast path)."""
    return [
        outcome(store, lambda: projected(store, run_id)),
        outcome(store, lambda: list(store.read_plain(run_id))),
        outcome(store, lambda: list(store.read_plain(run_id))),
        outcome(store, lambda: projected(store, run_id)),
    ]


def strict_fold(store: JsonlStore, run_id: str) -> tuple[Any, Any, str | None]:
    """The fold of the strict model reader up to the first bad line, where it stopped, and that line's error."""
    reader, state = store.read(run_id), RunState()
    try:
        fold_into(state, reader.events())
    except CorruptLineError as exc:
        return state, reader.cursor, str(exc).replace(str(store.root), "<root>")
    return state, reader.cursor, None


def reference(store: JsonlStore, run_id: str) -> list[tuple[str, Any]]:
    """The same reads through the strict model reader."""
    state = outcome(store, lambda: strict_fold(store, run_id))
    plain = outcome(store, lambda: [r.event.model_dump(mode="json") for r in store.read(run_id)])
    return [state, plain, plain, state]


@given(journal_files())
def test_fast_and_strict_reads_agree_on_every_journal(journal: JournalFile) -> None:
    """Clean, torn, foreign or damaged: the fast path's folds and events (or errors) equal the strict reader's."""
    with tempfile.TemporaryDirectory() as tmp:
        strict, fast = stores(tmp)
        for store in (strict, fast):
            write_journal(store.root, journal.events, data=journal.data)
        expected = reference(strict, journal.run_id)
        assert reads(strict, journal.run_id) == expected
        assert reads(fast, journal.run_id) == expected


@given(journal_files(damages=["clean", "foreign", "torn"]), st.data())
def test_appended_events_are_verified_and_read_with_the_prefix(journal: JournalFile, data: st.DataObject) -> None:
    """A recorded run that grows is read from its record plus the new bytes: the same as reading it whole."""
    events = journal.events
    cut = data.draw(st.integers(1, len(events)))
    with tempfile.TemporaryDirectory() as tmp:
        strict, fast = stores(tmp)
        head = b"".join(journal_lines(events[:cut]))
        for store in (strict, fast):
            write_journal(store.root, events, data=head)
        reads(fast, journal.run_id)
        rest = b"".join(journal_lines(events[cut:], last_hash(events[:cut])))
        for store in (strict, fast):
            append_bytes(store.path(journal.run_id), rest)
        assert reads(fast, journal.run_id) == reference(strict, journal.run_id)


# ---- honesty --------------------------------------------------------------------------------------


@pytest.fixture
def finished(journal_dir: Path) -> tuple[JsonlStore, str]:
    """A finished run, written through the API (so anchored: its terminal event is synced), read once so its fold is recorded."""
    store = JsonlStore(journal_dir)
    store.fold_record_min_bytes = 0
    with start_run("deploy", steps=["build", "test"], store=store) as run:
        for step in ("build", "test"):
            run.step_started(step)
            run.step_succeeded(step, exit_code=0)
    store.project(run.run_id, PROJECTOR)
    assert load_record(store.folds_dir, run.run_id) is not None
    return store, run.run_id


def _refused_by_every_read(store: JsonlStore, run_id: str, reason: str, kind: str) -> None:
    """Both reads and the fold refuse the run naming ``reason``; ``verify`` reports one problem of ``kind``."""
    for read in (store.read_plain, lambda run: store.read(run).events()):
        with pytest.raises(IntegrityError, match=reason):
            list(read(run_id))
    damage = store.project(run_id, PROJECTOR).damage
    assert isinstance(damage, IntegrityError) and reason in str(damage)
    assert [p.kind for p in store.verify(run_id)] == [kind]


def test_a_byte_changed_in_the_verified_prefix_with_the_mtime_restored_is_caught(
    finished: tuple[JsonlStore, str],
) -> None:
    """Same size, mtime put back with os.utime: the ctime gives it away, and the strict read names the line."""
    store, run_id = finished
    path = store.path(run_id)
    before = path.stat()
    data = bytearray(path.read_bytes())
    at = data.index(b'"build"') + 2
    data[at] = ord("x")
    with open(path, "r+b") as file:
        file.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    _refused_by_every_read(store, run_id, "hash chain mismatch", "integrity")


def test_dropping_the_final_lines_of_a_finished_run_is_caught(finished: tuple[JsonlStore, str]) -> None:
    """Cut back to a shorter, still valid chain: every read refuses it, naming the anchor; verify reports it."""
    store, run_id = finished
    path = store.path(run_id)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]))
    _refused_by_every_read(store, run_id, "cut short after it finished", "anchor")


def test_a_rehashed_rewrite_of_a_finished_run_is_caught(finished: tuple[JsonlStore, str]) -> None:
    """``succeeded`` rewritten as ``failed`` with the chain recomputed: valid lines, but not the anchored head."""
    from runjournal.journal.events import Failed, FailReason

    store, run_id = finished
    events = [r.event for r in store.read(run_id)]
    last = events[-1]
    forged = Failed(run_id=run_id, seq=last.seq, ts=last.ts, reason=FailReason.STEP_FAILED)
    store.path(run_id).write_bytes(b"".join(journal_lines([*events[:-1], forged])))
    _refused_by_every_read(store, run_id, "changed after it finished", "anchor")


def test_a_late_event_is_read_after_the_recorded_prefix_and_anchored(finished: tuple[JsonlStore, str]) -> None:
    """A late event appended by a writer is verified on its own; the run's fold counts it; a new head is anchored."""
    store, run_id = finished
    writer = store.open_writer(run_id)
    try:
        writer.append_event(make_heartbeat(writer.next_seq, run_id=run_id))
    finally:
        writer.close()
    state = store.project(run_id, PROJECTOR).state
    assert len(state.late_events) == 1 and state.status == "succeeded"
    assert [a.seq for a in store.anchors(run_id)] == [state.last_seq - 1, state.last_seq]
    assert store.project(run_id, PROJECTOR).state == fold(store.read(run_id).events())


def strictly_checked_lines(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the lines the strict part of a read checks (from here on)."""
    from runjournal.journal.jsonl import plainread

    seen: list[int] = []
    real = plainread.is_exact

    def counting(obj: dict[str, Any], run_id: str, seq: int) -> bool:
        seen.append(seq)
        return real(obj, run_id, seq)

    monkeypatch.setattr(plainread, "is_exact", counting)
    return seen


def test_a_second_read_checks_no_line_again(finished: tuple[JsonlStore, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a run is verified, its fold comes from the record and its events from the fast prefix: no line is re-checked."""
    store, run_id = finished
    expected = [r.event.model_dump(mode="json") for r in store.read(run_id)]
    list(store.read_plain(run_id))
    checked = strictly_checked_lines(monkeypatch)
    assert store.project(run_id, PROJECTOR).state == fold(store.read(run_id).events())
    assert list(store.read_plain(run_id)) == expected
    assert checked == []


def test_a_replaced_file_is_read_strictly(finished: tuple[JsonlStore, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Another inode under the run's name, with the very same bytes: the record is not trusted, every line is checked."""
    store, run_id = finished
    path = store.path(run_id)
    tmp = path.with_name(".replacement")
    tmp.write_bytes(path.read_bytes())
    os.replace(tmp, path)
    checked = strictly_checked_lines(monkeypatch)
    list(store.read_plain(run_id))
    assert checked == list(range(1, len(path.read_bytes().splitlines())))  # line 1 (started) takes the model's way


def test_a_file_cut_below_its_record_is_read_strictly(finished: tuple[JsonlStore, str]) -> None:
    """Shorter than the verified prefix: the record is not trusted; the strict read finds the anchor broken."""
    store, run_id = finished
    path = store.path(run_id)
    os.truncate(path, path.stat().st_size - 5)
    with pytest.raises(CorruptLineError, match="cut short"):
        list(store.read_plain(run_id))
