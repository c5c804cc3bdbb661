"""A run owns its process tree: steps die with their runner, recovery never runs a unit twice at once.

Real runners, SIGKILLed for real; every step process is found by the run's marker in its
environment (read from /proc here, independently of the code under test).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from run_helpers import cli_argv, process_gone, state_of, wait_for, write_workflow

from runjournal.journal.events import AbandonReason, Event
from runjournal.journal.identity import checker_identity, current_user
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.procfacts import host_name

pytestmark = pytest.mark.slow

ITEMS = [f"i{n}" for n in range(8)]
KILL_DEADLINE = 1.0
"""The issue's goal: no process of the run's steps exists 1 s after its owner died."""


def marked_pids(run_id: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries RUNJOURNAL_RUN_ID=<run_id>."""
    needle = f"RUNJOURNAL_RUN_ID={run_id}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            if stat[stat.rindex(")") + 2] in "ZX":
                continue
            if needle in Path(f"/proc/{name}/environ").read_bytes().split(b"\0"):
                found.append(int(name))
        except (OSError, ValueError):
            continue
    return found


def kill_marked(run_id: str) -> None:
    """Clean-up: SIGKILL whatever of the run a failed test left behind."""
    for pid in marked_pids(run_id):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def fanout(tmp_path: Path, *, ignore_term: bool = False, seconds: float = 0.6) -> Path:
    """An 8-item fan-out, concurrency 4. Each item holds a per-item flock while it runs, so a second
    copy started while the first still lives writes ``overlap`` instead of running."""
    side, locks = tmp_path / "side", tmp_path / "locks"
    locks.mkdir()
    trap = "trap '' TERM; " if ignore_term else ""
    run = (f"{trap}exec 9>>{locks}/{{item}}; flock -n 9 || {{ echo overlap {{item}} >> {side}; exit 1; }}; "
           f"echo start {{item}} >> {side}; sleep {seconds}; echo end {{item}} >> {side}")
    quoted = json.dumps(run)  # a TOML basic string too
    return write_workflow(tmp_path, f"""
        name = "fan"
        heartbeat_interval = 0.5
        [[steps]]
        name = "patch"
        foreach = {json.dumps(ITEMS)}
        concurrency = 4
        run = {quoted}
    """)


def side_lines(tmp_path: Path) -> list[str]:
    path = tmp_path / "side"
    return path.read_text().splitlines() if path.exists() else []


def mid_fanout(store: JsonlStore, tmp_path: Path, ended: int) -> str | None:
    """The run id once ``ended`` items ended and four are in flight, each past its start line."""
    ids = list(store.run_ids())
    if len(ids) != 1:
        return None
    items = state_of(store, ids[0]).steps["patch"].items.values()
    running = {i.name for i in items if i.state == "started"}
    started = {line.split()[1] for line in side_lines(tmp_path) if line.startswith("start")}
    done = sum(1 for i in items if i.state == "succeeded")
    return ids[0] if done >= ended and len(running) == 4 and running <= started else None


def start_owner(
    store: JsonlStore, wf: Path, detach: bool, ended: int = 1
) -> tuple[str, int, subprocess.Popen[bytes] | None]:
    """Start the run attached or detached; return the run id mid fan-out, the owner's pid and its Popen."""
    if detach:
        subprocess.run(cli_argv(store.root, "run", "--detach", str(wf)), check=True, capture_output=True)
        runner = None
    else:
        runner = subprocess.Popen(cli_argv(store.root, "run", str(wf)), start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_id = wait_for(lambda: mid_fanout(store, wf.parent, ended), "the fan-out to be mid way", timeout=20)
    owner = state_of(store, run_id).started.writer.pid  # type: ignore[union-attr]
    return run_id, owner, runner


def sigkill_owner(owner: int, runner: subprocess.Popen[bytes] | None) -> float:
    """SIGKILL the run's owner (its whole process group when attached); return when it died."""
    if runner is not None:
        os.killpg(runner.pid, signal.SIGKILL)  # what a harness does: its group, not just the process
        runner.wait()
    else:
        os.kill(owner, signal.SIGKILL)
        wait_for(lambda: process_gone(owner), "the supervisor to die", timeout=5, every=0.005)
    return time.monotonic()


def cli(store: JsonlStore, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_argv(store.root, *args), capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("detach", "ignore_term"), [(False, False), (True, False), (False, True)],
                         ids=["attached", "detached", "step-ignores-sigterm"])
def test_killed_owner_takes_its_steps_along_and_recovery_never_overlaps(
    journal_dir: Path, tmp_path: Path, detach: bool, ignore_term: bool
) -> None:
    """SIGKILL mid fan-out: within 1 s no step process exists; history records each in-flight unit's
    processes; rerun --unfinished started at once runs every unfinished item exactly once, never beside its first copy."""
    store = JsonlStore(journal_dir)
    run_id, owner, runner = start_owner(store, fanout(tmp_path, ignore_term=ignore_term), detach)
    try:
        killed_at = sigkill_owner(owner, runner)
        items = state_of(store, run_id).steps["patch"].items.values()
        in_flight = [i.name for i in items if i.state == "started"]
        done_first = [i.name for i in items if i.state == "succeeded"]
        wait_for(lambda: not marked_pids(run_id), "every step process to be gone", timeout=KILL_DEADLINE, every=0.01)
        assert time.monotonic() - killed_at <= KILL_DEADLINE
        history = cli(store, "history", "--json")
        assert [(r["run_id"], r["status"]) for r in json.loads(history.stdout)] == [(run_id, "abandoned")]
        evidence = state_of(store, run_id).terminal.evidence  # type: ignore[union-attr]
        work = {w["item"]: w for w in evidence["work"]}
        assert sorted(work) == sorted(in_flight)
        assert {w["outcome"] for w in work.values()} <= {"gone", "killed"}
        assert all(w["pgid"] is not None for w in work.values()) and evidence["still_running"] is False
        rerun = cli(store, "rerun", run_id, "--unfinished")
        assert rerun.returncode == 0, rerun.stderr
        lines = side_lines(tmp_path)
        assert not [line for line in lines if line.startswith("overlap")], lines
        assert {line.split()[1] for line in lines if line.startswith("end")} == set(ITEMS)
        starts = [line.split()[1] for line in lines if line.startswith("start")]
        assert all(starts.count(item) == 1 for item in done_first), (done_first, lines)  # skipped, not repeated
    finally:
        if runner is not None:
            runner.kill()
        kill_marked(run_id)


ESCAPE = ("import os, sys, time\n"
          "if os.fork(): os._exit(0)\n"
          "os.setsid()\n"
          "if os.fork(): os._exit(0)\n"
          "with open(sys.argv[1] + '.tmp', 'w') as f: f.write(str(os.getpid()))\n"
          "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"  # the final daemon names itself, whole
          "time.sleep(30)\n")


def test_a_step_that_escapes_its_group_is_reported_and_blocks_the_rerun(journal_dir: Path, tmp_path: Path) -> None:
    """A double fork + setsid survives the kill: it is recorded as escaped, and rerun waits for it (or the flag)."""
    store = JsonlStore(journal_dir)
    (tmp_path / "escape.py").write_text(ESCAPE)
    gate, daemon_pid = tmp_path / "gate", tmp_path / "daemon.pid"
    wf = write_workflow(tmp_path, f"""
        name = "escaper"
        [[steps]]
        name = "daemon"
        run = "{sys.executable} {tmp_path / 'escape.py'} {daemon_pid}; while [ ! -e {gate} ]; do sleep 0.05; done"
    """)
    runner = subprocess.Popen(cli_argv(store.root, "run", str(wf)), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_id = ""
    try:
        run_id = wait_for(lambda: next(iter(store.run_ids()), None), "the run to exist")
        # The daemon names itself once both forks are done: the first child, a session leader for an
        # instant, must not be taken for the escapee.
        escaped = [int(wait_for(lambda: daemon_pid.exists() and daemon_pid.read_text(), "the escapee to start"))]
        assert escaped[0] in marked_pids(run_id) and _sid(escaped[0]) not in (None, _step_pid(store, run_id))
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
        wait_for(lambda: marked_pids(run_id) == escaped, "the step's own group to be killed", timeout=KILL_DEADLINE)
        show = cli(store, "show", run_id)
        assert f"pid {escaped[0]} (daemon) left its process group and was still running" in show.stdout
        evidence = state_of(store, run_id).terminal.evidence  # type: ignore[union-attr]
        assert [e["pid"] for e in evidence["escaped"]] == escaped and evidence["still_running"] is True
        refused = cli(store, "rerun", run_id, "--unfinished")
        assert refused.returncode == 3
        assert f"daemon (pid {escaped[0]}, which left its process group)" in refused.stderr
        assert "--ignore-leftovers" in refused.stderr and len(list(store.run_ids())) == 1
        os.kill(escaped[0], signal.SIGKILL)
        wait_for(lambda: process_gone(escaped[0]), "the escapee to die")
        (tmp_path / "escape.py").write_text("")
        gate.touch()
        again = cli(store, "rerun", run_id, "--unfinished")
        assert again.returncode == 0, again.stderr
    finally:
        runner.kill()
        kill_marked(run_id)
        for other in store.run_ids():
            kill_marked(other)


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except ProcessLookupError:
        return None


def _step_pid(store: JsonlStore, run_id: str) -> int | None:
    process = state_of(store, run_id).steps["daemon"].process
    return process.pid if process is not None else None


@pytest.mark.parametrize("detach", [False, True], ids=["attached", "detached"])
def test_cancel_of_an_orphan_kills_its_leftovers_and_records_it(journal_dir: Path, tmp_path: Path, detach: bool) -> None:
    """Owner (runner or supervisor) and watchdog both SIGKILLed: cancel stops the orphaned steps and records who,
    why and what it killed."""
    store = JsonlStore(journal_dir)
    run_id, owner, runner = start_owner(store, fanout(tmp_path, seconds=30), detach=detach, ended=0)
    try:
        survivors = _kill_owner_and_watchdog(run_id, owner, runner)
        result = cli(store, "cancel", run_id[:16], "--reason", "stop the patch")
        assert result.returncode == 0, result.stderr
        by = f"{current_user()}@{host_name()}"
        assert result.stdout == f"{run_id} cancelled by {by}\n"
        wait_for(lambda: not marked_pids(run_id), "the leftovers to be gone", timeout=KILL_DEADLINE)
        terminal = state_of(store, run_id).terminal
        assert (terminal.type, terminal.by, terminal.reason) == ("cancelled", by, "stop the patch")  # type: ignore[union-attr]
        killed = sorted(p for w in terminal.evidence["work"] for p in w["pids"])  # type: ignore[union-attr]
        assert killed == sorted(survivors)
        assert {w["outcome"] for w in terminal.evidence["work"]} == {"killed"}  # type: ignore[union-attr]
        assert "stop the patch" in cli(store, "show", run_id).stdout
    finally:
        if runner is not None:
            runner.kill()
        kill_marked(run_id)


def test_cancel_after_abandoned_stops_leftovers_as_a_late_event(journal_dir: Path, tmp_path: Path) -> None:
    """A run recorded abandoned while its steps still ran: cancel kills them; the status stays abandoned."""
    store = JsonlStore(journal_dir)
    run_id, owner, runner = start_owner(store, fanout(tmp_path, seconds=30), detach=False, ended=0)
    try:
        survivors = _kill_owner_and_watchdog(run_id, owner, runner)
        with store.locked_run(run_id) as locked:  # an older reconciler, which left the steps alone
            state = state_of(store, run_id)
            locked.append_abandoned(reason=AbandonReason.ORIGINATING_PROCESS_NOT_ALIVE, evidence={},
                                    checker=checker_identity(), last_seq=state.last_seq)
        result = cli(store, "cancel", run_id, "--reason", "clean up")
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"{run_id} abandoned\n"
        wait_for(lambda: not marked_pids(run_id), "the leftovers to be gone", timeout=KILL_DEADLINE)
        state = state_of(store, run_id)
        assert state.status == "abandoned" and [e.type for e in state.late_events] == ["cancelled"]
        late: Event = list(store.read(run_id).events())[-1]
        assert sorted(p for w in late.evidence["work"] for p in w["pids"]) == sorted(survivors)  # type: ignore[union-attr]
        again = cli(store, "cancel", run_id)
        assert again.returncode == 1 and "already abandoned; nothing to cancel" in again.stderr
    finally:
        runner.kill()  # type: ignore[union-attr]
        kill_marked(run_id)


def _kill_owner_and_watchdog(run_id: str, owner: int, runner: subprocess.Popen[bytes] | None) -> list[int]:
    """SIGKILL the watchdog, then the run's owner: the steps are left running; return their pids."""
    watchdog = int(next(p for p in os.listdir("/proc") if p.isdigit() and _is_watchdog_of(int(p), owner)))
    os.kill(watchdog, signal.SIGKILL)
    wait_for(lambda: process_gone(watchdog), "the watchdog to die")
    sigkill_owner(owner, runner)
    survivors = marked_pids(run_id)
    assert len(survivors) == 8  # four items, each a shell and its sleep
    return survivors


def _is_watchdog_of(pid: int, owner: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"runjournal.cli.engine.watchdog" in argv and str(owner).encode() in argv
