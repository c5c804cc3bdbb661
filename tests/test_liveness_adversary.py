"""Liveness verdicts that cannot be fooled, with real processes: pid namespaces, foreign boot ids, decoys.

Each case is one the issue measured going wrong: a writer under ``unshare --pid --fork``
(sharing the host's /proc) that was never abandoned and whose "pid" belonged to a decoy; a
writer with another boot id but this host name, alive and holding its lock, shown as
rebooted while a second run of its workflow started; a boot id written with its newline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from run_helpers import cli_argv, process_gone, state_of, wait_for, write_workflow

from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.procfacts import boot_id, pid_namespace, process_info

pytestmark = pytest.mark.slow

INTERVAL = 0.3
LEASE = 3 * INTERVAL
MARGIN = 3.0
"""Seconds a reader may take beyond the lease (starting `runjournal history`, the poll)."""

FOREIGN_WRITER = """
import sys
from runjournal.journal.identity import writer_identity
from runjournal.journal.run import start_run
root, workflow, boot = sys.argv[1:4]
identity = writer_identity().model_copy(update={"boot_id": boot})
run = start_run(workflow, ["s"], root=root, identity=identity, heartbeat_interval=%s)
run.step_started("s")
print(run.run_id, flush=True)
sys.stdin.read()
""" % INTERVAL


@pytest.fixture
def store(journal_dir: Path) -> JsonlStore:
    return JsonlStore(journal_dir)


def cli(store: JsonlStore, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_argv(store.root, *args), capture_output=True, text=True, timeout=60)


def history(store: JsonlStore) -> dict[str, dict]:
    result = cli(store, "history", "--json")
    assert result.returncode == 0, result.stderr
    return {row["run_id"]: row for row in json.loads(result.stdout)}


@pytest.fixture
def foreign_writer(store: JsonlStore) -> Iterator:
    """Start a writer process recording a boot id of our choosing; it holds its run's lock until killed."""
    procs: list[subprocess.Popen[str]] = []

    def start(workflow: str, boot: str) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen([sys.executable, "-c", FOREIGN_WRITER, str(store.root), workflow, boot],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        return proc, proc.stdout.readline().strip()

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_live_writer_with_another_boot_id_keeps_its_run_and_its_workflow(
    store: JsonlStore, tmp_path: Path, foreign_writer
) -> None:
    """Another machine with this host name, alive over a shared directory: running, busy, and no second run."""
    proc, run_id = foreign_writer("deploy", "0f0f0f0f-another-machine")
    rows = history(store)
    assert (rows[run_id]["status"], rows[run_id]["reason"]) == ("running", None)
    reconcile = json.loads(cli(store, "reconcile", run_id, "--json").stdout)["runs"][0]
    assert reconcile["action"] == "busy" and "another machine with this host name" in reconcile["message"]
    wf = write_workflow(tmp_path, 'name = "deploy"\n[[steps]]\nname = "s"\nrun = "true"\n')
    second = cli(store, "run", str(wf))
    assert second.returncode == 3 and f"already has a live run {run_id}" in second.stderr
    assert list(store.run_ids()) == [run_id]
    assert state_of(store, run_id).status == "running"
    proc.kill()
    proc.wait()
    rows = history(store)  # its lock is free now: the boot id says rebooted
    assert (rows[run_id]["status"], rows[run_id]["reason"]) == ("abandoned", "host-rebooted")


def test_a_boot_id_written_with_its_newline_changes_nothing(store: JsonlStore, foreign_writer) -> None:
    """A foreign writer's boot id with a trailing newline (and upper case) is this boot: alive, then dead by its pid."""
    proc, run_id = foreign_writer("nl", boot_id().upper() + "\n")
    assert state_of(store, run_id).started.writer.boot_id.endswith("\n")  # type: ignore[union-attr]
    assert history(store)[run_id]["status"] == "running"
    proc.kill()
    proc.wait()
    row = history(store)[run_id]
    assert (row["status"], row["reason"]) == ("abandoned", "originating-process-not-alive")


def _spawn_at(pid: int, marker: Path) -> subprocess.Popen[bytes]:
    """A decoy process at exactly ``pid`` (root: /proc/sys/kernel/ns_last_pid); it records any SIGTERM it gets."""
    script = f"trap 'echo TERM >> {marker}' TERM; while :; do sleep 0.05; done"
    for _ in range(200):
        if process_info(pid) is not None:
            time.sleep(0.01)
            continue
        Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
        decoy = subprocess.Popen(["sh", "-c", script])
        if decoy.pid == pid:
            return decoy
        decoy.kill()
        decoy.wait()
    pytest.fail(f"could not start a decoy at pid {pid} (other processes kept taking it)")


def _child_of(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def test_a_writer_in_another_pid_namespace_is_abandoned_within_its_lease_and_decoys_are_left_alone(
    store: JsonlStore, tmp_path: Path
) -> None:
    """unshare --pid --fork (host /proc): the writer records its /proc pid and namespace; SIGKILLed, it is abandoned
    within the lease by the lock and the lease, and decoys at its recorded pids are never signalled."""
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True, text=True)
    assert probe.returncode == 0, f"this test needs `unshare --pid --fork` (root): {probe.stderr}"
    wf = write_workflow(tmp_path, f'name = "ns"\nheartbeat_interval = {INTERVAL}\n'
                                  '[[steps]]\nname = "wait"\nrun = "sleep 300"\n')
    outer = subprocess.Popen(["unshare", "--pid", "--fork", *cli_argv(store.root, "run", str(wf))],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    decoys: list[subprocess.Popen[bytes]] = []
    marker = tmp_path / "decoy-signals"
    try:
        run_id = wait_for(lambda: next(iter(store.run_ids()), None), "the run to exist")
        state = wait_for(lambda: (s := state_of(store, run_id)).steps["wait"].process and s, "the step to start")
        writer, step = state.started.writer, state.steps["wait"].process  # type: ignore[union-attr]
        inner = wait_for(lambda: _child_of(outer.pid), "unshare's child")
        assert writer.pid == inner and writer.pid_ns == pid_namespace(inner) != pid_namespace("self")
        assert step is not None and step.pid_ns == writer.pid_ns and process_info(step.pid) is not None
        os.kill(writer.pid, signal.SIGKILL)  # pid 1 of its namespace: everything in it dies with it
        killed_at = time.monotonic()
        outer.wait(10)
        decoys = [_spawn_at(writer.pid, marker), _spawn_at(step.pid, marker)]
        rows = wait_for(lambda: (r := history(store))[run_id]["status"] == "abandoned" and r,
                        "the run to be abandoned", timeout=LEASE + MARGIN + 10, every=0.1)
        assert time.monotonic() - killed_at <= LEASE + MARGIN
        assert rows[run_id]["reason"] == "heartbeat-expired"
        evidence = state_of(store, run_id).terminal.evidence  # type: ignore[union-attr]
        assert evidence["pid_ns_recorded"] != evidence["pid_ns_now"] and "pid" not in evidence
        assert [w["outcome"] for w in evidence["work"]] == ["unchecked"]
        cancel = cli(store, "cancel", run_id, "--reason", "decoy check")
        assert cancel.returncode == 1 and "already abandoned" in cancel.stderr
        time.sleep(0.2)  # a SIGTERM sent to a decoy would have been recorded by now
        assert all(d.poll() is None for d in decoys) and not marker.exists()
    finally:
        for process in [outer, *decoys]:
            process.kill()
            process.wait()


def test_cancel_never_signals_a_decoy_at_the_writers_pid(store: JsonlStore, tmp_path: Path) -> None:
    """A process now holding a dead writer's recorded pid (other start ticks) is not the writer: cancel leaves it be."""
    wf = write_workflow(tmp_path, 'name = "d"\nheartbeat_interval = 30\n[[steps]]\nname = "s"\nrun = "sleep 300"\n')
    runner = subprocess.Popen(cli_argv(store.root, "run", str(wf)), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = tmp_path / "decoy-signals"
    decoy = None
    try:
        run_id = wait_for(lambda: next(iter(store.run_ids()), None), "the run to exist")
        wait_for(lambda: state_of(store, run_id).steps["s"].process, "the step to start")
        pid = state_of(store, run_id).started.writer.pid  # type: ignore[union-attr]
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
        decoy = _spawn_at(pid, marker)
        result = cli(store, "cancel", run_id, "--reason", "cleanup")
        assert result.returncode == 0, result.stderr
        terminal = state_of(store, run_id).terminal
        assert (terminal.type, terminal.reason) == ("cancelled", "cleanup")  # type: ignore[union-attr]
        time.sleep(0.2)
        assert decoy.poll() is None and not marker.exists()
        assert process_gone(pid) is False
    finally:
        runner.kill()
        runner.wait()
        if decoy is not None:
            decoy.kill()
            decoy.wait()


def test_an_unreadable_run_whose_lock_is_held_blocks_a_second_start(store: JsonlStore, tmp_path: Path) -> None:
    """A run that cannot be read to its end (damaged) but whose writer still holds its lock might be running: no second start."""
    from runjournal.journal.run import start_run

    run = start_run("held", ["s"], store=store, heartbeat_interval=30)
    try:
        with open(store.path(run.run_id), "ab") as f:
            f.write(b'{"not": "a journal line"}\n')  # the writer keeps its fd, and its lock
        listed = cli(store, "history", "--json")
        assert listed.returncode == 3  # a run could not be read
        assert [row["status"] for row in json.loads(listed.stdout)] == ["damaged"]  # its prefix still reads
        wf = write_workflow(tmp_path, 'name = "held"\n[[steps]]\nname = "s"\nrun = "true"\n')
        second = cli(store, "run", str(wf))
        assert second.returncode == 3 and f"already has a damaged run whose lock is held {run.run_id}" in second.stderr
        assert list(store.run_ids()) == [run.run_id]
    finally:
        run.writer.close()
