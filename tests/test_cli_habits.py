"""The habits users bring from git, gh, journalctl and kubectl: each one, tested from the outside."""

from __future__ import annotations

import itertools
import json
import os
import pty
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from run_helpers import cli_argv, gone_identity, process_gone, terminal_state, wait_for, write_workflow

from runjournal.cli.main import cli
from runjournal.journal.events import PlannedStep
from runjournal.journal.jsonl import JsonlStore
from runjournal.journal.run import start_run

T0 = datetime(2026, 1, 2, 14, 0, tzinfo=UTC)
FAN = """
name = "fan"
[[steps]]
name = "f"
foreach = ["x", "y"]
run = "echo out {item}; [ {item} != y ] || exit 3"
"""


@pytest.fixture(autouse=True)
def utc_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC during these tests, so text timestamps are exact."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def invoke(root: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--root", str(root), *args], env=env)


def clock(start: datetime, seconds: float) -> Callable[[], datetime]:
    counter = itertools.count()
    return lambda: start + timedelta(seconds=seconds * next(counter))


def on_a_terminal(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> bytes:
    """Run ``argv`` with stdout and stderr on a pseudo-terminal and return everything it wrote."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, cwd=cwd)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    proc.wait(timeout=60)
    return out


# ---- one-line option errors -------------------------------------------------------------------


@pytest.mark.parametrize(("args", "fragment"), [
    (["history", "--limit", "0"], "Invalid value for '-n' / '--limit': 0 is not in the range x>=1"),
    (["history", "--status", "bogus"], "Invalid value for '--status': 'bogus' is not one of"),
    (["exec", "--", "true"], "Missing option '--workflow' / '-w'"),
    (["show", "a", "b"], "Got unexpected extra argument (b)"),
    (["--no-such-option"], "No such option '--no-such-option'"),
    (["history", "--status", "\x1b]52;c;aGk=\x07"], "Invalid value for '--status': "),
])
def test_option_errors_are_one_line(journal_dir: Path, args: list[str], fragment: str) -> None:
    """A bad option is one `runjournal: error:` line naming the command's --help, exit 2, escapes neutralised."""
    result = invoke(journal_dir, *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("runjournal: error: ") and fragment in result.stderr
    assert "--help')" in result.stderr and "\x1b" not in result.stderr and "Usage:" not in result.stderr


def test_option_errors_from_the_installed_command(journal_dir: Path) -> None:
    """The console script prints the same one line and exits 2."""
    proc = subprocess.run(cli_argv(journal_dir, "history", "--limit", "0"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("runjournal: error: Invalid value for '-n' / '--limit': 0 is not in the range x>=1 "
                           "(see 'runjournal history --help')\n")


# ---- logs, a failed run's pointer to them --------------------------------------------------------


def test_failed_run_points_to_its_logs_and_logs_speak_json(journal_dir: Path, tmp_path: Path) -> None:
    """A failed attached run ends with the logs command for the failing item; logs has --json and --jsonl."""
    result = invoke(journal_dir, "run", str(write_workflow(tmp_path, FAN)))
    assert result.exit_code == 1
    run_id = result.stdout.strip()
    assert result.stderr.splitlines()[-1] == f"see the output: runjournal logs {run_id} f y"
    assert invoke(journal_dir, "logs", run_id, "f", "y").stdout == "out y\n"
    doc = json.loads(invoke(journal_dir, "logs", run_id, "--json").stdout)
    assert doc["run_id"] == run_id
    assert [(o["step"], o["item"], o["text"]) for o in doc["outputs"]] == [("f", "x", "out x\n"), ("f", "y", "out y\n")]
    chunks = [json.loads(line) for line in invoke(journal_dir, "logs", run_id, "f", "--jsonl").stdout.splitlines()]
    assert chunks == [{"step": "f", "item": "x", "text": "out x\n"}, {"step": "f", "item": "y", "text": "out y\n"}]
    clash = invoke(journal_dir, "logs", run_id, "f", "--step", "g")
    assert clash.exit_code == 2 and "two different steps" in clash.stderr


# ---- history --until, follow -n and --since -------------------------------------------------------


def _day_runs(root: Path) -> list[str]:
    ids = []
    for day in range(3):
        with start_run("daily", ["a"], root=root, clock=clock(T0 + timedelta(days=day), 1), durability="none",
                       run_id=f"2026010{day + 2}T140000000000Z-000{day}") as run:
            run.step_started("a")
            run.step_succeeded("a", exit_code=0)
        ids.append(run.run_id)
    return ids


def test_history_until(journal_dir: Path) -> None:
    """--until keeps runs started up to then; with --since it is a window."""
    ids = _day_runs(journal_dir)
    def listed(*args: str) -> list[str]:
        return [r["run_id"] for r in json.loads(invoke(journal_dir, "history", "--json", *args).stdout)]

    assert listed("--until", "2026-01-03T15:00:00+00:00") == [ids[1], ids[0]]
    assert listed("--since", "2026-01-03T00:00:00+00:00", "--until", "2026-01-03T23:00:00+00:00") == [ids[1]]
    bad = invoke(journal_dir, "history", "--until", "someday")
    assert bad.exit_code == 2 and "invalid --until value 'someday'" in bad.stderr


def test_follow_last_n_and_since(journal_dir: Path) -> None:
    """follow -n N prints only the last N events already written; --since only those written since then."""
    run_id = _day_runs(journal_dir)[0]
    def seqs(*args: str) -> list[int]:
        result = invoke(journal_dir, "follow", run_id, "--jsonl", *args)
        assert result.exit_code == 0
        return [json.loads(line)["seq"] for line in result.stdout.splitlines()]

    assert seqs() == [0, 1, 2, 3]
    assert seqs("-n", "2") == [2, 3]
    assert seqs("-n", "0") == []
    assert seqs("--since", "2026-01-02T14:00:02+00:00") == [2, 3]
    last = json.loads(invoke(journal_dir, "follow", run_id, "--jsonl", "-n", "1").stdout)
    assert last["status_after"] == "succeeded"  # the skipped events were still folded


# ---- shell completion ---------------------------------------------------------------------------


def test_bash_completes_commands_options_and_run_ids(journal_dir: Path) -> None:
    """Sourcing `runjournal completion bash` in a real bash completes commands, options and run ids."""
    ids = _day_runs(journal_dir)
    bin_dir = Path(cli_argv(journal_dir)[0]).parent
    def complete(*words: str) -> list[str]:
        script = (f'eval "$(runjournal completion bash)"; COMP_WORDS=({" ".join(words)}); '
                  'COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _runjournal_completion runjournal; printf "%s\\n" "${COMPREPLY[@]}"')
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNJOURNAL_ROOT": str(journal_dir)}
        proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return [line for line in proc.stdout.splitlines() if line]

    assert "history" in complete("runjournal", "hi")
    assert complete("runjournal", "history", "--unt") == ["--until"]
    assert complete("runjournal", "show", "2026010") == sorted(ids, reverse=True)
    assert complete("runjournal", "logs", "20260103") == [ids[1]]
    assert complete("runjournal", "--root", str(journal_dir), "replay", "20260104") == [ids[2]]


# ---- inputs -------------------------------------------------------------------------------------


def test_input_variables_as_documented(journal_dir: Path, tmp_path: Path) -> None:
    """--input version=1.4.2 reaches the step as $RUNJOURNAL_INPUT_VERSION (and the old spelling)."""
    out = tmp_path / "seen"
    wf = write_workflow(tmp_path, f"""
        name = "inputs"
        [[steps]]
        name = "show"
        run = 'echo "$RUNJOURNAL_INPUT_VERSION $RUNJOURNAL_INPUT_version" > {out}'
    """)
    result = invoke(journal_dir, "run", str(wf), "--input", "version=1.4.2")
    assert result.exit_code == 0, result.output
    assert out.read_text() == "1.4.2 1.4.2\n"
    assert "$RUNJOURNAL_INPUT_VERSION" in invoke(journal_dir, "run", "--help").stdout


# ---- colour and terminal codes ------------------------------------------------------------------


def _failed_run(root: Path) -> None:
    with start_run("w", ["a"], root=root, clock=clock(T0, 1), durability="none") as run:
        run.step_started("a")
        run.step_failed("a", exit_code=1)
        run.fail(step="a", exit_code=1)


@pytest.mark.parametrize(("extra", "coloured"), [({}, True), ({"NO_COLOR": ""}, True), ({"NO_COLOR": "1"}, False),
                                                 ({"TERM": "dumb"}, False)])
def test_colour_only_when_asked(journal_dir: Path, extra: dict[str, str], coloured: bool) -> None:
    """On a terminal status words are coloured unless NO_COLOR is non-empty or TERM is dumb."""
    _failed_run(journal_dir)
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"TERM": "xterm"} | extra
    out = on_a_terminal(cli_argv(journal_dir, "history"), env)
    assert (b"\x1b[31mfailed" in out) is coloured, out


def test_dumb_terminal_gets_no_cursor_codes(journal_dir: Path, tmp_path: Path) -> None:
    """An attached run on a TERM=dumb terminal prints plain progress lines: no carriage return, no ESC [K."""
    wf = write_workflow(tmp_path, FAN)
    smart = on_a_terminal(cli_argv(journal_dir, "run", str(wf)), {**os.environ, "TERM": "xterm"})
    dumb = on_a_terminal(cli_argv(journal_dir, "run", str(wf), "--allow-concurrent"), {**os.environ, "TERM": "dumb"})
    assert b"\x1b[K" in smart
    assert b"\x1b[K" not in dumb and b"\r\x1b" not in dumb
    assert b"step f started (2 items)" in dumb


# ---- detached runs -------------------------------------------------------------------------------


def test_detached_run_records_the_typed_command_and_names_itself_in_ps(journal_dir: Path, tmp_path: Path) -> None:
    """The writer argv is the client's command line; the supervisor's own names the run id and workflow."""
    wf = write_workflow(tmp_path, 'name = "nightly build"\n[[steps]]\nname = "s"\nrun = "sleep 60"\n')
    argv = cli_argv(journal_dir, "run", str(wf), "--detach", "--input", "v=1")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    store = JsonlStore(journal_dir)
    started = next(iter(store.read(run_id).events()))
    pid = started.writer.pid
    try:
        assert started.writer.argv == argv
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert run_id.encode() in cmdline and b"--workflow=nightly build" in cmdline
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "runjournal-sup"
        shown = invoke(journal_dir, "show", run_id).stdout.splitlines()
        assert any(line.startswith("command ") and "--detach --input v=1" in line for line in shown)
    finally:
        subprocess.run(cli_argv(journal_dir, "cancel", run_id), capture_output=True, timeout=60)
        terminal_state(store, run_id, timeout=30)
        wait_for(lambda: process_gone(pid), "the supervisor to exit")


# ---- a cancelled step, an abandoned run's duration ----------------------------------------------


def test_cancelled_step_shows_cancelled(journal_dir: Path, tmp_path: Path) -> None:
    """SIGTERM to an attached run: its progress and `show` call the stopped step cancelled, not failed 143."""
    wf = write_workflow(tmp_path, 'name = "c"\n[[steps]]\nname = "long"\nrun = "sleep 60"\n')
    proc = subprocess.Popen(cli_argv(journal_dir, "run", str(wf)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    store = JsonlStore(journal_dir)
    run_id = wait_for(lambda: next(iter(store.run_ids()), None), "the run to exist")
    wait_for(lambda: len(list(store.read(run_id).events())) >= 2, "the step to start")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 5
    assert "step long cancelled: stopped: run cancelled (killed by SIGTERM)" in err and "step long failed" not in err
    shown = invoke(journal_dir, "show", run_id)
    table = [line.split() for line in shown.stdout.splitlines() if line.startswith("long ")]
    assert table and table[0][1] == "cancelled" and "143" in table[0]
    assert json.loads(invoke(journal_dir, "show", run_id, "--json").stdout)["steps"][0]["status"] == "cancelled"
    raw = [json.loads(line) for line in invoke(journal_dir, "events", "--jsonl", run_id).stdout.splitlines()]
    assert [r["state"] for r in raw if r["step"] == "long" and r["type"] == "step-progress"] == ["started", "failed"]


def test_abandoned_duration_runs_to_the_last_heartbeat(journal_dir: Path) -> None:
    """A dead writer's run lasts until its last event of any kind, heartbeats included, not its last progress."""
    run = start_run("hb", [PlannedStep(name="a")], root=journal_dir, clock=clock(T0, 20), identity=gone_identity(),
                    durability="none")
    run.step_started("a")   # t0 + 40 s (the run id and `started` took the first two readings)
    run.heartbeat()         # t0 + 60 s
    run.heartbeat()         # t0 + 80 s
    run.close()
    rows = json.loads(invoke(journal_dir, "history", "--json").stdout)
    assert rows[0]["status"] == "abandoned" and rows[0]["duration_s"] == 60.0
    shown = invoke(journal_dir, "show", run.run_id).stdout.splitlines()
    assert "duration      1m00s" in shown and "last seen     2026-01-02 14:01:20" in [line.rstrip() for line in shown]


def test_run_help_names_no_file_outside_the_package(journal_dir: Path) -> None:
    """run --help points at what an installed package has: docs/workflow.md and `runjournal example`."""
    text = invoke(journal_dir, "run", "--help").stdout
    assert "examples/" not in text and "runjournal example fanout" in text
