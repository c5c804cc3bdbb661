"""Helpers shared by the workflow-runner tests: write workflows, read runs, poll with a deadline."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from runjournal.journal.events import Event, WriterIdentity
from runjournal.journal.identity import writer_identity
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.procfacts import process_info
from runjournal.journal.run import Run, start_run
from runjournal.projections.fold import fold
from runjournal.projections.state import RunState

T = TypeVar("T")

CONSOLE_SCRIPT = Path(sys.executable).with_name("runjournal")
"""The installed ``runjournal`` console script of the interpreter running the tests."""


def cli_argv(root: Path, *args: str) -> list[str]:
    """argv for running the real CLI in a subprocess."""
    if CONSOLE_SCRIPT.exists():
        return [str(CONSOLE_SCRIPT), "--root", str(root), *args]
    return [sys.executable, "-m", "runjournal", "--root", str(root), *args]


def wait_for(condition: Callable[[], T | None], what: str, timeout: float = 15.0, every: float = 0.02) -> T:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def write_workflow(directory: Path, text: str, name: str = "wf.toml") -> Path:
    """Write a (dedented) workflow file and return its path."""
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def events_of(store: JsonlStore, run_id: str) -> list[Event]:
    """Every event of a run, read from its journal."""
    return list(store.read(run_id).events())


def state_of(store: JsonlStore, run_id: str) -> RunState:
    """The folded state of a run (no reconciliation)."""
    return fold(store.read(run_id).events())


def only_run(store: JsonlStore) -> str:
    """The id of the one run in ``store``."""
    ids = sorted(store.run_ids())
    assert len(ids) == 1, ids
    return ids[0]


def terminal_state(store: JsonlStore, run_id: str, timeout: float = 15.0) -> RunState:
    """Poll a run's journal until it has a terminal event; return the state."""
    return wait_for(lambda: (s := state_of(store, run_id)).is_terminal and s, f"run {run_id} to end", timeout)


def process_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (gone, or a zombie waiting to be reaped)."""
    info = process_info(pid)
    return info is None or info.state == "zombie"


def read_pids(directory: Path) -> list[int]:
    """The pids written by steps (one per ``*.pid`` file)."""
    return [int(p.read_text().split()[0]) for p in sorted(directory.glob("*.pid")) if p.read_text().strip()]


def gone_identity() -> WriterIdentity:
    """A writer identity on this host and boot whose process is gone (our pid, another start time)."""
    me = writer_identity()
    return me.model_copy(update={"start_ticks": me.start_ticks + 1})


def orphan_run(store: JsonlStore, workflow: str, steps: int = 1) -> Run:
    """A run whose writer vanished after starting ``steps`` steps, without a terminal event."""
    run = start_run(workflow, [f"s{i}" for i in range(3)], store=store, identity=gone_identity(), durability="none")
    for i in range(steps):
        run.step_started(f"s{i}")
    run.writer.close()
    return run


def kill_group_quietly(pid: int) -> None:
    """SIGKILL a process group left over by a test, if it still exists."""
    try:
        os.killpg(pid, 9)
    except (ProcessLookupError, PermissionError):
        pass


def append_bytes(path: Path, data: bytes) -> None:
    """Append to a journal as a writer would (O_APPEND, one write)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def last_hash(events: list[Event]) -> str:
    """The ``h`` of the last line ``events`` encode to (what the next line chains from)."""
    import orjson

    from runjournal.journal.testing import journal_lines

    return str(orjson.loads(journal_lines(events)[-1])["h"])
