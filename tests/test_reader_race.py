"""A reader racing a reconciler's truncate-and-append never reports a line that was never written."""

from __future__ import annotations

import os

import pytest

from runjournal.journal import lines as lines_module
from runjournal.journal.errors import CorruptLineError
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.testing import journal_lines, make_abandoned, make_stream, write_journal


def _torn_journal(store: JsonlStore) -> tuple[str, list[bytes], bytes]:
    stream = make_stream(steps=["build"])
    run_id = stream[0].run_id
    lines = journal_lines([*stream, make_abandoned(len(stream))])
    path = write_journal(store.root, stream)
    # Whatever the killed writer left, its bytes differ from the abandoned line that replaces it.
    fragment = b'{"torn":"' + b"x" * 80
    with open(path, "ab") as f:
        f.write(fragment)
    return run_id, lines, fragment


def _cut_and_append_between_reads(monkeypatch: pytest.MonkeyPatch, path: str, good_size: int, line: bytes) -> None:
    """After the first pread that sees the torn fragment, do what reconcile does: truncate, append."""
    real_pread = os.pread
    done = False

    def pread(fd: int, n: int, offset: int) -> bytes:
        nonlocal done
        data = real_pread(fd, n, offset)
        if not done and offset + len(data) > good_size:
            done = True
            with open(path, "r+b") as f:
                f.truncate(good_size)
                f.seek(good_size)
                f.write(line)
        return data

    monkeypatch.setattr(lines_module.os, "pread", pread)
    monkeypatch.setattr(lines_module, "CHUNK_BYTES", 64)


def test_reader_rereads_a_line_glued_by_a_concurrent_repair(journal_dir, monkeypatch):
    """Fragment bytes from one read and new-line bytes from the next are re-read, not reported as corrupt."""
    store = JsonlStore(journal_dir)
    run_id, lines, fragment = _torn_journal(store)
    path = store.path(run_id)
    good_size = sum(len(line) for line in lines[:-1])
    _cut_and_append_between_reads(monkeypatch, str(path), good_size, lines[-1])

    events = list(store.read(run_id).events())

    assert [e.type for e in events][-1] == "abandoned"
    assert len(events) == len(lines)


def test_reader_still_reports_real_corruption(journal_dir):
    """A line that is corrupt on disk is reported even though the reader tries it again."""
    store = JsonlStore(journal_dir)
    stream = make_stream(steps=["build"])
    path = write_journal(store.root, stream)
    data = bytearray(path.read_bytes())
    second = data.index(b"\n") + 1
    data[second + 10] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(CorruptLineError) as caught:
        list(store.read(stream[0].run_id).events())

    assert caught.value.line == 2 and caught.value.offset == second
