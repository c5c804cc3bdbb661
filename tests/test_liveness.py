"""Liveness: the facts observed about a writer and the pure verdict drawn from them (docs/liveness.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runjournal.journal.events import AbandonReason, WriterIdentity
from runjournal.journal.identity import writer_identity
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.liveness import HostFacts, ServerFacts
from runjournal.journal.procfacts import ProcessInfo, boot_id, host_name, process_info
from runjournal.journal.run import start_run
from runjournal.journal.testing import BASE_TIME, make_heartbeat, make_identity, make_started
from runjournal.projections.fold import fold
from runjournal.projections.liveness import DEFAULT_LEASE_INTERVALS, judge
from runjournal.projections.state import RunState

HERE = "host-a"
BOOT = "boot-1"
PID = 4242
TICKS = 1000


NS = 4026531836
OTHER_NS = 4026532177


def _state(identity: WriterIdentity | None = None, *, interval: float = 30.0, last_at: datetime | None = None) -> RunState:
    identity = identity or make_identity(host=HERE, boot_id=BOOT, pid=PID, start_ticks=TICKS, pid_ns=NS)
    started = make_started(writer=identity, heartbeat_interval=interval)
    stream = [started] if last_at is None else [started, make_heartbeat(1, ts=last_at)]
    return fold(stream)


def _facts(*, same_host: bool = True, boot: str | None = BOOT, process: ProcessInfo | None = None,
           lock: bool | None = False, ns: int | None = NS) -> HostFacts:
    return HostFacts(host_now=HERE if same_host else "host-b", same_host=same_host,
                     boot_id_now=boot if same_host else None, process=process, lock_held=lock, pid_ns_now=ns)


NOW = BASE_TIME + timedelta(hours=1)
LAST = BASE_TIME + timedelta(minutes=5)
"""The last event of the runs the lease rows judge (heartbeat interval 30 s, lease 90 s)."""


# ---------------------------------------------------------------- the decision table (pure)


def _proc(ticks: int = TICKS, state: str = "running", ns: int | None = NS) -> ProcessInfo:
    return ProcessInfo(PID, ticks, state, ns)  # type: ignore[arg-type]


ALIVE, STOPPED = _proc(), _proc(state="stopped")
Row = tuple[dict, float, tuple[str, AbandonReason | None]]
DECISION_TABLE: dict[str, list[Row]] = {
    # row of docs/liveness.md -> cases: (facts, seconds since the last event, (liveness, reason))
    "1": [({"process": ALIVE}, 5, ("alive", None)), ({"process": ALIVE, "lock": True}, 9999, ("alive", None)),
          ({"process": _proc(state="other")}, 5, ("alive", None)), ({"process": _proc(ns=None)}, 5, ("alive", None))],
    "2": [({"process": STOPPED, "lock": True}, 9999, ("alive", None)), ({"process": STOPPED}, 5, ("alive", None))],
    "3": [({"lock": True}, 9999, ("unknown", None)), ({"process": _proc(state="zombie"), "lock": True}, 5, ("unknown", None)),
          ({"process": _proc(7), "lock": True}, 5, ("unknown", None)),
          ({"boot": "boot-2", "lock": True}, 9999, ("unknown", None)),
          ({"ns": OTHER_NS, "lock": True}, 9999, ("unknown", None)),
          ({"same_host": False, "lock": True}, 9999, ("unknown", None))],
    "4": [({}, 5, ("dead", AbandonReason.ORIGINATING_PROCESS_NOT_ALIVE)),
          ({"lock": None}, 5, ("dead", AbandonReason.ORIGINATING_PROCESS_NOT_ALIVE))],
    "5": [({"process": _proc(state="zombie")}, 5, ("dead", AbandonReason.ORIGINATING_PROCESS_NOT_ALIVE))],
    "6": [({"process": _proc(TICKS + 1)}, 5, ("dead", AbandonReason.ORIGINATING_PROCESS_NOT_ALIVE)),
          ({"process": _proc(TICKS + 1, "stopped"), "lock": None}, 5, ("dead", AbandonReason.ORIGINATING_PROCESS_NOT_ALIVE)),
          ({"process": _proc(ns=OTHER_NS)}, 5, ("dead", AbandonReason.ORIGINATING_PROCESS_NOT_ALIVE))],
    "7": [({"boot": "boot-2"}, 5, ("dead", AbandonReason.HOST_REBOOTED))],
    "8": [({"boot": "boot-2", "lock": None}, 9999, ("unknown", None))],
    "9": [({"ns": OTHER_NS}, 91, ("dead", AbandonReason.HEARTBEAT_EXPIRED)),
          ({"ns": OTHER_NS, "lock": None}, 91, ("dead", AbandonReason.HEARTBEAT_EXPIRED))],
    "10": [({"ns": OTHER_NS}, 90, ("unknown", None)), ({"ns": OTHER_NS, "process": ALIVE}, 5, ("unknown", None))],
    "11": [({"same_host": False}, 91, ("dead", AbandonReason.HEARTBEAT_EXPIRED)),
           ({"same_host": False, "lock": None}, 301, ("dead", AbandonReason.HEARTBEAT_EXPIRED))],
    "12": [({"same_host": False}, 90, ("unknown", None)), ({"same_host": False}, -600, ("unknown", None))],
}


@pytest.mark.parametrize(
    ("facts", "silence", "expected"),
    [pytest.param(*case, id=f"row-{row}-{n}") for row, cases in DECISION_TABLE.items() for n, case in enumerate(cases)],
)
def test_decision_table(facts: dict, silence: float, expected: tuple[str, AbandonReason | None]) -> None:
    """Each row of docs/liveness.md's decision table gives its verdict and reason."""
    verdict = judge(_state(last_at=LAST), _facts(**facts), LAST + timedelta(seconds=silence))
    assert (verdict.liveness, verdict.reason) == expected, verdict.evidence


SERVER_LAST = BASE_TIME + timedelta(minutes=5)
SERVER_TABLE: dict[str, list[tuple[bool | None, float, tuple[str, AbandonReason | None]]]] = {
    # row of docs/liveness.md -> cases: (lock held, seconds of silence on the server's clock, (liveness, reason))
    "S1": [(False, 91, ("dead", AbandonReason.WRITER_SESSION_ENDED))],
    "S2": [(False, 90, ("unknown", None)), (False, 1, ("unknown", None))],
    "S3": [(True, 5, ("alive", None)), (True, 90, ("alive", None))],
    "S4": [(True, 91, ("unknown", None)), (True, 99999, ("unknown", None))],
    "S5": [(None, 99999, ("unknown", None))],
}


@pytest.mark.parametrize(
    ("lock", "silence", "expected"),
    [pytest.param(*case, id=f"row-{row}-{n}") for row, cases in SERVER_TABLE.items() for n, case in enumerate(cases)],
)
def test_server_decision_table(lock: bool | None, silence: float, expected: tuple[str, AbandonReason | None]) -> None:
    """Each row of the database table: dead only with the lock free and silence past the lease, on the server's clock."""
    facts = ServerFacts(host_now=HERE, same_host=True, lock_held=lock, server_now=SERVER_LAST + timedelta(seconds=silence),
                        last_received_at=SERVER_LAST)
    verdict = judge(_state(last_at=SERVER_LAST), facts, BASE_TIME)  # the reader's own clock plays no part
    assert (verdict.liveness, verdict.reason) == expected, verdict.evidence


def test_every_row_of_the_documented_tables_has_a_test() -> None:
    """The decision tables in docs/liveness.md and DECISION_TABLE / SERVER_TABLE name the same rows (row 0 below)."""
    doc = (Path(__file__).parent.parent / "docs" / "liveness.md").read_text()
    rows = set()
    for title in ("## Decision table", "## The PostgreSQL store"):
        table = doc.split(title)[1].split("\n## ")[0]
        rows |= {line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")}
    documented = {r for r in rows if r[:1].isdigit() or r[:1] == "S" and r[1:].isdigit()}
    assert documented == set(DECISION_TABLE) | set(SERVER_TABLE) | {"0"}


def test_a_held_lock_beats_a_different_boot_id() -> None:
    """Another machine with this host name, alive over a shared directory: a held lock is never a reboot."""
    verdict = judge(_state(), _facts(boot="boot-2", lock=True), NOW)
    assert (verdict.liveness, verdict.reason) == ("unknown", None)
    assert "another machine with this host name" in verdict.explain()


def test_boot_ids_are_compared_normalised() -> None:
    """A foreign writer's boot id with a trailing newline or upper case is the same boot."""
    identity = make_identity(host=HERE, boot_id=" " + BOOT.upper() + "\n", pid=PID, start_ticks=TICKS, pid_ns=NS)
    assert judge(_state(identity), _facts(process=ALIVE), NOW).liveness == "alive"
    dead = judge(_state(identity), _facts(), NOW)
    assert dead.reason is AbandonReason.ORIGINATING_PROCESS_NOT_ALIVE


def test_same_host_evidence_records_what_was_checked_and_seen() -> None:
    """The evidence of a reused pid names every check and both start times."""
    verdict = judge(_state(), _facts(process=_proc(5555), lock=False), NOW)
    assert verdict.evidence == {
        "checked": ["host", "boot_id", "pid_ns", "pid", "start_ticks", "lock"],
        "host": HERE,
        "host_now": HERE,
        "boot_id_recorded": BOOT,
        "boot_id_now": BOOT,
        "pid_ns_recorded": NS,
        "pid_ns_now": NS,
        "pid": PID,
        "start_ticks_recorded": TICKS,
        "start_ticks_now": 5555,
        "pid_state": "reused",
        "lock": "free",
    }
    assert "another process" in verdict.explain()


def test_reboot_evidence_does_not_claim_a_pid_check() -> None:
    """After a reboot the pid is meaningless, so it is neither checked nor recorded."""
    verdict = judge(_state(), _facts(boot="boot-2"), NOW)
    assert verdict.evidence["checked"] == ["host", "boot_id", "lock"]
    assert "pid" not in verdict.evidence
    assert "rebooted" in verdict.explain()


def test_another_pid_namespace_is_judged_by_lock_and_lease_never_by_pid() -> None:
    """A writer in another pid namespace: its recorded pid is not looked at, whatever lives at that number here."""
    verdict = judge(_state(last_at=LAST), _facts(ns=OTHER_NS, process=_proc(ns=OTHER_NS)), LAST + timedelta(seconds=5))
    assert verdict.liveness == "unknown" and "pid" not in verdict.evidence
    assert "another pid namespace" in verdict.explain()


OTHER = make_identity(host="host-b", boot_id="other-boot", pid=PID, start_ticks=TICKS)


@pytest.mark.parametrize(
    ("silence", "lease", "lock", "liveness"),
    [
        (timedelta(seconds=91), DEFAULT_LEASE_INTERVALS, False, "dead"),
        (timedelta(seconds=90), DEFAULT_LEASE_INTERVALS, False, "unknown"),
        (timedelta(seconds=10), DEFAULT_LEASE_INTERVALS, False, "unknown"),
        (timedelta(seconds=-600), DEFAULT_LEASE_INTERVALS, False, "unknown"),
        (timedelta(hours=5), DEFAULT_LEASE_INTERVALS, True, "unknown"),
        (timedelta(seconds=200), 10, False, "unknown"),
        (timedelta(seconds=301), 10, None, "dead"),
    ],
)
def test_other_host_lease(silence: timedelta, lease: float, lock: bool | None, liveness: str) -> None:
    """Across hosts the run is dead only after lease x heartbeat interval (30 s here) of silence on the reader's clock."""
    last = BASE_TIME + timedelta(minutes=5)
    state = _state(OTHER, interval=30.0, last_at=last)
    verdict = judge(state, _facts(same_host=False, lock=lock), last + silence, lease_intervals=lease)
    assert verdict.liveness == liveness
    assert verdict.reason == (AbandonReason.HEARTBEAT_EXPIRED if liveness == "dead" else None)
    assert verdict.evidence["age_seconds"] == silence.total_seconds()
    assert verdict.evidence["lease_seconds"] == lease * 30.0
    assert verdict.evidence["last_event_at"] == "2026-01-01T00:05:00Z"


def test_other_host_verdict_ignores_pid_facts() -> None:
    """A pid on this host means nothing for a writer on another host, even if a process with it lives here."""
    state = _state(OTHER, last_at=BASE_TIME)
    facts = HostFacts(host_now=HERE, same_host=False, boot_id_now=None, process=None, lock_held=False)
    assert judge(state, facts, BASE_TIME + timedelta(seconds=5)).liveness == "unknown"
    assert "pid" not in judge(state, facts, BASE_TIME).evidence


def test_a_run_without_started_has_no_writer_to_judge() -> None:
    """Row 0: with no ``started`` event the verdict is unknown and nothing is claimed."""
    verdict = judge(RunState(), _facts(), NOW)
    assert (verdict.liveness, verdict.reason) == ("unknown", None)


process_infos = st.none() | st.builds(
    ProcessInfo, st.just(PID), st.sampled_from([TICKS, TICKS + 1]),
    st.sampled_from(["running", "zombie", "stopped", "other"]), st.sampled_from([NS, OTHER_NS, None]),
)


@given(
    same_host=st.booleans(),
    boot=st.sampled_from([BOOT, "boot-2"]),
    process=process_infos,
    lock=st.sampled_from([True, False, None]),
    ns=st.sampled_from([NS, OTHER_NS, None]),
    silence=st.integers(-10**6, 10**6),
    lease=st.floats(0.5, 20),
)
def test_verdict_invariants(same_host: bool, boot: str, process: ProcessInfo | None, lock: bool | None,
                            ns: int | None, silence: int, lease: float) -> None:
    """Reason iff dead; a held lock is never dead; a same-host, same-namespace process with the recorded ticks is alive."""
    identity = make_identity(host=HERE if same_host else "host-b", boot_id=BOOT, pid=PID, start_ticks=TICKS, pid_ns=NS)
    state = _state(identity, last_at=BASE_TIME)
    facts = _facts(same_host=same_host, boot=boot, process=process, lock=lock, ns=ns)
    verdict = judge(state, facts, BASE_TIME + timedelta(seconds=silence), lease)
    assert (verdict.reason is not None) == verdict.dead
    assert verdict.evidence["checked"][0] == "host"
    if lock:
        assert not verdict.dead
    same_process = process and process.start_ticks == TICKS and process.state != "zombie" and process.pid_ns != OTHER_NS
    if same_host and boot == BOOT and ns != OTHER_NS and same_process:
        assert verdict.liveness == "alive"
    if not same_host or ns == OTHER_NS:
        assert verdict.liveness != "alive"
    assert judge(state, facts, BASE_TIME + timedelta(seconds=silence), lease) == verdict  # pure: same inputs, same verdict


# ---------------------------------------------------------------- the facts (real processes)


def _wait_for_state(pid: int, wanted: str, deadline_s: float = 10.0) -> ProcessInfo:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        info = process_info(pid)
        if info is not None and info.state == wanted:
            return info
        time.sleep(0.005)
    raise AssertionError(f"pid {pid} never reached state {wanted!r}")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live child process (killed and reaped afterwards)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield child
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()


def _observe(root: Path, identity: WriterIdentity, *, keep_open: bool = False) -> HostFacts:
    """Create a run recorded with ``identity``, close its writer unless ``keep_open``, and observe it."""
    store = JsonlStore(root)
    run = start_run("wf", ["a"], store=store, identity=identity, durability="none")
    try:
        if not keep_open:
            run.writer.close()
        return store.writer_facts(run.run_id, identity)
    finally:
        run.writer.close()


def test_own_process_is_observed_alive_with_its_lock_held(journal_dir: Path) -> None:
    """This process, recorded as the writer and holding the run's lock, is seen running with the same start ticks."""
    identity = writer_identity()
    facts = _observe(journal_dir, identity, keep_open=True)
    assert facts.same_host and facts.boot_id_now == boot_id() == identity.boot_id
    assert facts.process is not None and facts.process.start_ticks == identity.start_ticks
    assert facts.lock_held is True
    assert judge(_state(identity), facts, NOW).liveness == "alive"


def test_closed_writer_releases_the_lock(journal_dir: Path) -> None:
    """Once the writer's fd is closed the lock probe finds the lock free."""
    assert _observe(journal_dir, writer_identity()).lock_held is False


def test_reaped_child_is_observed_gone(journal_dir: Path) -> None:
    """The pid of an exited and reaped child is gone (or, rarely, reused): either way the writer is dead."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    ticks = _wait_ticks(child.pid)
    child.wait()
    identity = writer_identity().model_copy(update={"pid": child.pid, "start_ticks": ticks})
    facts = _observe(journal_dir, identity)
    verdict = judge(_state(identity), facts, NOW)
    assert verdict.reason is AbandonReason.ORIGINATING_PROCESS_NOT_ALIVE
    assert verdict.evidence["pid_state"] in ("gone", "reused")


def _wait_ticks(pid: int) -> int:
    info = process_info(pid)
    assert info is not None
    return info.start_ticks


def test_unreaped_child_is_observed_as_a_zombie(journal_dir: Path) -> None:
    """An exited child nobody has waited for is a zombie, and a zombie writer is dead."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        ticks = _wait_ticks(child.pid)
        _wait_for_state(child.pid, "zombie")
        identity = writer_identity().model_copy(update={"pid": child.pid, "start_ticks": ticks})
        verdict = judge(_state(identity), _observe(journal_dir, identity), NOW)
        assert (verdict.liveness, verdict.evidence["pid_state"]) == ("dead", "zombie")
    finally:
        child.wait()


def test_stopped_process_is_alive(journal_dir: Path, sleeper: subprocess.Popen[bytes]) -> None:
    """A SIGSTOPped writer is stopped, not dead."""
    ticks = _wait_ticks(sleeper.pid)
    os.kill(sleeper.pid, signal.SIGSTOP)
    _wait_for_state(sleeper.pid, "stopped")
    identity = writer_identity().model_copy(update={"pid": sleeper.pid, "start_ticks": ticks})
    verdict = judge(_state(identity), _observe(journal_dir, identity), NOW)
    assert (verdict.liveness, verdict.evidence["pid_state"]) == ("alive", "stopped")


def test_live_pid_with_other_start_ticks_is_reused(journal_dir: Path, sleeper: subprocess.Popen[bytes]) -> None:
    """A live process whose start ticks differ from the recorded ones is not the writer."""
    ticks = _wait_ticks(sleeper.pid)
    identity = writer_identity().model_copy(update={"pid": sleeper.pid, "start_ticks": ticks - 1})
    facts = _observe(journal_dir, identity)
    assert facts.process is not None and facts.process.start_ticks == ticks
    verdict = judge(_state(identity), facts, NOW)
    assert (verdict.liveness, verdict.evidence["pid_state"]) == ("dead", "reused")
    assert verdict.evidence["start_ticks_now"] == ticks


def test_other_boot_id_is_not_looked_up_as_a_pid(journal_dir: Path) -> None:
    """With a different boot id recorded, the pid (here our own) is not even looked at."""
    identity = writer_identity().model_copy(update={"boot_id": "not-this-boot"})
    facts = _observe(journal_dir, identity)
    assert facts.process is None and facts.boot_id_now == boot_id()
    assert judge(_state(identity), facts, NOW).reason is AbandonReason.HOST_REBOOTED


def test_other_host_gets_no_pid_or_boot_facts(journal_dir: Path) -> None:
    """For a writer on another host only the lock can be probed; no pid or boot id is observed."""
    identity = writer_identity().model_copy(update={"host": host_name() + "-elsewhere"})
    facts = _observe(journal_dir, identity)
    assert (facts.same_host, facts.boot_id_now, facts.process, facts.lock_held) == (False, None, None, False)

