"""Reconciliation in one process: abandon only dead writers, repair torn tails, never change a byte twice."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

from runjournal.cli.main import cli
from runjournal.journal.crashpoints import CRASH_ENV, CRASH_EXIT_CODE
from runjournal.journal.errors import CorruptLineError
from runjournal.journal.events import AbandonReason, WriterIdentity
from runjournal.journal.identity import checker_identity, writer_identity
from runjournal.journal.jsonl.repair import append_abandoned
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.procfacts import process_info
from runjournal.journal.run import Run, start_run
from runjournal.journal.testing import TornStream, journal_lines, make_started, make_stream, torn_streams, write_journal
from runjournal.journal.verify import verify_file
from runjournal.projections.fold import fold
from runjournal.projections.history import run_states
from runjournal.projections.reconcile import current_state, reconcile_run

FAR_FUTURE = datetime(2300, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def dead_pid() -> tuple[int, int]:
    """``(pid, start ticks)`` of a child process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    info = process_info(child.pid)
    assert info is not None
    child.wait()
    return child.pid, info.start_ticks


def dead_identity(dead_pid: tuple[int, int]) -> WriterIdentity:
    """A writer identity on this host and boot whose process is gone."""
    pid, ticks = dead_pid
    return writer_identity().model_copy(update={"pid": pid, "start_ticks": ticks})


def orphan(store: JsonlStore, identity: WriterIdentity, steps: int = 1) -> Run:
    """A run with ``steps`` steps started whose writer was closed without a terminal event."""
    run = start_run("wf", [f"s{i}" for i in range(3)], store=store, identity=identity, durability="none")
    for i in range(steps):
        run.step_started(f"s{i}")
    run.writer.close()
    return run


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def events_of(store: JsonlStore, run_id: str) -> list:
    return list(store.read(run_id).events())


# ---------------------------------------------------------------- abandon the dead, never the living


def test_dead_writer_is_abandoned_with_evidence(journal_dir: Path, dead_pid: tuple[int, int]) -> None:
    """A run whose writer's pid is gone gets one ``abandoned`` event after all its events, naming what was checked."""
    store = JsonlStore(journal_dir)
    run = orphan(store, dead_identity(dead_pid), steps=2)
    result = reconcile_run(store, run.run_id)
    assert result.action == "abandoned"
    events = events_of(store, run.run_id)
    assert [e.type for e in events] == ["started", "step-progress", "step-progress", "abandoned"]
    last = events[-1]
    assert last.reason is AbandonReason.ORIGINATING_PROCESS_NOT_ALIVE
    assert last.last_seq == 2 and last.seq == 3
    assert last.checker == checker_identity()
    assert last.evidence["pid"] == dead_pid[0] and last.evidence["lock"] == "free"
    assert last.evidence["pid_state"] in ("gone", "reused")
    assert last.tail_quarantined is None
    assert result.state == fold(events)
    assert list(verify_file(store.path(run.run_id), run.run_id)) == []


def test_reconciling_twice_changes_no_byte(journal_dir: Path, dead_pid: tuple[int, int]) -> None:
    """A second reconcile of an abandoned run finds it terminal and leaves every file as it was."""
    store = JsonlStore(journal_dir)
    run = orphan(store, dead_identity(dead_pid))
    assert reconcile_run(store, run.run_id).action == "abandoned"
    before = snapshot(journal_dir)
    assert reconcile_run(store, run.run_id).action == "terminal"
    assert current_state(store, run.run_id).status == "abandoned"
    assert snapshot(journal_dir) == before


def test_live_writer_is_never_abandoned(journal_dir: Path) -> None:
    """A run written by this (living) process is reported alive and its journal untouched, even by an operator."""
    store = JsonlStore(journal_dir)
    with start_run("wf", ["a"], store=store, durability="none") as run:
        run.step_started("a")
        before = snapshot(journal_dir)
        assert reconcile_run(store, run.run_id).action == "alive"
        assert reconcile_run(store, run.run_id, operator="cleanup").action == "alive"
        current = current_state(store, run.run_id)
        assert (current.status, current.action, current.derived.liveness) == ("running", "alive", "alive")
        assert snapshot(journal_dir) == before
    assert fold(events_of(store, run.run_id)).status == "succeeded"


def test_alive_process_without_the_lock_is_still_alive(journal_dir: Path) -> None:
    """A writer that closed its fd but whose process lives (this one) is not abandoned: the pid check is certain."""
    store = JsonlStore(journal_dir)
    run = orphan(store, writer_identity())
    assert reconcile_run(store, run.run_id).action == "alive"
    assert fold(events_of(store, run.run_id)).status == "running"


def test_dead_pid_with_the_lock_held_is_busy_not_abandoned(journal_dir: Path, dead_pid: tuple[int, int]) -> None:
    """If the recorded pid is gone but someone holds the run's lock (an inheriting child), nothing is written."""
    store = JsonlStore(journal_dir)
    run = start_run("wf", ["a"], store=store, identity=dead_identity(dead_pid), durability="none")
    try:
        before = snapshot(journal_dir)
        result = reconcile_run(store, run.run_id)
        assert (result.action, result.verdict.liveness, result.verdict.evidence["lock"]) == ("busy", "unknown", "held")
        assert current_state(store, run.run_id).status == "running"
        assert snapshot(journal_dir) == before
    finally:
        run.writer.close()
    assert reconcile_run(store, run.run_id).action == "abandoned"


def test_terminal_run_is_left_alone(journal_dir: Path, dead_pid: tuple[int, int]) -> None:
    """A run that ended (even with a torn tail after it and a dead writer) is reported terminal and not touched."""
    write_journal(journal_dir, make_stream(terminal="failed"), fragment=b'{"v":1,"run')
    store = JsonlStore(journal_dir)
    before = snapshot(journal_dir)
    result = reconcile_run(store, make_stream()[0].run_id)
    assert (result.action, result.state.status) == ("terminal", "failed")
    assert snapshot(journal_dir) == before


def test_dry_run_writes_nothing(journal_dir: Path, dead_pid: tuple[int, int]) -> None:
    """``dry_run`` reports would-abandon with the verdict and leaves the journal as it was."""
    store = JsonlStore(journal_dir)
    run = orphan(store, dead_identity(dead_pid))
    before = snapshot(journal_dir)
    result = reconcile_run(store, run.run_id, dry_run=True)
    assert (result.action, result.verdict.reason) == ("would-abandon", AbandonReason.ORIGINATING_PROCESS_NOT_ALIVE)
    assert snapshot(journal_dir) == before


@pytest.mark.parametrize("content", [b"", b'{"v":1,"run_id":"x'])
def test_run_without_started_is_reported_not_crashed(journal_dir: Path, content: bytes) -> None:
    """An empty run file (or one holding only a fragment) is reported unknown / empty and never written to."""
    runs = journal_dir / "runs"
    runs.mkdir(mode=0o700)
    (runs / "20260101T000000000000Z-dead.jsonl").write_bytes(content)
    store = JsonlStore(journal_dir)
    before = snapshot(journal_dir)
    result = reconcile_run(store, "20260101T000000000000Z-dead", operator="force it")
    assert (result.action, result.state.status) == ("unknown", "empty")
    current = current_state(store, "20260101T000000000000Z-dead")
    assert (current.status, current.derived) == ("empty", None)
    assert [c.status for c in run_states(store)] == ["empty"]
    assert snapshot(journal_dir) == before


def test_low_level_append_refuses_a_terminal_run(journal_dir: Path) -> None:
    """``append_abandoned`` never appends after a terminal event, whatever the caller decided."""
    write_journal(journal_dir, make_stream(terminal="succeeded"))
    store = JsonlStore(journal_dir)
    with pytest.raises(Exception, match="already has a terminal event"):
        append_abandoned(store, make_stream()[0].run_id, reason="operator", evidence={}, checker=checker_identity(), last_seq=0)


# ---------------------------------------------------------------- torn tails


@settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow])
@given(torn_streams(terminal=False))
def test_torn_tail_is_quarantined_before_abandoned_is_appended(torn: TornStream) -> None:
    """The fragment moves to a 0600 quarantine file, the journal is cut to whole lines, then abandoned; verify is clean."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = write_journal(root, torn.events, fragment=torn.fragment)
        run_id = torn.events[0].run_id
        store = JsonlStore(root)
        result = reconcile_run(store, run_id, now=FAR_FUTURE)
        assert result.action == "abandoned"
        assert result.verdict.reason in (AbandonReason.HEARTBEAT_EXPIRED, AbandonReason.HOST_REBOOTED)
        events = events_of(store, run_id)
        assert events[:-1] == torn.events and events[-1].type == "abandoned"
        quarantined = events[-1].tail_quarantined
        assert quarantined is not None
        assert (quarantined.offset, quarantined.length) == (torn.whole_length, len(torn.fragment))
        qpath = path.parent / quarantined.file
        assert quarantined.file == f"{path.name}.torn-{torn.whole_length}"
        assert qpath.read_bytes() == torn.fragment
        assert stat.S_IMODE(qpath.stat().st_mode) == 0o600
        assert path.read_bytes().startswith(torn.data[: torn.whole_length])
        assert list(verify_file(path, run_id)) == []
        before = snapshot(root)
        assert reconcile_run(store, run_id, now=FAR_FUTURE).action == "terminal"
        assert snapshot(root) == before
        assert sorted(os.listdir(path.parent)) == sorted([path.name, quarantined.file])


def _crash_reconcile(root: Path, run_id: str, label: str) -> None:
    code = (
        "import sys; from runjournal.journal.jsonl.store import JsonlStore; from runjournal.projections.reconcile import reconcile_run; "
        "reconcile_run(JsonlStore(sys.argv[1]), sys.argv[2])"
    )
    env = os.environ | {CRASH_ENV: label}
    proc = subprocess.run([sys.executable, "-c", code, str(root), run_id], env=env, capture_output=True, timeout=60)
    assert proc.returncode == CRASH_EXIT_CODE, proc.stderr.decode()


@pytest.mark.parametrize("label", ["reconcile-quarantined", "reconcile-truncated"])
def test_reconcile_interrupted_mid_repair_is_finished_by_the_next(
    journal_dir: Path, dead_pid: tuple[int, int], label: str
) -> None:
    """A reconciler killed after quarantining (or after truncating) leaves a journal the next one completes, with one quarantine file."""
    stream = [make_started(writer=dead_identity(dead_pid), steps=["a"])]
    path = write_journal(journal_dir, stream, fragment=b'{"v":1,"run_id":"torn')
    run_id = stream[0].run_id
    _crash_reconcile(journal_dir, run_id, label)
    assert fold(events_of(JsonlStore(journal_dir), run_id)).status == "running"
    result = reconcile_run(JsonlStore(journal_dir), run_id)
    assert result.action == "abandoned"
    last = result.state.terminal
    assert last.tail_quarantined is not None and last.tail_quarantined.length == len(b'{"v":1,"run_id":"torn')
    assert sorted(os.listdir(path.parent)) == sorted([path.name, last.tail_quarantined.file])
    assert list(verify_file(path, run_id)) == []


# ---------------------------------------------------------------- across hosts, operators


def _remote_run(root: Path, interval: float = 10.0) -> tuple[JsonlStore, str, datetime]:
    """A run written on another host whose ``started`` is stamped now."""
    identity = writer_identity().model_copy(update={"host": "build-17.example", "boot_id": "remote-boot"})
    stream = [make_started(writer=identity, heartbeat_interval=interval, ts=datetime.now(UTC))]
    write_journal(root, stream)
    return JsonlStore(root), stream[0].run_id, stream[0].ts


def test_remote_run_is_abandoned_only_after_its_lease(journal_dir: Path) -> None:
    """A run from another host is unknown within lease x interval of its last event and heartbeat-expired after."""
    store, run_id, last = _remote_run(journal_dir, interval=10.0)
    early = reconcile_run(store, run_id, now=last + timedelta(seconds=30))
    assert (early.action, early.verdict.liveness) == ("unknown", "unknown")
    assert reconcile_run(store, run_id, now=last + timedelta(seconds=31), lease_intervals=5).action == "unknown"
    late = reconcile_run(store, run_id, now=last + timedelta(seconds=31))
    assert (late.action, late.state.reason) == ("abandoned", "heartbeat-expired")
    assert late.state.terminal.evidence["age_seconds"] == 31.0


def test_operator_forces_an_unknown_run(journal_dir: Path) -> None:
    """With an operator's reason an unknown run is abandoned with reason operator and the observed evidence."""
    store, run_id, last = _remote_run(journal_dir)
    result = reconcile_run(store, run_id, now=last, operator="host decommissioned")
    assert (result.action, result.state.reason) == ("abandoned", "operator")
    evidence = result.state.terminal.evidence
    assert evidence["operator_reason"] == "host decommissioned"
    assert evidence["liveness_observed"] == "unknown"
    assert evidence["checked"][-1] == "operator" and evidence["host"] == "build-17.example"


# ---------------------------------------------------------------- reading with reconciliation


def test_current_state_reconciles_and_no_reconcile_only_derives(journal_dir: Path, dead_pid: tuple[int, int]) -> None:
    """Without reconciliation a dead run shows as abandoned? and nothing is written; with it, it is recorded."""
    store = JsonlStore(journal_dir)
    run = orphan(store, dead_identity(dead_pid))
    before = snapshot(journal_dir)
    derived = current_state(store, run.run_id, reconcile=False)
    assert (derived.status, derived.reason, derived.action) == ("abandoned?", "originating-process-not-alive", None)
    assert snapshot(journal_dir) == before
    current = current_state(store, run.run_id)
    assert (current.status, current.reason, current.action, current.derived) == (
        "abandoned", "originating-process-not-alive", "abandoned", None)


def test_run_states_lists_newest_first_and_survives_a_corrupt_run(journal_dir: Path, dead_pid: tuple[int, int]) -> None:
    """History yields every run newest first, reconciling orphans; a damaged journal is yielded with its prefix."""
    store = JsonlStore(journal_dir)
    ids = ["20260101T000000000000Z-0001", "20260102T000000000000Z-0002", "20260103T000000000000Z-0003"]
    write_journal(journal_dir, make_stream(ids[0], terminal="succeeded"))
    write_journal(journal_dir, [make_started(ids[1], writer=dead_identity(dead_pid))])
    good = make_stream(ids[2], terminal="failed")
    write_journal(journal_dir, good, data=b"".join(_corrupt_lines(good)))
    states = list(run_states(store))
    assert [c.run_id for c in states] == list(reversed(ids))
    assert [c.status for c in states[1:]] == ["abandoned", "succeeded"]
    damaged = states[0]
    assert isinstance(damaged.damage, CorruptLineError) and damaged.damage.line == 2
    assert damaged.status == "damaged" and damaged.state.events == 1 and damaged.state.workflow is not None


def _corrupt_lines(stream: list) -> list[bytes]:
    lines = journal_lines(stream)
    lines[1] = lines[1].replace(b'"seq":1', b'"seq":7')
    return lines


# ---------------------------------------------------------------- read-only journals


def _as_nobody(root: Path, run_id: str) -> subprocess.CompletedProcess[str]:
    """Read ``run_id`` from a process that may read but not write the journal."""
    # After dropping root the interpreter's own files may be unreadable (pyenv under /root),
    # so the read path is exercised once first (writing nothing) to load its lazy imports.
    code = (
        "import json, os, sys\n"
        "from runjournal.journal.jsonl.store import JsonlStore\nfrom runjournal.projections.reconcile import current_state\n"
        "current_state(JsonlStore(sys.argv[1]), sys.argv[2], reconcile=False)\n"
        "if os.geteuid() == 0:\n    os.setgid(65534); os.setuid(65534)\n"
        "c = current_state(JsonlStore(sys.argv[1]), sys.argv[2])\n"
        "print(json.dumps({'status': c.status, 'reason': c.reason, 'action': c.action}))\n"
    )
    return subprocess.run([sys.executable, "-c", code, str(root), run_id], capture_output=True, text=True, timeout=60)


def test_read_only_journal_shows_the_derived_verdict_without_writing(dead_pid: tuple[int, int]) -> None:
    """A reader without write permission sees abandoned? with the reason, and the journal is unchanged."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "journal"
        store = JsonlStore(root)
        run = orphan(store, dead_identity(dead_pid))
        for d in (Path(tmp), root, store.runs_dir):
            d.chmod(0o755 if os.geteuid() == 0 else 0o555)
        store.path(run.run_id).chmod(0o644 if os.geteuid() == 0 else 0o444)
        before = snapshot(root)
        proc = _as_nobody(root, run.run_id)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == {"status": "abandoned?", "reason": "originating-process-not-alive", "action": "read-only"}
        assert snapshot(root) == before
        for d in (root, store.runs_dir):
            d.chmod(0o700)


# ---------------------------------------------------------------- the command


def _invoke(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--root", str(root), "reconcile", *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_reports_one_line_per_run_and_a_json_document(journal_dir: Path, dead_pid: tuple[int, int]) -> None:
    """``reconcile --dry-run`` prints would-abandon per orphan; ``--json`` prints one document with counts."""
    store = JsonlStore(journal_dir)
    dead = orphan(store, dead_identity(dead_pid))
    write_journal(journal_dir, make_stream(terminal="succeeded"))
    code, out, err = _invoke(journal_dir, "--dry-run")
    assert code == 0
    lines = sorted(out.splitlines(), reverse=True)  # the orphan's id is the newer one
    assert len(lines) == 2
    assert lines[0].startswith(f"{dead.run_id}  would-abandon  originating-process-not-alive: pid {dead_pid[0]}")
    assert lines[1].split() == [make_stream()[0].run_id, "terminal", "already", "succeeded"]
    assert "2 run(s): 1 terminal, 1 would-abandon" in err
    code, out, _ = _invoke(journal_dir, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["counts"] == {"abandoned": 1, "terminal": 1}
    row = next(r for r in doc["runs"] if r["run_id"] == dead.run_id)
    assert (row["action"], row["status"], row["reason"], row["liveness"]) == (
        "abandoned", "abandoned", "originating-process-not-alive", "dead")
    assert row["evidence"]["pid"] == dead_pid[0]
    assert json.loads(_invoke(journal_dir, "--json")[1])["counts"] == {"terminal": 2}


def test_cli_operator_needs_runs_and_a_reason(journal_dir: Path) -> None:
    """--operator without RUNs or without --reason, and --reason alone, are usage errors on one line."""
    store, run_id, _ = _remote_run(journal_dir)
    for args, needle in [(("--operator", "--reason", "x"), "name the RUNs"), (("--operator", run_id), "needs --reason"),
                         (("--reason", "x", run_id), "only used with --operator")]:
        code, out, err = _invoke(journal_dir, *args)
        assert (code, out) == (2, "")
        assert len(err.strip().splitlines()) == 1 and needle in err
    code, out, _ = _invoke(journal_dir, run_id[:10], "--operator", "--reason", "decommissioned")
    assert code == 0 and out.split()[:3] == [run_id, "abandoned", "operator:"]


def test_cli_unknown_run_and_corrupt_run(journal_dir: Path) -> None:
    """An unknown run id exits 2 with one line; a corrupt journal is reported as error and exits 3."""
    code, _, err = _invoke(journal_dir, "20990101")
    assert code == 2 and "no run matches" in err
    good = make_stream(terminal=None)
    write_journal(journal_dir, good, data=b"".join(_corrupt_lines(good)))
    code, out, _ = _invoke(journal_dir)
    assert code == 3 and out.split()[1] == "damaged" and ".jsonl:2 (byte " in out
