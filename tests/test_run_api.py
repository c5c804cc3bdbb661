"""The producer API: ``start_run`` as a context manager ends the run according to how the body ended."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from runjournal.journal.errors import WriterClosedError
from runjournal.journal.events import Event, FailReason, PlannedStep
from runjournal.journal.jsonl.reader import JsonlRunReader
from runjournal.journal.run import start_run
from runjournal.journal.testing import make_identity


def events_of(path: Path, run_id: str) -> list[Event]:
    """Every event of a finished run, read strictly."""
    return list(JsonlRunReader(path, run_id).events())


def test_a_body_that_returns_writes_succeeded(journal_dir: Path) -> None:
    """Normal exit: started, the body's progress, then succeeded."""
    with start_run("deploy", ["build"], root=journal_dir, durability="none") as run:
        run.step_started("build")
        run.step_succeeded("build", exit_code=0)
    types = [e.type for e in events_of(Path(run.location), run.run_id)]
    assert types == ["started", "step-progress", "step-progress", "succeeded"]


def test_an_exception_writes_failed_and_propagates(journal_dir: Path) -> None:
    """An exception in the body records ``failed`` (reason exception, with the message) and is re-raised."""
    with pytest.raises(RuntimeError, match="disk on fire"), \
            start_run("deploy", root=journal_dir, durability="none") as run:
        raise RuntimeError("disk on fire")
    last = events_of(Path(run.location), run.run_id)[-1]
    assert last.type == "failed"
    assert last.reason is FailReason.EXCEPTION
    assert last.message == "RuntimeError: disk on fire"


def test_keyboard_interrupt_writes_cancelled(journal_dir: Path) -> None:
    """Ctrl-C in the body records ``cancelled`` by SIGINT, and the interrupt still propagates."""
    with pytest.raises(KeyboardInterrupt), start_run("deploy", root=journal_dir, durability="none") as run:
        raise KeyboardInterrupt
    last = events_of(Path(run.location), run.run_id)[-1]
    assert (last.type, last.by) == ("cancelled", "signal:SIGINT")


def test_a_body_that_ended_the_run_is_not_ended_twice(journal_dir: Path) -> None:
    """If the body wrote its own terminal, exit adds nothing; later appends are refused."""
    with start_run("deploy", root=journal_dir, durability="none") as run:
        run.fail(FailReason.TIMEOUT, step="build", exit_code=124)
        with pytest.raises(WriterClosedError, match="already ended"):
            run.heartbeat()
    events = events_of(Path(run.location), run.run_id)
    assert [e.type for e in events] == ["started", "failed"]
    assert events[-1].reason is FailReason.TIMEOUT


def test_an_explicit_identity_and_plan_are_recorded(journal_dir: Path) -> None:
    """Importers and tests can set the writer identity, run id, inputs and fan-out plan."""
    identity = make_identity(host="importer", pid=7)
    plan = ["build", PlannedStep(name="ship", items=["eu", "us"])]
    with start_run("deploy", plan, root=journal_dir, identity=identity, run_id="imported-1",
                   inputs={"env": "prod"}, heartbeat_interval=5.0, durability="none") as run:
        run.item_started("ship", "eu", done=0, total=2)
        run.item_ended("ship", "eu", "succeeded", done=1, total=2, exit_code=0)
    started = events_of(journal_dir / "runs" / "imported-1.jsonl", "imported-1")[0]
    assert started.writer == identity
    assert [s.name for s in started.steps] == ["build", "ship"] and started.steps[1].items == ["eu", "us"]
    assert (started.inputs, started.heartbeat_interval, run.run_id) == ({"env": "prod"}, 5.0, "imported-1")


def test_the_default_identity_describes_this_process(journal_dir: Path) -> None:
    """Without an explicit identity the writer records its own pid and a start time in ticks."""
    with start_run("deploy", root=journal_dir, durability="none") as run:
        pass
    writer = events_of(Path(run.location), run.run_id)[0].writer
    assert writer.pid == os.getpid() and writer.start_ticks > 0


def test_heartbeats_run_in_the_background_until_the_run_ends(journal_dir: Path) -> None:
    """start_heartbeats appends heartbeats from a thread; none follow the terminal."""
    with start_run("deploy", root=journal_dir, durability="none", heartbeat_interval=0.01) as run:
        run.start_heartbeats()
        deadline = time.monotonic() + 10
        while run.writer.next_seq < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
    types = [e.type for e in events_of(Path(run.location), run.run_id)]
    assert types.count("heartbeat") >= 2
    assert types[-1] == "succeeded"


def test_a_failed_heartbeat_is_reported_not_swallowed(journal_dir: Path) -> None:
    """A heartbeat the writer refuses is kept on the run and handed to the failure callback."""
    failures: list[Exception] = []
    run = start_run("deploy", root=journal_dir, durability="none", heartbeat_interval=0.01)
    run.writer.close()  # the writer refuses every append from now on
    run.start_heartbeats(on_failure=failures.append)
    deadline = time.monotonic() + 10
    while not failures and time.monotonic() < deadline:
        time.sleep(0.005)
    assert run.heartbeat_failure is failures[0]
    assert "the writer is closed" in str(failures[0])
    run.close()


def test_a_failed_heartbeat_warns_on_stderr_by_default(journal_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Without a callback the failure is one warning line on stderr naming the run."""
    run = start_run("deploy", root=journal_dir, durability="none", heartbeat_interval=0.01)
    run.writer.close()
    run.start_heartbeats()
    deadline = time.monotonic() + 10
    while run.heartbeat_failure is None and time.monotonic() < deadline:
        time.sleep(0.005)
    run.close()
    assert f"runjournal: warning: run {run.run_id}: heartbeat failed: " in capfd.readouterr().err
