"""The workflow runner in-process, with real commands: events, fan-out, failure, timeouts, stops, skips, output."""

from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
from run_helpers import events_of, process_gone, state_of, wait_for

from runjournal.cli.engine.children import release, spawn_gated
from runjournal.cli.engine.launch import LaunchSpec, begin_run
from runjournal.cli.engine.runfiles import unit_log_path, write_cancel_request
from runjournal.cli.engine.runner import Outcome, Runner, stop_signals
from runjournal.cli.engine.skips import SkipPlan, skip_plan_from
from runjournal.cli.engine.workflow import Step, Workflow, parse_workflow
from runjournal.cli.rendering.progress import Progress, describe
from runjournal.journal.errors import WriterClosedError
from runjournal.journal.events import Event, StepProgress
from runjournal.journal.ids import new_run_id
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.processes import read_stat
from runjournal.journal.procfacts import boot_id, pid_namespace
from runjournal.projections.fold import fold
from runjournal.projections.state import ItemState, RunState, StepState


@pytest.fixture
def store(journal_dir: Path) -> JsonlStore:
    """A store over an empty journal root."""
    return JsonlStore(journal_dir)


def workflow(text: str) -> Workflow:
    return parse_workflow(text.encode(), "test.toml")


def execute(store: JsonlStore, wf: Workflow, **runner_args: object) -> tuple[Outcome, RunState, list[Event]]:
    """Run ``wf`` to the end in this process; return the outcome, the folded state and the events."""
    runner = Runner(store, wf, **runner_args)  # type: ignore[arg-type]
    with stop_signals(runner):
        run = begin_run(store, LaunchSpec(new_run_id(), wf, allow_concurrent=True))
        with run:
            outcome = runner.execute(run)
    events = events_of(store, run.run_id)
    return outcome, fold(events), events


def item_events(events: list[Event], step: str) -> list[StepProgress]:
    return [e for e in events if isinstance(e, StepProgress) and e.step == step and e.item is not None]


FANOUT = """
name = "fan"
[[steps]]
name = "prepare"
run = "echo ready"
[[steps]]
name = "patch"
foreach = ["h1", "h2", "h3", "h4", "h5"]
concurrency = 2
run = "echo patching {item} as $RUNJOURNAL_ITEM; sleep 0.05"
[[steps]]
name = "verify"
run = "echo verified >&2"
"""


class TestSuccess:
    def test_every_step_and_item_journaled(self, store: JsonlStore) -> None:
        """A successful fan-out run records each step start/end and each item start/end with done/total."""
        outcome, state, events = execute(store, workflow(FANOUT))
        assert outcome == Outcome("succeeded", 0)
        assert state.status == "succeeded"
        assert [s.state for s in state.steps.values()] == ["succeeded"] * 3
        ends = [e for e in item_events(events, "patch") if e.item_state != "started"]
        assert [(e.done, e.total) for e in ends] == [(i, 5) for i in range(1, 6)]
        assert {e.item for e in ends} == {"h1", "h2", "h3", "h4", "h5"}
        patch = state.steps["patch"]
        assert (patch.done, patch.total) == (5, 5)

    def test_concurrency_is_respected(self, store: JsonlStore) -> None:
        """At no point in the journal are more items in flight than the step's concurrency."""
        _, _, events = execute(store, workflow(FANOUT))
        in_flight, most = set(), 0
        for event in item_events(events, "patch"):
            if event.item_state == "started":
                in_flight.add(event.item)
            else:
                in_flight.discard(event.item)
            most = max(most, len(in_flight))
        assert most == 2

    def test_output_kept_per_step_and_item(self, store: JsonlStore) -> None:
        """stdout and stderr of each command are kept in private files beside the journal."""
        _, state, _ = execute(store, workflow(FANOUT))
        log_dir = store.side_files.log_dir(state.run_id or "")
        assert unit_log_path(log_dir, "prepare").read_text() == "ready\n"
        assert unit_log_path(log_dir, "verify").read_text() == "verified\n"
        item_log = unit_log_path(log_dir, "patch", "h3")
        assert item_log.read_text() == "patching h3 as h3\n"
        assert stat.S_IMODE(item_log.stat().st_mode) == 0o600
        assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700

    def test_children_do_not_inherit_the_journal(self, store: JsonlStore) -> None:
        """A step's process holds no fd of the journal (so it can never keep the run's lock)."""
        wf = workflow('name = "w"\n[[steps]]\nname = "fds"\nrun = "ls -l /proc/$$/fd"\n')
        _, state, _ = execute(store, wf)
        listing = unit_log_path(store.side_files.log_dir(state.run_id or ""), "fds").read_text()
        assert ".jsonl" not in listing and "runs/" not in listing
        assert "0 -> /dev/null" in listing

    def test_heartbeats_while_a_step_runs(self, store: JsonlStore) -> None:
        """The runner heartbeats at the workflow's interval while a step runs."""
        wf = workflow('name = "w"\nheartbeat_interval = 0.05\n[[steps]]\nname = "a"\nrun = "sleep 0.4"\n')
        _, _, events = execute(store, wf)
        assert sum(1 for e in events if e.type == "heartbeat") >= 2

    def test_environment(self, store: JsonlStore) -> None:
        """Steps see the run id, step name and inputs in their environment."""
        wf = workflow('name = "w"\n[[steps]]\nname = "env"\n'
                      'run = "echo $RUNJOURNAL_RUN_ID $RUNJOURNAL_STEP $RUNJOURNAL_INPUT_version"\n')
        _, state, _ = execute(store, wf, inputs={"version": "1.2"})
        out = unit_log_path(store.side_files.log_dir(state.run_id or ""), "env").read_text()
        assert out == f"{state.run_id} env 1.2\n"


class TestFailure:
    def test_failing_item_lets_in_flight_items_finish(self, store: JsonlStore, tmp_path: Path) -> None:
        """A failing item fails the run after in-flight items end; later items and steps never start."""
        gate = tmp_path / "gate"
        wf = workflow(f"""
            name = "w"
            [[steps]]
            name = "fan"
            foreach = ["bad", "slow", "c", "d"]
            concurrency = 2
            run = '[ {{item}} = bad ] && exit 3; while [ ! -e {gate} ]; do sleep 0.01; done; touch {tmp_path}/{{item}}.done'
            [[steps]]
            name = "after"
            run = "true"
        """.replace("\n            ", "\n"))
        runner = Runner(store, wf, on_event=lambda e: _open_gate_after_failure(e, gate))
        with stop_signals(runner):
            run = begin_run(store, LaunchSpec(new_run_id(), wf))
            with run:
                outcome = runner.execute(run)
        state = state_of(store, run.run_id)
        assert outcome == Outcome("failed", 3)
        assert (state.status, state.reason, state.terminal.step) == ("failed", "step-failed", "fan")  # type: ignore[union-attr]
        items = state.steps["fan"].items
        assert (items["bad"].state, items["bad"].exit_code) == ("failed", 3)
        assert items["slow"].state == "succeeded" and (tmp_path / "slow.done").exists()
        assert (items["c"].state, items["d"].state) == ("pending", "pending")
        assert state.steps["fan"].state == "failed"
        assert state.steps["after"].state == "pending"

    def test_failing_single_step(self, store: JsonlStore) -> None:
        """A single command's exit code fails its step and the run."""
        wf = workflow('name = "w"\n[[steps]]\nname = "a"\nrun = "exit 7"\n[[steps]]\nname = "b"\nrun = "true"\n')
        outcome, state, _ = execute(store, wf)
        assert outcome == Outcome("failed", 7)
        assert (state.steps["a"].state, state.steps["a"].exit_code, state.steps["a"].message) == ("failed", 7, "exit code 7")
        assert state.steps["b"].state == "pending"
        assert state.terminal.message == "exit code 7"  # type: ignore[union-attr]

    def test_command_not_found(self, store: JsonlStore) -> None:
        """An argv command that does not exist fails with 127 and says why."""
        wf = Workflow("w", (Step("x", argv=("/nonexistent/cmd",)),))
        outcome, state, _ = execute(store, wf)
        assert outcome == Outcome("failed", 127)
        assert "cannot start '/nonexistent/cmd'" in (state.steps["x"].message or "")


def _open_gate_after_failure(event: Event, gate: Path) -> None:
    if isinstance(event, StepProgress) and event.item == "bad" and event.item_state == "failed":
        gate.touch()


class TestTimeouts:
    def test_timeout_kills_the_process_group(self, store: JsonlStore, tmp_path: Path) -> None:
        """On timeout the whole process group is killed and the run fails with reason timeout."""
        wf = workflow(f'name = "w"\n[[steps]]\nname = "a"\ntimeout = 0.3\n'
                      f'run = "sleep 30 & echo $! > {tmp_path}/bg.pid; wait"\n')
        began = time.monotonic()
        outcome, state, _ = execute(store, wf, grace=2.0)
        assert time.monotonic() - began < 10
        assert outcome.status == "failed" and state.reason == "timeout"
        assert (state.steps["a"].message or "").startswith("timed out after 0.3s")
        background = int((tmp_path / "bg.pid").read_text())
        wait_for(lambda: process_gone(background), "the timed-out step's background process to die")

    def test_leftovers_of_a_finished_step_are_killed(self, store: JsonlStore, tmp_path: Path) -> None:
        """A process a step leaves running in its group does not outlive the step."""
        wf = workflow(f'name = "w"\n[[steps]]\nname = "a"\nrun = "sleep 30 & echo $! > {tmp_path}/bg.pid"\n')
        outcome, _, _ = execute(store, wf)
        assert outcome.status == "succeeded"
        background = int((tmp_path / "bg.pid").read_text())
        wait_for(lambda: process_gone(background), "the leftover process to die")


SLOW = """
name = "w"
[[steps]]
name = "a"
run = "true"
[[steps]]
name = "b"
foreach = ["x", "y", "z"]
concurrency = 2
run = "sleep 30"
[[steps]]
name = "c"
run = "true"
"""


def _stop_when_b_runs(action: object) -> object:
    def on_event(event: Event) -> None:
        if isinstance(event, StepProgress) and event.item == "y" and event.item_state == "started":
            action()  # type: ignore[operator]

    return on_event


class TestStop:
    def test_signal_cancels_and_stops_children(self, store: JsonlStore) -> None:
        """SIGTERM to the runner stops the running items and records cancelled by the signal."""
        wf = workflow(SLOW)
        runner = Runner(store, wf, grace=2.0)
        runner.on_event = _stop_when_b_runs(lambda: os.kill(os.getpid(), signal.SIGTERM))  # type: ignore[assignment]
        began = time.monotonic()
        with stop_signals(runner):
            run = begin_run(store, LaunchSpec(new_run_id(), wf))
            with run:
                outcome = runner.execute(run)
        assert time.monotonic() - began < 10
        state = state_of(store, run.run_id)
        assert outcome == Outcome("cancelled")
        assert (state.status, state.terminal.by, state.terminal.reason) == (  # type: ignore[union-attr]
            "cancelled", "signal:SIGTERM", "terminated")
        items = state.steps["b"].items
        assert [items[n].state for n in "xyz"] == ["failed", "failed", "pending"]
        assert "stopped: run cancelled" in (items["x"].message or "")
        assert state.steps["c"].state == "pending"

    def test_cancel_request_names_who_and_why(self, store: JsonlStore) -> None:
        """With a cancel request on disk, cancelled records its author and reason, and the request is removed."""
        wf = workflow(SLOW)
        runner = Runner(store, wf, grace=2.0)
        run = begin_run(store, LaunchSpec(new_run_id(), wf))

        def ask() -> None:
            write_cancel_request(store.side_files, run.run_id, "alice@host", "wrong version")
            runner.request_stop("SIGTERM")

        runner.on_event = _stop_when_b_runs(ask)  # type: ignore[assignment]
        with run:
            runner.execute(run)
        state = state_of(store, run.run_id)
        assert (state.terminal.by, state.terminal.reason) == ("alice@host", "wrong version")  # type: ignore[union-attr]
        assert not store.side_files.cancel_request(run.run_id).exists()

    def test_stop_before_any_step(self, store: JsonlStore) -> None:
        """A stop requested before the first step records cancelled with no step started."""
        wf = workflow(SLOW)
        runner = Runner(store, wf)
        runner.request_stop("SIGINT")
        run = begin_run(store, LaunchSpec(new_run_id(), wf))
        with run:
            assert runner.execute(run) == Outcome("cancelled")
        state = state_of(store, run.run_id)
        assert state.terminal.by == "signal:SIGINT"  # type: ignore[union-attr]
        assert all(s.state == "pending" for s in state.steps.values())


class TestSkip:
    def test_skip_plan_from_a_partial_run(self) -> None:
        """Succeeded steps and items (and ones skipped for succeeding earlier) are skipped; the rest run."""
        state = RunState(run_id="old")
        state.steps = {
            "a": StepState("a", state="succeeded"),
            "b": StepState("b", state="failed", items={
                "x": ItemState("x", "succeeded"), "y": ItemState("y", "failed"), "z": ItemState("z")}),
            "c": StepState("c", state="skipped", message="succeeded in run older"),
            "d": StepState("d", state="skipped", message="not needed"),
        }
        plan = skip_plan_from(state)
        assert plan == SkipPlan({"a": "old", "c": "older"}, {"b": {"x": "old"}})

    def test_skipped_steps_and_items_are_recorded_not_run(self, store: JsonlStore) -> None:
        """Skipped work is journaled as skipped with the run it succeeded in, and its commands never run."""
        wf = workflow(FANOUT)
        plan = SkipPlan({"prepare": "r1"}, {"patch": {"h1": "r1", "h4": "r0"}})
        outcome, state, events = execute(store, wf, skip=plan)
        assert outcome.status == "succeeded"
        assert (state.steps["prepare"].state, state.steps["prepare"].message) == ("skipped", "succeeded in run r1")
        items = state.steps["patch"].items
        assert (items["h1"].state, items["h1"].message) == ("skipped", "succeeded in run r1")
        assert (items["h4"].state, items["h4"].message) == ("skipped", "succeeded in run r0")
        assert [items[n].state for n in ("h2", "h3", "h5")] == ["succeeded"] * 3
        log_dir = store.side_files.log_dir(state.run_id or "")
        assert not unit_log_path(log_dir, "prepare").exists()
        assert not unit_log_path(log_dir, "patch", "h1").exists()
        assert not state.anomalies


class TestEcho:
    def test_exec_output_passes_through_and_is_kept(self, store: JsonlStore, capfd: pytest.CaptureFixture[str]) -> None:
        """In echo mode (exec) the command's stdout and stderr reach ours and are also kept."""
        wf = Workflow("w", (Step("sh", argv=("sh", "-c", "echo out; echo err >&2")),))
        _, state, _ = execute(store, wf, echo=True)
        captured = capfd.readouterr()
        assert "out\n" in captured.out and "err\n" in captured.err
        kept = unit_log_path(store.side_files.log_dir(state.run_id or ""), "sh").read_text()
        assert sorted(kept.splitlines()) == ["err", "out"]


class TestProgress:
    def test_plain_lines(self, store: JsonlStore) -> None:
        """Off a terminal, progress is one plain line per event."""
        stream = io.StringIO()
        wf = workflow('name = "w"\n[[steps]]\nname = "a"\nforeach = ["x"]\nrun = "true"\n'
                      '[[steps]]\nname = "b"\nrun = "exit 2"\n')
        _, state, _ = execute(store, wf, on_event=Progress(stream, live=False))
        rid = state.run_id
        assert stream.getvalue() == (
            f"run {rid} started: workflow w, 2 steps\n"
            "step a started (1 items)\n"
            "  a [x] started\n"
            "  a [x] succeeded (1/1)\n"
            "step a succeeded\n"
            "step b started\n"
            "step b failed: exit code 2\n"
            f"run {rid} failed: step-failed (step b, exit code 2)\n"
        )

    def test_live_status_line(self, store: JsonlStore) -> None:
        """On a terminal, a redrawn status line shows the step's position and items done/total."""
        stream = io.StringIO()
        progress = Progress(stream, live=True)
        execute(store, workflow(FANOUT), on_event=progress)
        out = stream.getvalue()
        assert "\r\x1b[K[2/3] patch 0/5 done, 1 running" in out
        assert "\r\x1b[K[2/3] patch 3/5 done" in out
        assert "\r\x1b[Kstep patch succeeded\n" in out
        assert "  patch [h1] started" not in out

    def test_names_are_sanitised(self) -> None:
        """Escape sequences in item names are shown visibly, never sent to the terminal."""
        event = StepProgress(run_id="r1", seq=1, ts="2026-01-01T00:00:00.000000Z", step="s\x1b]52;c;x\x07",
                             state="started", item="\x1b[2J", item_state="failed", done=1, total=1)
        line = describe(event, RunState()) or ""
        assert "\x1b" not in line and "\x07" not in line
        assert "␛[2J" in line


class TestSkipChangedItems:
    def test_fanout_step_judged_by_items(self, store: JsonlStore) -> None:
        """A fan-out step that succeeded before still runs items that were not part of it then."""
        wf = workflow('name = "w"\n[[steps]]\nname = "fan"\nforeach = ["old", "new"]\nrun = "true"\n')
        _, state, _ = execute(store, wf, skip=SkipPlan({"fan": "r1"}, {"fan": {"old": "r1"}}))
        items = state.steps["fan"].items
        assert (items["old"].state, items["new"].state) == ("skipped", "succeeded")
        assert state.steps["fan"].state == "succeeded"

    def test_fully_done_fanout_step_is_skipped(self, store: JsonlStore) -> None:
        """A fan-out step whose every item succeeded before is recorded skipped, items included."""
        wf = workflow('name = "w"\n[[steps]]\nname = "fan"\nforeach = ["a", "b"]\nrun = "exit 1"\n')
        outcome, state, _ = execute(store, wf, skip=SkipPlan({"fan": "r1"}, {"fan": {"a": "r1", "b": "r0"}}))
        assert outcome.status == "succeeded"
        fan = state.steps["fan"]
        assert (fan.state, fan.message, fan.done, fan.total) == ("skipped", "succeeded in run r1", 2, 2)
        assert [(i.state, i.message) for i in fan.items.values()] == [
            ("skipped", "succeeded in run r1"), ("skipped", "succeeded in run r0")]
        assert not state.anomalies


class TestOwnership:
    def test_started_events_record_each_commands_process_group(self, store: JsonlStore) -> None:
        """The event that starts a single step or an item names its command's process group, identity and all."""
        _, state, events = execute(store, workflow(FANOUT))
        starts = [e for e in events if isinstance(e, StepProgress) and e.process is not None]
        assert sorted((e.step, e.item) for e in starts) == [("patch", f"h{n}") for n in range(1, 6)] + [
            ("prepare", None), ("verify", None)]
        me = read_stat("self")
        assert me is not None
        for event in starts:
            process = event.process
            assert process is not None and process.pgid == process.pid and process.pid != os.getpid()
            assert process.start_ticks >= me.start_ticks and process.boot_id == boot_id().strip().lower()
            assert process.pid_ns == pid_namespace("self")
        assert state.steps["patch"].items["h3"].process is not None
        assert state.steps["patch"].process is None  # a fan-out step runs no command of its own

    def test_watchdog_never_outlives_a_finished_run(self, store: JsonlStore) -> None:
        """After a run ends normally its watchdog process has exited (and was reaped)."""
        runner = Runner(store, workflow(FANOUT))
        run = begin_run(store, LaunchSpec(new_run_id(), workflow(FANOUT), allow_concurrent=True))
        with run:
            runner.execute(run)
        watchdog = runner._watchdog
        assert watchdog is not None and watchdog.process.returncode == 0
        assert process_gone(watchdog.process.pid)

    def test_a_writer_refused_for_good_stops_its_steps_and_raises(self, store: JsonlStore, tmp_path: Path) -> None:
        """When heartbeats find the writer refused (fenced, closed), the steps are stopped and the run raises."""
        pid_file = tmp_path / "step.pid"
        wf = workflow(f'name = "w"\nheartbeat_interval = 0.05\n[[steps]]\nname = "a"\n'
                      f'run = "trap \'\' TERM; echo $$ > {pid_file}; sleep 30"\n')
        runner = Runner(store, wf)
        run = begin_run(store, LaunchSpec(new_run_id(), wf, allow_concurrent=True))
        with pytest.raises(WriterClosedError, match="the writer is closed"), run:
            wait = threading.Thread(target=lambda: (wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(),
                                                             "the step to start"), run.writer.close()))
            wait.start()
            started = time.monotonic()
            runner.execute(run)
        step_pid = int(pid_file.read_text())
        wait_for(lambda: process_gone(step_pid), "the step (which ignores SIGTERM) to be killed", timeout=5)
        assert time.monotonic() - started < 10

    def test_a_gated_command_runs_only_once_released(self, tmp_path: Path) -> None:
        """A command waits at its gate: released it runs (same pid); if the gate closes first it never runs."""
        ran, never = tmp_path / "ran", tmp_path / "never"
        popen, gate = spawn_gated(["sh", "-c", f"echo $$ > {ran}"], env=dict(os.environ), out=subprocess.DEVNULL)
        release(gate)
        assert popen.wait(10) == 0 and int(ran.read_text()) == popen.pid
        popen, gate = spawn_gated(["touch", str(never)], env=dict(os.environ), out=subprocess.DEVNULL)
        os.close(gate)  # the runner died before recording the start
        assert popen.wait(10) == 125 and not never.exists()
        with pytest.raises(FileNotFoundError):
            spawn_gated(["no-such-command-xyz"], env=dict(os.environ), out=subprocess.DEVNULL)
