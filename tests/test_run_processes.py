"""Real processes: detached runs outlive their client, cancel stops every child, a killed runner is abandoned."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from run_helpers import (
    cli_argv,
    kill_group_quietly,
    process_gone,
    read_pids,
    state_of,
    terminal_state,
    wait_for,
    write_workflow,
)

from runjournal.cli.engine.runfiles import SUPERVISOR_OUTPUT
from runjournal.cli.main import cli
from runjournal.journal.identity import current_user
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.procfacts import host_name, process_info
from runjournal.projections.history import run_states
from runjournal.projections.reconcile import current_state

pytestmark = pytest.mark.slow


@pytest.fixture
def store(journal_dir: Path) -> JsonlStore:
    """A store over an empty journal root."""
    return JsonlStore(journal_dir)


def gate_loop(gate: Path) -> str:
    """Shell that waits (bounded, 20 s) for ``gate`` to exist."""
    return f"i=0; while [ ! -e {gate} ] && [ $i -lt 1000 ]; do sleep 0.02; i=$((i+1)); done; [ -e {gate} ]"


def session_and_tty(pid: int) -> tuple[int, int]:
    """``(session id, tty_nr)`` of a process, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[3]), int(fields[4])


def one_run_id(store: JsonlStore) -> str | None:
    ids = list(store.run_ids())
    return ids[0] if len(ids) == 1 else None


def test_detached_run_survives_killing_client_and_shell(store: JsonlStore, tmp_path: Path) -> None:
    """run --detach: SIGKILL to the shell's whole process group (client included) does not touch the run."""
    gate = tmp_path / "go"
    wf = write_workflow(tmp_path, f"""
        name = "survivor"
        [[steps]]
        name = "wait"
        run = "{gate_loop(gate)}"
        [[steps]]
        name = "fan"
        foreach = ["a", "b", "c"]
        concurrency = 3
        run = "echo {{item}}"
    """)
    command = " ".join(cli_argv(store.root, "run", "--detach", str(wf))) + f" > {tmp_path}/id; sleep 60"
    shell = subprocess.Popen(["sh", "-c", command], start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        run_id = wait_for(lambda: one_run_id(store), "the supervisor to create the run")
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()
    finally:
        kill_group_quietly(shell.pid)
    supervisor = state_of(store, run_id).started.writer.pid  # type: ignore[union-attr]
    assert process_info(supervisor) is not None, "the supervisor died with the client"
    session, tty = session_and_tty(supervisor)
    assert session != shell.pid and tty == 0
    assert os.readlink(f"/proc/{supervisor}/fd/0") == "/dev/null"
    assert os.readlink(f"/proc/{supervisor}/fd/1") == str(store.side_files.log_dir(run_id) / SUPERVISOR_OUTPUT)
    gate.touch()
    state = terminal_state(store, run_id)
    assert state.status == "succeeded"
    assert [i.state for i in state.steps["fan"].items.values()] == ["succeeded"] * 3
    wait_for(lambda: process_gone(supervisor), "the supervisor to exit")


def test_cancel_live_detached_run_stops_every_child(store: JsonlStore, tmp_path: Path) -> None:
    """cancel on a live detached run records cancelled with who and why, and no child process survives."""
    pids = tmp_path / "pids"
    pids.mkdir()
    wf = write_workflow(tmp_path, f"""
        name = "long"
        [[steps]]
        name = "fan"
        foreach = ["a", "b", "c"]
        concurrency = 3
        run = "sleep 30 & echo $! > {pids}/{{item}}-bg.pid; echo $$ > {pids}/{{item}}.pid; wait"
        [[steps]]
        name = "never"
        run = "true"
    """)
    started = subprocess.run(cli_argv(store.root, "run", "--detach", str(wf)), capture_output=True, text=True,
                             check=True)
    run_id = started.stdout.strip()
    wait_for(lambda: len(read_pids(pids)) == 6 and all(p.read_text().endswith("\n") for p in pids.iterdir()),
             "every step process to write its pid")
    children = read_pids(pids)
    supervisor = state_of(store, run_id).started.writer.pid  # type: ignore[union-attr]
    try:
        result = subprocess.run(cli_argv(store.root, "cancel", run_id[:15], "--reason", "wrong version"),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"{run_id} cancelled by {current_user()}@{host_name()}\n"
        state = state_of(store, run_id)
        assert (state.status, state.terminal.reason) == ("cancelled", "wrong version")  # type: ignore[union-attr]
        assert state.steps["never"].state == "pending"
        for pid in [*children, supervisor]:
            wait_for(lambda pid=pid: process_gone(pid), f"pid {pid} to be gone")
        assert not store.side_files.cancel_request(run_id).exists()
    finally:
        for pid in children:
            kill_group_quietly(pid)


def test_attached_run_sigkilled_at_step_2_is_abandoned(store: JsonlStore, tmp_path: Path) -> None:
    """SIGKILL of an attached run during step 2 of 3: history shows abandoned, 1 done, 2 in flight, 3 never started."""
    pid_file = tmp_path / "step2.pid"
    wf = write_workflow(tmp_path, f"""
        name = "three"
        [[steps]]
        name = "one"
        run = "echo one"
        [[steps]]
        name = "two"
        run = "echo $$ > {pid_file}; sleep 30"
        [[steps]]
        name = "three"
        run = "echo three"
    """)
    runner = subprocess.Popen(cli_argv(store.root, "run", str(wf)), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    step_pid = 0
    try:
        run_id = wait_for(lambda: one_run_id(store), "the run to exist")
        wait_for(lambda: state_of(store, run_id).steps["two"].state == "started" and pid_file.read_text().strip()
                 if pid_file.exists() else False, "step two to be running")
        step_pid = int(pid_file.read_text())
        runner.send_signal(signal.SIGKILL)
        assert runner.wait() == -signal.SIGKILL
        history = CliRunner().invoke(cli, ["--root", str(store.root), "history", "--json"])
        assert history.exit_code == 0, history.output
        rows = json.loads(history.stdout)
        assert [(r["run_id"], r["status"]) for r in rows] == [(run_id, "abandoned")]
        state = next(run_states(store)).state
        assert state.reason == "originating-process-not-alive"
        assert [state.steps[n].state for n in ("one", "two", "three")] == ["succeeded", "started", "pending"]
        assert current_state(store, run_id).state.status == "abandoned"
    finally:
        kill_group_quietly(runner.pid)
        if step_pid:
            kill_group_quietly(step_pid)


def test_attached_ctrl_c_cancels(store: JsonlStore, tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) to an attached run stops its step, records cancelled by signal:SIGINT and exits 5."""
    pid_file = tmp_path / "step.pid"
    wf = write_workflow(tmp_path, f'name = "w"\n[[steps]]\nname = "a"\nrun = "echo $$ > {pid_file}; sleep 30"\n')
    runner = subprocess.Popen(cli_argv(store.root, "run", str(wf)), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"), "the step to start")
        step_pid = int(pid_file.read_text())
        runner.send_signal(signal.SIGINT)
        _, err = runner.communicate(timeout=30)
        assert runner.returncode == 5, err
        state = state_of(store, one_run_id(store) or "")
        assert (state.status, state.terminal.by, state.terminal.reason) == (  # type: ignore[union-attr]
            "cancelled", "signal:SIGINT", "interrupted")
        assert "Traceback" not in err
        wait_for(lambda: process_gone(step_pid), "the step process to be gone")
    finally:
        kill_group_quietly(runner.pid)


def test_logs_follow_on_live_run(store: JsonlStore, tmp_path: Path) -> None:
    """logs --follow prints output as it is written and returns when the run ends."""
    gate = tmp_path / "go"
    wf = write_workflow(tmp_path, f"""
        name = "chatty"
        [[steps]]
        name = "talk"
        run = "echo first; {gate_loop(gate)}; echo second"
    """)
    run_id = subprocess.run(cli_argv(store.root, "run", "--detach", str(wf)), capture_output=True, text=True,
                            check=True).stdout.strip()
    follower = subprocess.Popen(cli_argv(store.root, "logs", run_id, "--follow"), stdout=subprocess.PIPE, text=True)
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "first\n"
        gate.touch()
        rest, _ = follower.communicate(timeout=30)
        assert rest == "second\n" and follower.returncode == 0
        assert state_of(store, run_id).status == "succeeded"
    finally:
        follower.kill()
