"""What users see does not depend on the path a read took: show, replay and history print the same either way."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings

from runjournal.cli.main import cli
from runjournal.journal.jsonl import JsonlStore
from runjournal.journal.testing import JournalFile, journal_files, write_journal

COMMANDS = (
    ("show", "--json"), ("replay", "--json"), ("replay",), ("replay", "--until", "2", "--json"),
)


_NOW = re.compile(r'"now":"[^"]*"|"age_seconds":[0-9.e+-]+|last event -?[0-9.]+s ago')
"""What a liveness verdict says about the reader's clock: it moves between two calls, whatever the path."""


def run(root: Path, *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of one in-process CLI call, the root's path and the clock taken out."""
    result = CliRunner().invoke(cli, ["--root", str(root), *args], catch_exceptions=False)
    out, err = (_NOW.sub("<now>", text.replace(str(root), "<root>")) for text in (result.stdout, result.stderr))
    return result.exit_code, out, err


def outputs(root: Path, run_id: str) -> list[tuple[int, str, str]]:
    """Every read command's output for the run, without reconciling (nothing may change between calls)."""
    got = [run(root, *command[:1], run_id, *command[1:], "--no-reconcile") for command in COMMANDS]
    got.append(run(root, "history", "--json", "--no-reconcile"))
    return got


@settings(max_examples=12)
@given(journal_files())
def test_show_replay_and_history_print_the_same_on_the_fast_and_the_strict_path(journal: JournalFile) -> None:
    """Strict reads of a cold journal, first (verifying) reads, and second (fast) reads give the same bytes."""
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        roots = [Path(tmp) / name for name in ("strict", "fast")]
        for root in roots:
            root.mkdir(mode=0o700)
            write_journal(root, journal.events, data=journal.data)
        patch.setattr(JsonlStore, "fold_record_min_bytes", 1 << 62)
        strict = outputs(roots[0], journal.run_id)
        shutil.rmtree(roots[0] / "index", ignore_errors=True)
        assert_same(outputs(roots[0], journal.run_id), strict)  # the strict path is repeatable
        patch.setattr(JsonlStore, "fold_record_min_bytes", 0)
        first = outputs(roots[1], journal.run_id)
        assert (roots[1] / "index" / "folds").exists() or journal.damage in ("flipped", "dropped", "duplicated")
        assert_same(first, strict)
        assert_same(outputs(roots[1], journal.run_id), strict)


def assert_same(got: list[tuple[int, str, str]], expected: list[tuple[int, str, str]]) -> None:
    """Equal outputs, or an error showing the first place they differ."""
    for command, (a, b) in enumerate(zip(got, expected, strict=True)):
        for part, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                at = next((i for i, (p, q) in enumerate(zip(str(x), str(y))) if p != q), min(len(str(x)), len(str(y))))
                raise AssertionError(f"command {command}, part {part}: ...{str(x)[max(0, at - 120):at + 120]!r}... "
                                     f"!= ...{str(y)[max(0, at - 120):at + 120]!r}...")


def test_show_json_streams_its_lists_to_the_same_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    """The streamed ``show --json`` document is byte for byte the one dumping the whole object gives."""
    from runjournal.cli.rendering.output import dumps, emit_json_streamed

    obj = {"run_id": "r", "steps": [], "n": 1, "completed": [], "empty": [], "tail": {"a": None}}
    streams = {"steps": iter([{"name": "a"}, {"name": "b", "items": [1, 2]}]), "completed": iter(range(700)),
               "empty": iter(())}
    emit_json_streamed(obj, streams, batch=100)
    whole = dict(obj, steps=[{"name": "a"}, {"name": "b", "items": [1, 2]}], completed=list(range(700)))
    assert capsys.readouterr().out == dumps(whole) + "\n"
