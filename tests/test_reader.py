"""The run reader: strict in the middle, lenient at the tail, resumable from a cursor."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings

from runjournal.journal.codec import MAX_LINE_BYTES, chain_hash
from runjournal.journal.errors import CorruptLineError, IntegrityError, SequenceError, UnsupportedVersionError
from runjournal.journal.events import Event, PlannedStep
from runjournal.journal.jsonl.reader import JsonlRunReader, scan_to_end
from runjournal.journal.lines import TornTail
from runjournal.journal.records import Cursor
from runjournal.journal.testing import (
    event_streams,
    journal_bytes,
    journal_lines,
    make_heartbeat,
    make_progress,
    make_started,
    make_stream,
    torn_streams,
    write_journal,
)

RUN = "20260101T000000000000Z-0001"


def read_all(path: Path, run_id: str, cursor: Cursor | None = None) -> tuple[list[Event], JsonlRunReader]:
    """Every event from ``cursor`` on, and the exhausted reader."""
    reader = JsonlRunReader(path, run_id, cursor)
    return list(reader.events()), reader


def assert_reads_as_truncated(path: Path, stream: Sequence[Event], data: bytes) -> None:
    """Cut ``path`` at every byte offset, from the end down, and check what the reader returns."""
    ends = [0]
    for line in journal_lines(stream):
        ends.append(ends[-1] + len(line))
    assert ends[-1] == len(data)
    whole = len(stream)
    for cut in range(len(data), -1, -1):
        os.truncate(path, cut)
        while ends[whole] > cut:
            whole -= 1
        events, reader = read_all(path, stream[0].run_id)
        assert events == list(stream[:whole])
        assert reader.cursor.offset == ends[whole] and reader.cursor.seq == whole
        if cut == ends[whole]:
            assert reader.torn_tail is None
        else:
            assert reader.torn_tail == TornTail(whole + 1, ends[whole], cut - ends[whole], data[ends[whole] : cut][:64])


def test_truncating_at_every_byte_offset_keeps_exactly_the_whole_lines(journal_dir: Path) -> None:
    """A fan-out run cut at any byte reads back the lines before the cut, the rest as a torn tail."""
    stream = make_stream(steps=("build",), terminal=None)
    stream[0] = make_started(steps=[PlannedStep(name="build", items=["a", "b"])])
    stream += [
        make_progress(len(stream), "build", item="a", item_state="succeeded", done=1, total=2),
        make_heartbeat(len(stream) + 1),
    ]
    path = write_journal(journal_dir, stream)
    assert_reads_as_truncated(path, stream, path.read_bytes())


@settings(max_examples=10)
@given(event_streams(max_steps=2, max_items=2))
def test_truncating_generated_runs_at_every_byte_offset(stream: list[Event]) -> None:
    """For any valid run, every truncation reads back exactly the whole lines before the cut."""
    with tempfile.TemporaryDirectory() as root:
        path = write_journal(root, stream)
        assert_reads_as_truncated(path, stream, path.read_bytes())


@given(torn_streams())
def test_a_torn_tail_is_reported_and_never_parsed(torn: Any) -> None:
    """A final fragment is a torn tail at the end of the whole lines, never an event."""
    with tempfile.TemporaryDirectory() as root:
        path = write_journal(root, torn.events, fragment=torn.fragment)
        events, reader = read_all(path, torn.torn.run_id)
    assert events == torn.events
    assert reader.torn_tail is not None
    assert (reader.torn_tail.offset, reader.torn_tail.length) == (torn.whole_length, len(torn.fragment))
    assert reader.torn_tail.line_no == len(torn.events) + 1


def test_a_complete_line_without_its_newline_is_still_a_torn_tail(journal_dir: Path) -> None:
    """Even a fragment that is a valid event line minus the newline is not trusted."""
    stream = make_stream()
    lines = journal_lines(stream)
    path = write_journal(journal_dir, stream, data=b"".join(lines)[:-1])
    events, reader = read_all(path, RUN)
    assert events == stream[:-1]
    assert reader.torn_tail is not None and reader.torn_tail.length == len(lines[-1]) - 1


def test_reading_resumes_from_a_cursor(journal_dir: Path) -> None:
    """A reader started from a saved cursor yields only what was appended after it."""
    stream = make_stream()
    lines = journal_lines(stream)
    path = write_journal(journal_dir, stream, data=b"".join(lines[:2]))
    first, reader = read_all(path, RUN)
    with open(path, "ab") as f:
        f.write(b"".join(lines[2:]))
    rest, _ = read_all(path, RUN, reader.cursor)
    assert first == stream[:2] and rest == stream[2:]


def test_a_tail_completed_by_the_writer_is_read_on_the_next_pass(journal_dir: Path) -> None:
    """A reader racing the writer sees a torn tail first, then the whole line from its cursor."""
    stream = make_stream()
    data = journal_bytes(stream)
    half = len(data) - 40
    path = write_journal(journal_dir, stream, data=data[:half])
    first, reader = read_all(path, RUN)
    assert reader.torn_tail is not None
    with open(path, "ab") as f:
        f.write(data[half:])
    rest, again = read_all(path, RUN, reader.cursor)
    assert first + rest == stream and again.torn_tail is None


def test_scan_to_end_returns_the_cursor_of_the_last_line(journal_dir: Path) -> None:
    """scan_to_end validates the whole file and leaves the cursor after the last line."""
    stream = make_stream()
    path = write_journal(journal_dir, stream)
    reader = scan_to_end(path, RUN)
    assert reader.cursor.offset == path.stat().st_size
    assert reader.cursor.seq == len(stream) and reader.cursor.line == len(stream) + 1


# --- strict in the middle: each corruption names file, line, byte offset --------------------

GOOD = make_stream(terminal=None)[:2]
GOOD_LINES = journal_lines(GOOD)
PREV_H = GOOD_LINES[-1][-67:-3].decode()
NEXT = {"v": 1, "run_id": RUN, "seq": 2, "ts": "2026-01-01T00:00:02.000000Z", "type": "heartbeat"}


def hashed(body: bytes) -> bytes:
    """``body`` completed with the correct ``h`` after the second good line."""
    return body + b',"h":"' + chain_hash(PREV_H, body).encode() + b'"}\n'


def with_h(obj: dict[str, Any]) -> bytes:
    return hashed(orjson.dumps(obj)[:-1])


def chained(event: Event) -> bytes:
    return journal_lines([*GOOD, event])[-1]


BODY = orjson.dumps(NEXT)[:-1]
BAD_THIRD_LINE: dict[str, tuple[bytes, type[CorruptLineError], str]] = {
    "corrupt JSON": (b'{"v":1,"run_id":' + b"\n", CorruptLineError, "invalid JSON"),
    "NaN": (hashed(BODY + b',"x":NaN'), CorruptLineError, "invalid JSON"),
    "duplicate key": (hashed(BODY + b',"seq":2'), CorruptLineError, "duplicate key 'seq'"),
    "invalid UTF-8": (hashed(BODY[:-1] + b'\xfe"'), CorruptLineError, "UTF-8"),
    "over the size cap": (b"x" * (MAX_LINE_BYTES + 10) + b"\n", CorruptLineError, "over the 1048576-byte cap"),
    "wrong seq": (chained(make_heartbeat(5)), SequenceError, "seq 5 where 2 was expected"),
    "wrong run_id": (chained(make_heartbeat(2, run_id="other-run")), SequenceError, "run_id 'other-run'"),
    "unknown type": (with_h(NEXT | {"type": "exploded"}), CorruptLineError, "unknown event type 'exploded'"),
    "future version": (with_h(NEXT | {"v": 9}), UnsupportedVersionError, "version 9 is newer"),
    "hash mismatch": (chained(make_heartbeat(2)).replace(b'"seq":2', b'"seq":3'), IntegrityError, "hash chain"),
}


@pytest.mark.parametrize("case", sorted(BAD_THIRD_LINE))
def test_a_bad_line_in_the_middle_is_an_error_naming_file_line_and_offset(journal_dir: Path, case: str) -> None:
    """The events before the bad line are read, then the error says where and why."""
    bad, error_cls, reason = BAD_THIRD_LINE[case]
    after = make_heartbeat(3)
    path = write_journal(journal_dir, GOOD, data=b"".join(GOOD_LINES) + bad + journal_lines([after])[0])
    reader = JsonlRunReader(path, RUN)
    seen: list[Event] = []
    with pytest.raises(error_cls) as info:
        seen.extend(reader.events())
    offset = len(b"".join(GOOD_LINES))
    assert seen == GOOD
    assert (info.value.path, info.value.line, info.value.offset) == (str(path), 3, offset)
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{path}:3 (byte {offset}): ")


def test_a_run_must_begin_with_started(journal_dir: Path) -> None:
    """A first line that is not ``started`` is a sequence error on line 1."""
    path = write_journal(journal_dir, [make_heartbeat(0)])
    with pytest.raises(SequenceError, match=r":1 \(byte 0\): first event is 'heartbeat'"):
        read_all(path, RUN)


def test_a_bad_last_line_with_its_newline_is_an_error_not_a_torn_tail(journal_dir: Path) -> None:
    """Leniency is only for a fragment without a newline; a complete bad line is corrupt."""
    path = write_journal(journal_dir, GOOD, fragment=b'{"v":1}\n')
    with pytest.raises(CorruptLineError, match=":3 "):
        read_all(path, RUN)
