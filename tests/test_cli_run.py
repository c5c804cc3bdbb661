"""The write-side commands through click's CliRunner: run, exec, rerun, cancel, logs, and their errors."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from run_helpers import orphan_run, state_of, terminal_state, wait_for, write_workflow

from runjournal.cli.engine.runfiles import unit_log_path
from runjournal.cli.main import cli
from runjournal.journal.identity import current_user, writer_identity
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.procfacts import host_name
from runjournal.journal.run import start_run
from runjournal.projections.reconcile import current_state

RUN_ID = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{4}$")

HELLO = """
name = "hello"
[[steps]]
name = "greet"
run = "echo hello"
[[steps]]
name = "fan"
foreach = ["a", "b"]
concurrency = 2
run = "echo item {item}"
"""


@pytest.fixture
def store(journal_dir: Path) -> JsonlStore:
    """A store over an empty journal root."""
    return JsonlStore(journal_dir)


def invoke(store: JsonlStore, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(store.root), *args])


def assert_user_error(result: Result, code: int, message: str) -> None:
    """A failed command: the exit code, exactly one line on stderr containing ``message``, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("runjournal: error: ") and message in lines[0], lines[0]
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)


def started_run(store: JsonlStore, result: Result) -> str:
    """The run id a command printed on stdout."""
    run_id = result.stdout.strip().splitlines()[0]
    assert RUN_ID.match(run_id), result.stdout
    return run_id


class TestRun:
    def test_success(self, store: JsonlStore, tmp_path: Path) -> None:
        """An attached run prints its id on stdout, progress lines on stderr, and exits 0."""
        result = invoke(store, "run", str(write_workflow(tmp_path, HELLO)))
        assert result.exit_code == 0, result.output
        run_id = started_run(store, result)
        assert result.stdout == run_id + "\n"
        assert f"run {run_id} started: workflow hello, 2 steps\n" in result.stderr
        assert "  fan [b] succeeded" in result.stderr
        assert result.stderr.endswith(f"run {run_id} succeeded\n")
        state = state_of(store, run_id)
        assert state.status == "succeeded" and state.started is not None
        assert state.started.workflow_file == str((tmp_path / "wf.toml").resolve())
        assert state.started.workflow_digest is not None

    def test_failure_exits_1(self, store: JsonlStore, tmp_path: Path) -> None:
        """A failing step makes run exit 1."""
        wf = write_workflow(tmp_path, 'name = "w"\n[[steps]]\nname = "a"\nrun = "exit 4"\n')
        result = invoke(store, "run", str(wf))
        assert result.exit_code == 1
        assert "run " in result.stderr and "failed: step-failed (step a, exit code 4)" in result.stderr

    def test_sigterm_cancels_exits_5(self, store: JsonlStore, tmp_path: Path) -> None:
        """SIGTERM to the attached runner (here from its own step) records cancelled and exits 5."""
        wf = write_workflow(tmp_path, 'name = "w"\n[[steps]]\nname = "a"\nrun = "kill -TERM $PPID; sleep 30"\n'
                                      '[[steps]]\nname = "b"\nrun = "true"\n')
        result = invoke(store, "run", str(wf))
        assert result.exit_code == 5
        state = state_of(store, started_run(store, result))
        assert (state.status, state.terminal.by) == ("cancelled", "signal:SIGTERM")  # type: ignore[union-attr]
        assert state.steps["b"].state == "pending"

    def test_inputs_recorded(self, store: JsonlStore, tmp_path: Path) -> None:
        """--input KEY=VALUE pairs are recorded as the run's inputs."""
        result = invoke(store, "run", str(write_workflow(tmp_path, HELLO)), "--input", "version=1.2",
                        "--input", "who=a=b")
        state = state_of(store, started_run(store, result))
        assert state.started is not None and state.started.inputs == {"version": "1.2", "who": "a=b"}

    @pytest.mark.parametrize("value", ["novalue", "=x", "1x=2", "a-b=3"])
    def test_bad_input(self, store: JsonlStore, tmp_path: Path, value: str) -> None:
        """A malformed --input is a usage error (exit 2) and starts nothing."""
        result = invoke(store, "run", str(write_workflow(tmp_path, HELLO)), "--input", value)
        assert result.exit_code == 2 and "KEY=VALUE" in result.stderr
        assert not list(store.run_ids())

    def test_refuses_while_live_run(self, store: JsonlStore, tmp_path: Path) -> None:
        """A second run of a workflow with a live run is refused with the live run's id (exit 3)."""
        live = start_run("hello", ["x"], store=store, durability="none")
        try:
            result = invoke(store, "run", str(write_workflow(tmp_path, HELLO)))
            assert_user_error(result, 3, f"workflow 'hello' already has a live run {live.run_id}")
            assert "--allow-concurrent" in result.stderr
            assert list(store.run_ids()) == [live.run_id]
            allowed = invoke(store, "run", str(write_workflow(tmp_path, HELLO)), "--allow-concurrent")
            assert allowed.exit_code == 0
        finally:
            live.writer.close()

    def test_orphan_is_reconciled_first(self, store: JsonlStore, tmp_path: Path) -> None:
        """An orphaned run of the workflow does not block a new run; it is recorded abandoned on the way."""
        orphan = orphan_run(store, "hello")
        result = invoke(store, "run", str(write_workflow(tmp_path, HELLO)))
        assert result.exit_code == 0, result.stderr
        assert state_of(store, orphan.run_id).status == "abandoned"

    def test_other_workflows_do_not_block(self, store: JsonlStore, tmp_path: Path) -> None:
        """A live run of another workflow does not block."""
        live = start_run("other", ["x"], store=store, durability="none")
        try:
            assert invoke(store, "run", str(write_workflow(tmp_path, HELLO))).exit_code == 0
        finally:
            live.writer.close()


class TestRunErrors:
    def test_bad_toml_names_line(self, store: JsonlStore, tmp_path: Path) -> None:
        """Bad TOML: exit 2, one line with file, line and column."""
        wf = write_workflow(tmp_path, 'name = "w"\n[[steps]]\nname = "a"\nrun = "x\n')
        assert_user_error(invoke(store, "run", str(wf)), 2, f"{wf}:4:")

    def test_invalid_workflow_names_line(self, store: JsonlStore, tmp_path: Path) -> None:
        """A schema mistake: exit 2, one line with file and line."""
        wf = write_workflow(tmp_path, 'name = "w"\n[[steps]]\nname = "a"\nrun = "x"\ntimeout = 0\n')
        assert_user_error(invoke(store, "run", str(wf)), 2, f"{wf}:5: step 'a' 'timeout' must be")

    def test_missing_file(self, store: JsonlStore, tmp_path: Path) -> None:
        """A missing workflow file: exit 2, one line."""
        assert_user_error(invoke(store, "run", str(tmp_path / "nope.toml")), 2, "no such workflow file")


class TestExec:
    def test_exit_code_and_output_pass_through(self, store: JsonlStore) -> None:
        """exec exits with the command's code, passes its output through, and journals one step."""
        result = invoke(store, "exec", "--workflow", "wrap", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
        assert result.exit_code == 3
        assert result.stdout == "out\n" and "err\n" in result.stderr
        run_id = next(iter(store.run_ids()))
        state = state_of(store, run_id)
        assert (state.workflow, list(state.steps), state.status) == ("wrap", ["sh"], "failed")
        assert state.steps["sh"].exit_code == 3
        assert unit_log_path(store.side_files.log_dir(run_id), "sh").read_text().count("out\n") == 1

    def test_success_and_step_name(self, store: JsonlStore) -> None:
        """--step names the single step; success exits 0."""
        result = invoke(store, "exec", "-w", "wrap", "--step", "list", "--", "true")
        assert result.exit_code == 0
        assert list(state_of(store, next(iter(store.run_ids()))).steps) == ["list"]

    def test_command_not_found(self, store: JsonlStore) -> None:
        """A command that cannot be found exits 127 and is journaled as failed."""
        result = invoke(store, "exec", "-w", "wrap", "--", "no-such-command-xyz")
        assert result.exit_code == 127
        assert state_of(store, next(iter(store.run_ids()))).status == "failed"

    def test_detach(self, store: JsonlStore) -> None:
        """exec --detach prints the run id and the supervisor finishes the run."""
        result = invoke(store, "exec", "-w", "wrap", "--detach", "--", "sh", "-c", "echo detached")
        assert result.exit_code == 0, result.output
        run_id = started_run(store, result)
        assert terminal_state(store, run_id).status == "succeeded"
        assert unit_log_path(store.side_files.log_dir(run_id), "sh").read_text() == "detached\n"

    def test_requires_command(self, store: JsonlStore) -> None:
        """exec without a command is a usage error."""
        assert invoke(store, "exec", "-w", "wrap").exit_code == 2

    def test_bad_workflow_name(self, store: JsonlStore) -> None:
        """A workflow name with control characters is refused."""
        assert_user_error(invoke(store, "exec", "-w", "a\x1bb", "--", "true"), 2, "--workflow")


class TestDetach:
    def test_supervisor_death_is_reported(self, store: JsonlStore, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
        """A supervisor that dies before creating the run: exit 3, its last words and where its output is."""
        fake = tmp_path / "python"
        fake.write_text("#!/bin/sh\necho 'boom: cannot import cli' >&2\nexit 1\n")
        fake.chmod(0o700)
        monkeypatch.setattr(sys, "executable", str(fake))
        result = invoke(store, "run", "--detach", str(write_workflow(tmp_path, HELLO)))
        assert_user_error(result, 3, "the supervisor exited before starting the run: boom: cannot import cli; see ")
        assert "supervisor.out" in result.stderr
        assert not list(store.run_ids())

    def test_run_detach(self, store: JsonlStore, tmp_path: Path) -> None:
        """run --detach prints the id of a run that already exists, exits 0, and the run completes."""
        result = invoke(store, "run", "--detach", str(write_workflow(tmp_path, HELLO)))
        assert result.exit_code == 0, result.output
        run_id = started_run(store, result)
        assert store.exists(run_id)
        state = terminal_state(store, run_id)
        assert state.status == "succeeded"
        # The writer is the supervisor, but the command recorded is the client's (what the user typed).
        assert state.started is not None and state.started.writer.argv == sys.argv
        assert state.started.writer.pid != os.getpid()

    def test_a_supervisor_refused_by_its_store_ends_with_one_line(self, store: JsonlStore, tmp_path: Path) -> None:
        """A detached run whose file is deleted mid-step: the supervisor's output ends in one error line, no traceback."""
        gate = tmp_path / "go"
        flow = f'name = "deleted"\n[[steps]]\nname = "a"\nrun = "while [ ! -e {gate} ]; do sleep 0.02; done"\n'
        result = invoke(store, "run", "--detach", str(write_workflow(tmp_path, flow)))
        run_id = started_run(store, result)
        path = Path(store.location(run_id))
        wait_for(lambda: b'"state":"started"' in path.read_bytes(), "step a to start")
        path.unlink()  # its link count drops to 0: the next synced append sees it
        gate.touch()
        output = store.side_files.log_dir(run_id) / "supervisor.out"
        text = wait_for(lambda: "runjournal: error: " in (t := output.read_text()) and t, "the supervisor's last line")
        assert "Traceback" not in text and text.rstrip().splitlines()[-1].startswith("runjournal: error: "), text
        assert "deleted under this writer" in text

    def test_detach_refused_while_live(self, store: JsonlStore, tmp_path: Path) -> None:
        """The supervisor's refusal reaches the client as its one-line error and exit code."""
        live = start_run("hello", ["x"], store=store, durability="none")
        try:
            result = invoke(store, "run", "--detach", str(write_workflow(tmp_path, HELLO)))
            assert_user_error(result, 3, f"already has a live run {live.run_id}")
            assert list(store.run_ids()) == [live.run_id]
            assert not any(store.side_files.logs_dir.iterdir())
        finally:
            live.writer.close()


FLAKY = """
name = "flaky"
[[steps]]
name = "a"
run = "echo a"
[[steps]]
name = "b"
foreach = ["x", "y", "z"]
run = "[ {item} != y ] || [ -e MARKER ]"
[[steps]]
name = "c"
run = "echo c"
"""


class TestRerun:
    def _failed_run(self, store: JsonlStore, tmp_path: Path) -> tuple[str, Path]:
        wf = write_workflow(tmp_path, FLAKY.replace("MARKER", str(tmp_path / "marker")))
        result = invoke(store, "run", str(wf))
        assert result.exit_code == 1
        return started_run(store, result), wf

    def test_unfinished_skips_what_succeeded(self, store: JsonlStore, tmp_path: Path) -> None:
        """rerun --unfinished skips succeeded steps and items, runs the rest, and links to the old run."""
        old, _ = self._failed_run(store, tmp_path)
        (tmp_path / "marker").touch()
        result = invoke(store, "rerun", old, "--unfinished")
        assert result.exit_code == 0, result.output
        state = state_of(store, started_run(store, result))
        assert state.started is not None and state.started.rerun_of == old
        assert (state.steps["a"].state, state.steps["a"].message) == ("skipped", f"succeeded in run {old}")
        items = state.steps["b"].items
        assert (items["x"].state, items["x"].message) == ("skipped", f"succeeded in run {old}")
        assert (items["y"].state, items["z"].state) == ("succeeded", "succeeded")
        assert state.steps["c"].state == "succeeded"

    def test_plain_rerun_runs_everything(self, store: JsonlStore, tmp_path: Path) -> None:
        """Without --unfinished every step runs again; inputs are carried over."""
        wf = write_workflow(tmp_path, HELLO)
        old = started_run(store, invoke(store, "run", str(wf), "--input", "v=1"))
        state = state_of(store, started_run(store, invoke(store, "rerun", old)))
        assert all(s.state == "succeeded" for s in state.steps.values())
        assert state.started is not None and state.started.inputs == {"v": "1"}

    def test_changed_file_refused(self, store: JsonlStore, tmp_path: Path) -> None:
        """A workflow file changed since the run is refused (exit 2) unless --allow-changed."""
        old, wf = self._failed_run(store, tmp_path)
        wf.write_text(wf.read_text() + "\n# edited\n")
        assert_user_error(invoke(store, "rerun", old), 2, "changed since run")
        assert invoke(store, "rerun", old, "--allow-changed").exit_code == 1

    def test_missing_file_refused(self, store: JsonlStore, tmp_path: Path) -> None:
        """A workflow file that is gone is a one-line error."""
        old, wf = self._failed_run(store, tmp_path)
        wf.unlink()
        assert_user_error(invoke(store, "rerun", old), 2, "no such workflow file")

    def test_exec_run_not_rerunnable(self, store: JsonlStore) -> None:
        """A run not started from a file cannot be rerun."""
        invoke(store, "exec", "-w", "x", "--", "true")
        assert_user_error(invoke(store, "rerun", next(iter(store.run_ids()))), 2, "not started from a workflow file")


class TestCancel:
    def test_terminal_run_refused(self, store: JsonlStore, tmp_path: Path) -> None:
        """Cancelling a finished run changes nothing and exits 1 with one line."""
        run_id = started_run(store, invoke(store, "run", str(write_workflow(tmp_path, HELLO))))
        before = store.path(run_id).read_bytes()
        assert_user_error(invoke(store, "cancel", run_id), 1, f"run {run_id} already succeeded; nothing to cancel")
        assert store.path(run_id).read_bytes() == before
        assert not store.side_files.cancel_request(run_id).exists()

    def test_gone_writer_is_cancelled_by_the_canceller(self, store: JsonlStore) -> None:
        """Cancelling a run whose writer is gone records cancelled, by whom and why, with what it found."""
        orphan = orphan_run(store, "w")
        result = invoke(store, "cancel", orphan.run_id, "--reason", "host retired")
        assert result.exit_code == 0, result.output
        by = f"{current_user()}@{host_name()}"
        assert result.stdout == f"{orphan.run_id} cancelled by {by}\n"
        assert "the writer was gone" in result.stderr
        state = current_state(store, orphan.run_id).state
        terminal = state.terminal
        assert (state.status, terminal.by, terminal.reason) == ("cancelled", by, "host retired")  # type: ignore[union-attr]
        assert terminal.evidence["work"] == [  # type: ignore[union-attr]
            {"step": "s0", "item": None, "outcome": "unchecked", "pgid": None, "pids": [], "signals": [],
             "note": "no process recorded"}]
        assert terminal.evidence["still_running"] is False  # type: ignore[union-attr]

    def test_live_writer_on_other_host_refused(self, store: JsonlStore) -> None:
        """A writer on another host cannot be signalled from here: exit 2, nothing written."""
        identity = writer_identity().model_copy(update={"host": "elsewhere.example"})
        run = start_run("w", ["a"], store=store, identity=identity, durability="none")
        try:
            assert_user_error(invoke(store, "cancel", run.run_id), 2, "host 'elsewhere.example'")
        finally:
            run.writer.close()


class TestLogs:
    def _run(self, store: JsonlStore, tmp_path: Path, text: str = HELLO) -> str:
        return started_run(store, invoke(store, "run", str(write_workflow(tmp_path, text))))

    def test_all_output_with_headers(self, store: JsonlStore, tmp_path: Path) -> None:
        """Without filters every kept output is printed in step order under a header."""
        run_id = self._run(store, tmp_path)
        result = invoke(store, "logs", run_id)
        assert result.exit_code == 0
        assert result.stdout == ("==> greet <==\nhello\n\n==> fan [a] <==\nitem a\n\n==> fan [b] <==\nitem b\n")

    def test_one_item(self, store: JsonlStore, tmp_path: Path) -> None:
        """--step and --item select one output, printed without a header."""
        run_id = self._run(store, tmp_path)
        assert invoke(store, "logs", run_id, "--step", "fan", "--item", "b").stdout == "item b\n"
        assert invoke(store, "logs", run_id, "--item", "a").stdout == "item a\n"

    def test_sanitised_unless_raw(self, store: JsonlStore, tmp_path: Path) -> None:
        """Escape sequences in step output are neutralised; --raw passes them through."""
        run_id = self._run(store, tmp_path, 'name = "e"\n[[steps]]\nname = "a"\nrun = "printf \'\\\\033[31mred\\\\n\'"\n')
        assert invoke(store, "logs", run_id).stdout == "␛[31mred\n"
        assert invoke(store, "logs", run_id, "--raw").stdout == "\x1b[31mred\n"

    def test_follow_on_finished_run(self, store: JsonlStore, tmp_path: Path) -> None:
        """--follow on a run that is over prints its output and returns."""
        run_id = self._run(store, tmp_path)
        assert invoke(store, "logs", run_id, "--follow", "--step", "greet").stdout == "hello\n"

    def test_unknown_step_and_item(self, store: JsonlStore, tmp_path: Path) -> None:
        """An unknown step or item is a one-line user error listing what exists."""
        run_id = self._run(store, tmp_path)
        assert_user_error(invoke(store, "logs", run_id, "--step", "nope"), 2, "has no step 'nope' (steps: greet, fan)")
        assert_user_error(invoke(store, "logs", run_id, "--step", "fan", "--item", "zz"), 2, "has no item 'zz'")

    def test_nothing_kept(self, store: JsonlStore) -> None:
        """A run with no kept output says so on stderr and prints nothing."""
        orphan = orphan_run(store, "w")
        result = invoke(store, "logs", orphan.run_id)
        assert result.exit_code == 0 and result.stdout == ""
        assert "no output kept" in result.stderr


class TestRunRefs:
    @pytest.mark.parametrize("command", ["cancel", "logs", "rerun"])
    @pytest.mark.parametrize(("ref", "message"), [
        ("20990101", "no run matches '20990101'"),
        ("../x", "invalid run id '../x'"),
        ("/etc/passwd", "invalid run id"),
        ("a\x00b", "invalid run id"),
    ])
    def test_bad_refs(self, store: JsonlStore, command: str, ref: str, message: str) -> None:
        """Unknown and hostile run ids exit 2 with one line on every write-side command."""
        assert_user_error(invoke(store, command, ref), 2, message)

    @pytest.mark.parametrize("command", ["cancel", "logs", "rerun"])
    def test_ambiguous_prefix(self, store: JsonlStore, command: str) -> None:
        """A prefix matching two runs exits 2 naming the matches."""
        first = orphan_run(store, "w")
        second = orphan_run(store, "v")
        prefix = first.run_id[:4]
        assert second.run_id.startswith(prefix)
        assert_user_error(invoke(store, command, prefix), 2, "is ambiguous: 2 runs match")
