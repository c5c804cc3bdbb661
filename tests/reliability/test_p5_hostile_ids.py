"""Promise 5 (part 2): hostile run ids and paths are refused before they touch the file system.

Traversal, absolute paths, NUL, overlong ids, unicode look-alikes of ``/`` and ``.``, control
and bidi characters, shell metacharacters; then symlinked run files, runs directories, roots
and log directories, and files where directories should be.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runjournal.journal.errors import InvalidRunIdError, JournalError
from runjournal.journal.events import StepProgress
from runjournal.journal.ids import validate_run_id
from runjournal.journal.jsonl.store import JsonlStore

from .corpus import RUN_ID, base_events, chain, run_file
from .figures import record
from .helpers import FULL, assert_clean_failure, run_cli, write_orphan

reconcile = pytest.importorskip("runjournal.projections.reconcile")
pytest.importorskip("runjournal.cli.commands.show")
pytest.importorskip("runjournal.cli.commands.logs")

HOSTILE_IDS: list[str] = [
    "../x",
    "../../etc/passwd",
    "..",
    ".",
    "...",
    "/etc/passwd",
    "/",
    "a/b",
    "a\\b",
    "C:\\Windows\\system32",
    "",
    " ",
    " run",
    "run ",
    ".hidden",
    "-rf",
    "_leading-underscore",
    "a" * 129,
    "a" * 4096,
    "run\n",
    "run\r\nforged: line",
    "run\t",
    "\x1b[31mred",
    "\x1b]8;;http://evil/\x07link",
    "run\x7f",
    "run\u202etxt.exe",
    "run\u2066x",
    "run\u200bx",
    "a\uff0fb",  # fullwidth solidus
    "a\u2215b",  # division slash
    "a\u2044b",  # fraction slash
    "\u2024\u2024/x",  # one-dot leaders
    "\uff0e\uff0e\uff0fx",  # fullwidth full stops and solidus
    "\uff52\uff55\uff4e",  # fullwidth "run"
    "ru\u0301n",  # combining accent
    "%2e%2e%2fx",
    "..%2fx",
    "run;rm -rf ~",
    "$(id)",
    "`id`",
    "run*",
    "run?",
    "~root",
    "run|cat",
    "run>out",
]
"""Run ids no command may turn into a path (the CLI cases; NUL cannot travel in argv)."""

NUL_IDS = ["run\x00", "\x00", "a\x00/../../etc/passwd"]


def test_there_are_at_least_thirty_hostile_ids() -> None:
    """The hostile list is long enough to mean something (the issue asks for 30)."""
    assert len(set(HOSTILE_IDS + NUL_IDS)) >= 30


@pytest.mark.parametrize("run_id", HOSTILE_IDS + NUL_IDS, ids=range(len(HOSTILE_IDS + NUL_IDS)))
def test_a_hostile_run_id_is_refused_by_every_api_entry(run_id: str, tmp_path: Path) -> None:
    """Validation, path building, lookup, reading, reconciling and locking all refuse the id with
    one line, and nothing is created."""
    store = JsonlStore(tmp_path / "root")
    write_orphan(store, "20260101T000000000000Z-0k0k", events=2)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    calls = [validate_run_id, store.path, store.side_files.log_dir, store.resolve, store.read, store.open_writer,
             lambda r: reconcile.reconcile_run(store, r), lambda r: reconcile.current_state(store, r)]
    for call in calls:
        with pytest.raises(InvalidRunIdError) as caught:
            call(run_id)
        assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


CLI_COMMANDS = [("show",), ("replay",), ("follow",), ("verify",), ("logs",), ("reconcile", "--dry-run"), ("cancel",)]


def _cli_cases() -> list[tuple[tuple[str, ...], str]]:
    if FULL:
        return [(cmd, rid) for rid in HOSTILE_IDS for cmd in CLI_COMMANDS]
    # CI: every id through `show`, and every command with a rotating share of the ids.
    cases = [(("show",), rid) for rid in HOSTILE_IDS]
    cases += [(CLI_COMMANDS[1 + i % (len(CLI_COMMANDS) - 1)], rid) for i, rid in enumerate(HOSTILE_IDS[::3])]
    return cases


@pytest.mark.slow
def test_a_hostile_run_id_is_refused_by_the_cli(tmp_path: Path) -> None:
    """Every command refuses every hostile id with exit 2 and one sanitised line, and writes nothing."""
    store = JsonlStore(tmp_path / "root")
    write_orphan(store, "20260101T000000000000Z-0k0k", events=2)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    cases = _cli_cases()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda case: run_cli(store.root, *case[0], "--", case[1]), cases))
    for result in results:
        assert_clean_failure(result, codes=(2,))
        assert "invalid run id" in result.stderr, result.describe()
        assert len(result.stderr.strip().splitlines()) == 1, result.describe()
        assert not any(ch in result.stderr for ch in "\x1b\x07\u202e\u2066\x7f"), result.describe()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    ids = len(HOSTILE_IDS) + len(NUL_IDS)
    record(5, "hostile run ids", 0, ids=ids, api_refusals=ids * 8, cli_refusals=len(cases), accepted=0)


def _valid_run(root: Path, run_id: str = RUN_ID) -> Path:
    path = run_file(root, run_id)
    path.write_bytes(b"".join(line + b"\n" for line in chain(base_events(run_id))))
    return path


def _symlinked_runs_dir(tmp: Path) -> Path:
    real = tmp / "elsewhere"
    _valid_run(real)
    root = tmp / "root"
    root.mkdir(mode=0o700)
    os.symlink(real / "runs", root / "runs")
    return root


def _symlinked_root(tmp: Path) -> Path:
    real = tmp / "real-root"
    _valid_run(real)
    os.symlink(real, tmp / "root")
    return tmp / "root"


def _root_is_a_file(tmp: Path) -> Path:
    (tmp / "root").write_text("not a directory")
    return tmp / "root"


def _runs_is_a_file(tmp: Path) -> Path:
    root = tmp / "root"
    root.mkdir(mode=0o700)
    (root / "runs").write_text("not a directory")
    return root


PATH_CASES = {
    "symlinked runs dir": _symlinked_runs_dir,
    "symlinked root": _symlinked_root,
    "root is a regular file": _root_is_a_file,
    "runs is a regular file": _runs_is_a_file,
}


@pytest.mark.parametrize("name", list(PATH_CASES))
@pytest.mark.parametrize("command", [("history",), ("show", RUN_ID), ("verify",), ("reconcile",)])
def test_a_hostile_journal_directory_is_refused(name: str, command: tuple[str, ...], tmp_path: Path) -> None:
    """A root or runs directory that is a symlink, or a file where a directory belongs, is a clear
    one-line error (exit 2 or 3), never followed and never a traceback."""
    root = PATH_CASES[name](tmp_path)
    result = run_cli(root, *command)
    assert_clean_failure(result, codes=(2, 3))
    assert ("symlink" in result.stderr) == name.startswith("symlinked"), result.describe()
    with pytest.raises((JournalError, OSError)):
        list(JsonlStore(root).run_ids()) if command[0] != "show" else JsonlStore(root).read(RUN_ID)


def test_a_symlinked_log_directory_is_not_followed(tmp_path: Path) -> None:
    """`logs` never prints a file reached through a symlink planted as the run's log directory."""
    store = JsonlStore(tmp_path / "root")
    write_orphan(store, RUN_ID, events=2)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "work.log").write_text("TOP SECRET\n")
    store.side_files.logs_dir.mkdir(mode=0o700)
    os.symlink(secret, store.side_files.log_dir(RUN_ID))
    result = run_cli(store.root, "logs", RUN_ID)
    assert "TOP SECRET" not in result.stdout, result.describe()
    assert "Traceback" not in result.stderr
    assert result.code == 3 and "symlink" in result.stderr, result.describe()


def test_hostile_step_and_item_names_stay_inside_the_log_directory(tmp_path: Path) -> None:
    """A journal naming a step ``../../secret`` cannot make `logs` read outside the run's log directory."""
    store = JsonlStore(tmp_path / "root")
    write_orphan(store, RUN_ID, events=1)
    (tmp_path / "root" / "secret.log").write_text("TOP SECRET\n")
    (tmp_path / "secret.log").write_text("TOP SECRET\n")
    writer = store.open_writer(RUN_ID)
    for name in ("../../secret", "../secret", "/etc/passwd", "..", "."):
        writer.append(StepProgress, step=name, state="started", item=name, item_state="started")
    writer.close()
    result = run_cli(store.root, "logs", RUN_ID)
    assert "TOP SECRET" not in result.stdout and "root:" not in result.stdout, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    record(5, "hostile paths (symlinks, files for dirs, log names)", 0, cases=len(PATH_CASES) * 4 + 2, followed=0)
