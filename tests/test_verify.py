"""Integrity: any single-byte change to a completed journal is reported by verify, with its location."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from runjournal.cli.main import cli
from runjournal.journal.events import Event
from runjournal.journal.testing import (
    event_streams,
    journal_lines,
    make_heartbeat,
    make_identity,
    make_progress,
    make_started,
    make_stream,
    make_succeeded,
    write_journal,
)
from runjournal.journal.verify import Problem, verify_file

RUN = "20260101T000000000000Z-0001"


def line_start(lines: list[bytes], position: int) -> tuple[int, int]:
    """(1-based line number, start offset) of the line holding byte ``position`` (newline included)."""
    start = 0
    for number, line in enumerate(lines, 1):
        if position < start + len(line):
            return number, start
        start += len(line)
    raise AssertionError("position past the end")


def check_mutation(path: Path, fd: int, lines: list[bytes], position: int, new: int, run_id: str) -> None:
    """Overwrite one byte in place, verify, restore; the first problem must be on the mutated line."""
    old = os.pread(fd, 1, position)
    os.pwrite(fd, bytes([new]), position)
    try:
        problems = list(verify_file(path, run_id))
    finally:
        os.pwrite(fd, old, position)
    assert problems, f"byte {position} changed {old!r} -> {bytes([new])!r} went unnoticed"
    assert (problems[0].line, problems[0].offset) == line_start(lines, position)


@given(stream=event_streams(terminal=True, max_steps=3), data=st.data())
def test_any_single_byte_change_is_reported(stream: list[Event], data: st.DataObject) -> None:
    """Changing any one byte of a completed journal to any other value is a verify problem on that line."""
    lines = journal_lines(stream)
    size = sum(map(len, lines))
    position = data.draw(st.integers(0, size - 1), label="position")
    with tempfile.TemporaryDirectory() as root:
        path = write_journal(root, stream)
        original = path.read_bytes()[position]
        new = data.draw(st.integers(0, 255).filter(lambda b: b != original), label="new byte")
        fd = os.open(path, os.O_RDWR)
        try:
            assert list(verify_file(path, stream[0].run_id)) == []
            check_mutation(path, fd, lines, position, new, stream[0].run_id)
        finally:
            os.close(fd)


def replacements(old: int) -> set[int]:
    """The byte values tried at each offset: every bit flip, a newline and a space; all 255 others
    with ``RUNJOURNAL_EXHAUSTIVE=1`` (about 20x slower)."""
    if os.environ.get("RUNJOURNAL_EXHAUSTIVE") == "1":
        return set(range(256)) - {old}
    return {old ^ (1 << bit) for bit in range(8)} | {ord("\n"), ord(" ")} - {old}


def test_every_byte_changed_at_every_offset_is_reported(journal_dir: Path) -> None:
    """Exhaustive sweep over a small completed journal: each offset, each replacement byte, is a problem."""
    stream = [
        make_started(steps=["b"], writer=make_identity(argv=[])),
        make_progress(1, "b", "succeeded", exit_code=0),
        make_succeeded(2),
    ]
    lines = journal_lines(stream)
    path = write_journal(journal_dir, stream)
    data = path.read_bytes()
    fd = os.open(path, os.O_RDWR)
    tried = 0
    try:
        for position, old in enumerate(data):
            for new in sorted(replacements(old)):
                check_mutation(path, fd, lines, position, new, RUN)
                tried += 1
    finally:
        os.close(fd)
    assert path.read_bytes() == data
    assert tried >= len(data) * 9
    print(f"{tried} single-byte changes over {len(data)} bytes, all reported")


def test_a_clean_journal_has_no_problems(journal_dir: Path) -> None:
    """A journal written by our codec verifies clean."""
    path = write_journal(journal_dir, make_stream())
    assert list(verify_file(path, RUN)) == []


def test_each_damaged_line_is_one_problem(journal_dir: Path) -> None:
    """Verification resynchronises after a bad line, so two damaged lines give exactly two problems."""
    stream = make_stream(steps=("a", "b", "c"))
    lines = journal_lines(stream)
    lines[2] = lines[2].replace(b'"state":"succeeded"', b'"state":"failed"')
    lines[5] = lines[5].replace(b'"step":"c"', b'"step":"d"')
    path = write_journal(journal_dir, stream, data=b"".join(lines))
    problems = list(verify_file(path, RUN))
    assert [(p.line, p.kind) for p in problems] == [(3, "integrity"), (6, "integrity")]
    assert problems[0].offset == len(lines[0]) + len(lines[1])


def test_problems_of_every_kind_are_named(journal_dir: Path) -> None:
    """Sequence, corrupt and torn-tail problems each carry their kind and location."""
    stream = make_stream(terminal=None)
    lines = journal_lines([*stream, make_heartbeat(len(stream) + 1)])  # skips a seq
    path = write_journal(journal_dir, stream, data=b"".join(lines) + b"{not json}\n" + b'{"v":1')
    problems = list(verify_file(path, RUN))
    assert [p.kind for p in problems] == ["sequence", "corrupt", "torn-tail"]
    end = sum(map(len, lines))
    assert [p.offset for p in problems] == [end - len(lines[-1]), end, end + len(b"{not json}\n")]
    assert "runjournal reconcile" in problems[-1].reason


def test_an_empty_or_missing_journal_is_a_problem(journal_dir: Path) -> None:
    """A file with no complete line has no ``started``; a missing file is unreadable."""
    path = write_journal(journal_dir, make_stream(), data=b"")
    assert [p.kind for p in verify_file(path, RUN)] == ["empty"]
    assert [p.kind for p in verify_file(journal_dir / "nope.jsonl", "nope")] == ["unreadable"]


def test_problem_text_names_file_line_and_byte() -> None:
    """A problem prints as path:line (byte N): kind: reason."""
    assert str(Problem("/j/r.jsonl", 3, 120, "integrity", "hash")) == "/j/r.jsonl:3 (byte 120): integrity: hash"


# --- runjournal verify ---------------------------------------------------------------------


def invoke(root: Path, *args: str) -> object:
    return CliRunner().invoke(cli, ["--root", str(root), "verify", *args])


def test_cli_verify_exits_0_when_clean(journal_dir: Path) -> None:
    """Clean runs: exit 0, nothing on stdout, a summary on stderr."""
    write_journal(journal_dir, make_stream())
    write_journal(journal_dir, make_stream(run_id="second"))
    result = invoke(journal_dir)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "2 run(s) checked, 0 with problems" in result.stderr


def test_cli_verify_exits_1_and_prints_each_problem_with_its_location(journal_dir: Path) -> None:
    """A changed byte: exit 1, and the problem line names file, line and byte offset."""
    lines = journal_lines(make_stream())
    lines[1] = lines[1].replace(b'"step":"build"', b'"step":"bui1d"')
    path = write_journal(journal_dir, make_stream(), data=b"".join(lines))
    write_journal(journal_dir, make_stream(run_id="fine"))
    result = invoke(journal_dir)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{path}:2 (byte {len(lines[0])}): integrity: "
        "hash chain mismatch: the line (or one before it) was changed after it was written"
    ]
    assert "2 run(s) checked, 1 with problems" in result.stderr


def test_cli_verify_json_reports_runs_and_problems(journal_dir: Path) -> None:
    """--json gives one document with per-run problems; a run can be named by prefix."""
    path = write_journal(journal_dir, make_stream(), fragment=b'{"v"')
    result = invoke(journal_dir, "--json", "2026")
    assert result.exit_code == 1
    report = orjson.loads(result.stdout)
    assert report["ok"] is False
    [run] = report["runs"]
    assert (run["run_id"], run["path"], run["ok"]) == (RUN, str(path), False)
    offset = path.stat().st_size - 4
    assert run["problems"] == [
        {"path": str(path), "line": 7, "offset": offset, "kind": "torn-tail",
         "reason": "the last 4 bytes have no newline (a write cut short by a crash; readers ignore them); "
                   "'runjournal reconcile' moves them aside when it records a dead writer's run abandoned; "
                   f"on a finished run they are harmless (to drop them: truncate -s {offset} {path})"}
    ]


@pytest.mark.parametrize("ref", ["nope", "../../etc/passwd"])
def test_cli_verify_of_an_unknown_or_hostile_run_is_a_one_line_error(journal_dir: Path, ref: str) -> None:
    """A bad run reference exits 2 with one line on stderr and no traceback."""
    write_journal(journal_dir, make_stream())
    result = invoke(journal_dir, ref)
    assert result.exit_code == 2
    assert result.stderr.startswith("runjournal: error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
