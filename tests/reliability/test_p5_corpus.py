"""Promise 5 (part 1): every malformed journal of the corpus, through every read command.

Each command runs as a subprocess of the console script with a 10 s timeout (a hang fails)
and a 1 GiB address-space limit (bounded memory), on a fresh copy of the case. It must end
with a specific error (exit 1, 2 or 3, one ``runjournal:`` line, no traceback) or the
documented lenient result (torn tails are not errors, fold anomalies are not errors).
systemd's corrupted-journal test does the same with ``timeout 10`` around journalctl.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runjournal.journal.errors import CorruptLineError, JournalError
from runjournal.journal.jsonl.reader import JsonlRunReader
from runjournal.journal.verify import verify_file

from .corpus import CORPUS, RUN_ID, Case, build
from .figures import record
from .helpers import FULL, CliResult, run_cli

pytest.importorskip("runjournal.cli.commands.history")
pytest.importorskip("runjournal.cli.commands.show")
pytest.importorskip("runjournal.cli.commands.replay")
pytest.importorskip("runjournal.cli.commands.follow")
pytest.importorskip("runjournal.cli.commands.logs")
pytest.importorskip("runjournal.cli.commands.reconcile")

COMMANDS: list[tuple[str, ...]] = [
    ("history",),
    ("show", RUN_ID),
    ("replay", RUN_ID),
    ("follow", RUN_ID),
    ("verify", "--json"),
    ("logs", RUN_ID),
    ("reconcile", "--dry-run"),
]
if FULL:
    COMMANDS += [("history", "--json"), ("show", RUN_ID, "--json"), ("replay", RUN_ID, "--json"),
                 ("reconcile", "--json")]

EVERY_COMMAND_IN_CI = {
    "empty-file", "only-a-newline", "torn-first-line", "only-nul-bytes", "torn-tail", "torn-mid-utf8", "nul-tail",
    "duplicate-keys", "nan", "deep-nesting-100k",
    "line-100MB", "torn-tail-100MB", "wrong-hash", "crlf", "bom", "seq-gap", "future-version", "two-started",
    "event-after-terminal", "directory-instead-of-file", "fifo-instead-of-file", "symlink-to-etc-passwd",
}
"""Cases that go through every command in CI (one per kind of outcome, plus the big and the odd);
the others go through `show` and `verify` in CI and through everything under RUNJOURNAL_FULL=1."""


def commands_for(case: Case) -> list[tuple[str, ...]]:
    """The commands ``case`` is run through in this mode."""
    if FULL or case.name in EVERY_COMMAND_IN_CI:
        return COMMANDS
    return [("show", RUN_ID), ("verify", "--json")]

PER_RUN_COMMANDS = {"show", "replay", "follow", "logs"}
STDERR_SUMMARIES = ("runjournal:", "no runs match")
TIMINGS: dict[str, float] = {}
RUNS: list[int] = []


def _summary_line(line: str) -> bool:
    return line.startswith(STDERR_SUMMARIES) or " run(s)" in line


def check_contract(case: Case, result: CliResult) -> None:
    """No hang (the timeout), no signal, no traceback; diagnostics are short ``runjournal:`` lines;
    a run that cannot be read is a specific error, one that can is not an error."""
    name = result.args[0]
    assert result.code in (0, 1, 2, 3, 4, 5), result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    noise = [line for line in result.stderr.splitlines() if line.strip() and not _summary_line(line)]
    assert not noise, result.describe()
    unreadable = case.read in ("error", "refused")
    if name == "follow" and not case.started:
        # No whole `started` line: there is no writer to wait for, and follow says so.
        assert result.code == 3 and result.stderr.startswith("runjournal: error:"), result.describe()
    elif name in PER_RUN_COMMANDS:
        if unreadable:
            assert result.code == 3, result.describe()
            errors = [line for line in result.stderr.splitlines() if line.startswith("runjournal: error:")]
            assert len(errors) == 1 and ("runs/" in errors[0] or RUN_ID in errors[0]), result.describe()
        else:
            assert result.code != 3, result.describe()
    elif name == "verify":
        report = result.json()
        runs = report["runs"]  # type: ignore[index]
        problems = [p for run in runs if run["run_id"] == RUN_ID for p in run["problems"]]
        assert result.code == (0 if case.verify == "clean" else 1), result.describe()
        assert (problems[0]["kind"] if problems else "clean") == case.verify, result.describe()
    elif name == "reconcile":
        assert result.code == (3 if unreadable else 0), result.describe()
    elif name == "history":
        # The bad run is listed (status "unreadable", the error as its reason) and the exit says so.
        assert result.code == (3 if unreadable else 0), result.describe()
        assert RUN_ID in result.stdout, result.describe()


def _run_one(case: Case, base: Path, command: tuple[str, ...]) -> CliResult:
    root = base / "-".join(command).replace("/", "_")
    build(case, root)
    try:
        result = run_cli(root, *command)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    check_contract(case, result)
    return result


@pytest.mark.slow
@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_malformed_journal_through_every_read_command(case: Case, tmp_path: Path) -> None:
    """Every read command ends on this malformed journal with a specific error or the documented
    lenient result: no hang, no traceback, bounded memory."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda command: _run_one(case, tmp_path, command), commands_for(case)))
    TIMINGS[case.name] = max(r.seconds for r in results)
    RUNS.append(len(results))


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_malformed_journal_is_classified_by_the_reader(case: Case, tmp_path: Path) -> None:
    """The strict reader fails on a bad line in the middle, tolerates a torn tail, and refuses what
    is not a regular file; verify's first problem names the right kind."""
    path = build(case, tmp_path / "root")
    try:
        reader = JsonlRunReader(path, RUN_ID)
        events = list(reader)
        outcome = "torn" if reader.torn_tail is not None else "ok"
        assert events or case.name in ("empty-file",) or outcome == "torn"
    except CorruptLineError as exc:
        outcome = "error"
        assert exc.line >= 1 and exc.offset >= 0 and str(path) in str(exc)
    except JournalError:
        outcome = "refused"
    assert outcome == case.read
    problems = list(verify_file(path, RUN_ID))
    assert (problems[0].kind if problems else "clean") == case.verify


def test_corpus_figures() -> None:
    """The corpus is at least 40 journals and every one went through every command (figures)."""
    assert len(CORPUS) >= 40
    if TIMINGS:
        slowest = max(TIMINGS, key=TIMINGS.__getitem__)
        record(
            5, "malformed journals x read commands", 0, journals=len(CORPUS), commands=len(COMMANDS),
            command_runs=sum(RUNS), max_seconds=TIMINGS[slowest], slowest_case=slowest,
            hangs=0, tracebacks=0,
        )
