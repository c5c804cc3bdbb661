"""The workflow runner: runs a workflow's steps in order and journals every step and item.

Every command runs in its own session and process group (``start_new_session``), with
stdin from ``/dev/null`` and its output kept in the run's log directory (see
:mod:`cli.runfiles`). Children never inherit the journal's fd (it is close-on-exec and
``close_fds`` is on), so a child never holds the run's lock and never makes a dead run
look alive. Each command starts held at a gate (:func:`cli.engine.children.spawn_gated`);
its process group is handed to the run's step watchdog (:mod:`cli.engine.watchdog`), which
stops every group still running if this process dies, and recorded in the ``step-progress``
event that starts it; only then is it let run. So no step outlives its runner, and none runs
unrecorded.

A failing command fails its step; the items already in flight finish, no new ones start,
and the run is recorded ``failed``. A step ``timeout`` applies to each command the step
runs: on expiry its process group gets SIGTERM, then SIGKILL after a grace period.
SIGINT, SIGTERM and SIGHUP stop the children the same way (a second signal kills at once)
and the run is recorded ``cancelled``, naming who asked (from a cancel request written by
``runjournal cancel``, else the signal).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from runjournal.cli.engine.children import (
    EXIT_CANNOT_EXECUTE,
    EXIT_NOT_FOUND,
    STOP_GRACE,
    Child,
    Unit,
    exit_code_of,
    pump,
    release,
    spawn_gated,
)
from runjournal.cli.engine.runfiles import (
    WATCHDOG_OUTPUT,
    clear_cancel_request,
    ensure_log_dir,
    keep_full_values,
    open_unit_log,
    read_cancel_request,
)
from runjournal.cli.engine.skips import SKIP_PREFIX as _SKIP_PREFIX
from runjournal.cli.engine.skips import SkipPlan
from runjournal.cli.engine.watchdog import Watchdog
from runjournal.cli.engine.workflow import Step, Workflow
from runjournal.journal.errors import JournalError, WriterClosedError
from runjournal.journal.events import Event, FailReason, StepProcess
from runjournal.journal.processes import GroupRecord, group_record
from runjournal.journal.run import Run
from runjournal.journal.store import Store

ABORT_GRACE = 0.5
"""Seconds between SIGTERM and SIGKILL for the steps of a run whose journal refuses this writer:
others may soon record the run abandoned and start it again, so its steps must be gone by then."""

_SIGNAL_REASONS = {"SIGINT": "interrupted", "SIGTERM": "terminated", "SIGHUP": "terminal closed"}

EventSink = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class UnitResult:
    """How one command ended."""

    unit: Unit
    exit_code: int
    message: str | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """Whether the command succeeded."""
        return self.exit_code == 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the run ended; ``exit_code`` is the failing (or only) command's."""

    status: Literal["succeeded", "failed", "cancelled"]
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class _Stop:
    signame: str
    force: bool


@dataclass(frozen=True, slots=True)
class _Abort:
    """The journal refuses this writer for good (heartbeat thread): stop the steps and fail."""

    error: JournalError


class Runner:
    """Runs one workflow as one run. Create it, install :func:`stop_signals`, then :meth:`execute`."""

    def __init__(
        self,
        store: Store,
        workflow: Workflow,
        *,
        skip: SkipPlan | None = None,
        echo: bool = False,
        on_event: EventSink | None = None,
        inputs: dict[str, str] | None = None,
        grace: float = STOP_GRACE,
    ) -> None:
        self.store = store
        self.workflow = workflow
        self.skip = skip or SkipPlan()
        self.echo = echo
        self.on_event = on_event
        self.inputs = inputs or {}
        self.grace = grace
        self.stop_requested: str | None = None
        self._inbox: queue.SimpleQueue[UnitResult | _Stop | _Abort] = queue.SimpleQueue()
        self._abort: JournalError | None = None
        self._live: dict[Unit, Child] = {}
        self._run: Run | None = None
        self._watchdog: Watchdog | None = None

    def request_stop(self, signame: str) -> None:
        """Ask the run to stop (safe to call from a signal handler: it only sets a flag and queues)."""
        force = self.stop_requested is not None
        self.stop_requested = self.stop_requested or signame
        self._inbox.put(_Stop(signame, force))

    def execute(self, run: Run) -> Outcome:
        """Run every step, record the terminal event and return the outcome."""
        self._run = run
        self.log_dir = ensure_log_dir(self.store.side_files, run.run_id)
        keep_full_values(self.log_dir, run.started, self.inputs)
        for event in (run.started, *run.planned):
            self._notify(event)
        self._watchdog = _start_watchdog(self.log_dir)
        run.start_heartbeats(self.workflow.heartbeat_interval, on_failure=self._heartbeat_failed)
        try:
            for step in self.workflow.steps:
                if self.stop_requested:
                    break
                failure = self._run_step(step)
                if failure is not None and not self.stop_requested:
                    return self._failed(failure)
            if self.stop_requested:
                return self._cancelled()
            self._emit(run.succeed)
            return Outcome("succeeded", 0)
        finally:
            for child in self._live.values():
                child.signal(signal.SIGKILL)
            if self._watchdog is not None:
                self._watchdog.close()

    def _heartbeat_failed(self, error: JournalError) -> None:
        """Called from the heartbeat thread; the run's writer is refused for good: abort the run."""
        print(f"runjournal: warning: run {self.run.run_id}: heartbeat failed: {error}", file=sys.stderr, flush=True)
        if isinstance(error, WriterClosedError):
            self._inbox.put(_Abort(error))

    def _emit(self, append: Callable[..., Event], *args: Any, **fields: Any) -> Event:
        event = append(*args, **fields)
        self._notify(event)
        return event

    def _notify(self, event: Event) -> None:
        """Tell the progress display; a display that cannot write (a closed terminal) is dropped, the run goes on."""
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except (OSError, ValueError):
            self.on_event = None

    @property
    def run(self) -> Run:
        """The run being executed."""
        if self._run is None:
            raise RuntimeError("the runner has no run before execute()")
        return self._run

    def _run_step(self, step: Step) -> UnitResult | None:
        """Run one step (or record it skipped); return its failure, if it failed."""
        if step.foreach is None:
            origin = self.skip.steps.get(step.name)
            if origin is None:
                return self._run_single(step)
            self._emit(self.run.step_skipped, step.name, message=_SKIP_PREFIX + origin)
            return None
        done_before = self.skip.items.get(step.name, {})
        if step.foreach and all(item in done_before for item in step.foreach):
            self._skip_fanout(step, step.foreach, done_before)
            return None
        return self._run_fanout(step, step.foreach)

    def _skip_fanout(self, step: Step, items: tuple[str, ...], done_before: dict[str, str]) -> None:
        """Every item succeeded before (a changed item list is judged item by item, not by step name)."""
        total = len(items)
        origin = self.skip.steps.get(step.name) or done_before[items[0]]
        self._emit(self.run.step_skipped, step.name, message=_SKIP_PREFIX + origin, done=total, total=total)
        for done, item in enumerate(items, 1):
            self._emit(self.run.item_ended, step.name, item, "skipped", done=done, total=total,
                       message=_SKIP_PREFIX + done_before[item])

    def _run_single(self, step: Step) -> UnitResult | None:
        _, results = self._run_units(step, [Unit(step)], 0, None)
        if not results:  # stopped before its command started
            self._emit(self.run.step_started, step.name)
        result = results[0] if results else UnitResult(Unit(step), 130, "stopped: run cancelled")
        if result.ok:
            self._emit(self.run.step_succeeded, step.name, exit_code=0)
            return None
        self._emit(self.run.step_failed, step.name, exit_code=result.exit_code, message=result.message)
        return result

    def _run_fanout(self, step: Step, items: tuple[str, ...]) -> UnitResult | None:
        total = len(items)
        self._emit(self.run.step_started, step.name, total=total)
        done, todo = 0, []
        skipped = self.skip.items.get(step.name, {})
        for item in items:
            if item in skipped:
                done += 1
                self._emit(self.run.item_ended, step.name, item, "skipped", done=done, total=total,
                           message=_SKIP_PREFIX + skipped[item])
            else:
                todo.append(Unit(step, item))
        done, results = self._run_units(step, todo, done, total)
        failure = next((r for r in results if not r.ok), None)
        if failure is None and len(results) == len(todo):
            self._emit(self.run.step_succeeded, step.name, done=done, total=total)
            return None
        failure = failure or UnitResult(Unit(step), 130, "stopped: run cancelled")
        self._emit(self.run.step_failed, step.name, done=done, total=total,
                   exit_code=failure.exit_code, message=_step_failure_message(failure))
        return failure

    def _run_units(self, step: Step, units: list[Unit], done: int, total: int | None) -> tuple[int, list[UnitResult]]:
        """Run ``units`` at most ``step.concurrency`` at a time; stop starting new ones after a failure or stop."""
        pending, results, running = deque(units), [], 0
        while pending or running:
            while pending and running < step.concurrency and self._may_start() and all(r.ok for r in results):
                self._start(pending.popleft(), done, total)
                running += 1
            if running == 0:
                break
            message = self._inbox.get()
            if isinstance(message, _Abort):
                self._abort = self._abort or message.error
                self._stop_children(force=False, grace=ABORT_GRACE)
                continue
            if isinstance(message, _Stop):
                self._stop_children(message.force)
                continue
            if self._abort is not None:
                running -= 1
                self._live.pop(message.unit, None)
                continue  # the journal refuses us: nothing more can be recorded
            running -= 1
            self._live.pop(message.unit, None)
            results.append(message)
            if total is not None:
                done += 1
                self._record_item(message, done, total)
        if self._abort is not None:
            raise self._abort
        return done, results

    def _may_start(self) -> bool:
        return not self.stop_requested and self._abort is None

    def _record_item(self, result: UnitResult, done: int, total: int) -> None:
        state = "succeeded" if result.ok else "failed"
        self._emit(self.run.item_ended, result.unit.step.name, result.unit.item or "", state, done=done, total=total,
                   exit_code=result.exit_code, message=result.message)

    def _stop_children(self, force: bool, grace: float | None = None) -> None:
        for child in self._live.values():
            if force:
                child.signal(signal.SIGKILL)
            else:
                child.stop(self.grace if grace is None else grace)

    def _start(self, unit: Unit, done: int, total: int | None) -> None:
        """Start the unit's command at its gate, record it started with its process group, then let it run."""
        try:
            child, gate = self._spawn(unit)
        except OSError as exc:
            self._record_started(unit, done, total, None)
            code = EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_CANNOT_EXECUTE
            self._inbox.put(UnitResult(unit, code, f"cannot start {unit.step.command(unit.item)[0]!r}: {exc.strerror}"))
            return
        self._live[unit] = child
        threading.Thread(target=self._wait, args=(child,), name=f"wait-{child.popen.pid}", daemon=True).start()
        try:
            self._record_started(unit, done, total, child.record)
        except BaseException:
            os.close(gate)  # never recorded as started: it must not run
            raise
        release(gate)
        if unit.step.timeout is not None:
            child.after(unit.step.timeout, lambda: child.expire(self.grace))

    def _record_started(self, unit: Unit, done: int, total: int | None, record: GroupRecord | None) -> None:
        process = StepProcess(**record.to_data()) if record is not None else None
        if unit.item is not None and total is not None:
            self._emit(self.run.item_started, unit.step.name, unit.item, done=done, total=total, process=process)
        else:
            self._emit(self.run.step_started, unit.step.name, process=process)

    def _wait(self, child: Child) -> None:
        code, message = exit_code_of(child.wait())
        if child.timed_out:
            message = f"timed out after {child.unit.step.timeout:g}s ({message})"
        elif child.stopped and code != 0:
            message = f"stopped: run cancelled ({message})"
        self._inbox.put(UnitResult(child.unit, code, message, child.timed_out))

    def _spawn(self, unit: Unit) -> tuple[Child, int]:
        log_fd = open_unit_log(self.log_dir, unit.step.name, unit.item)
        out: int = subprocess.PIPE if self.echo else log_fd
        try:
            popen, gate = spawn_gated(unit.step.command(unit.item), env=self._env(unit), out=out)
        except BaseException:
            os.close(log_fd)
            raise
        record = group_record(popen.pid)
        watchdog = self._watchdog
        if watchdog is not None:
            watchdog.watch(record, popen.pid)
        pumps = []
        if popen.stdout is not None and popen.stderr is not None:
            pumps = [pump(popen.stdout, log_fd, sys.stdout), pump(popen.stderr, log_fd, sys.stderr)]
        child = Child(unit, popen, pumps, log_fd, None if watchdog is None else lambda: watchdog.release(popen.pid))
        child.record = record
        return child, gate

    def _env(self, unit: Unit) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("RUNJOURNAL_ITEM", None)
        env.update({"RUNJOURNAL_RUN_ID": self.run.run_id, "RUNJOURNAL_STEP": unit.step.name})
        if unit.item is not None:
            env["RUNJOURNAL_ITEM"] = unit.item
        env.update(input_variables(self.inputs))
        return env

    def _failed(self, failure: UnitResult) -> Outcome:
        reason = FailReason.TIMEOUT if failure.timed_out else FailReason.STEP_FAILED
        where = failure.unit.step.name
        message = _step_failure_message(failure)
        self._emit(self.run.fail, reason, step=where, exit_code=failure.exit_code, message=message)
        return Outcome("failed", failure.exit_code)

    def _cancelled(self) -> Outcome:
        signame = self.stop_requested or "SIGTERM"
        request = read_cancel_request(self.store.side_files, self.run.run_id)
        by, reason = request if request is not None else (f"signal:{signame}", _SIGNAL_REASONS.get(signame))
        self._emit(self.run.cancel, by, reason)
        clear_cancel_request(self.store.side_files, self.run.run_id)
        return Outcome("cancelled")


def input_variables(inputs: dict[str, str]) -> dict[str, str]:
    """The environment a step sees for the run's inputs: ``RUNJOURNAL_INPUT_<KEY>`` with KEY upper-cased
    (``--input version=1`` gives ``$RUNJOURNAL_INPUT_VERSION``), and, if different, with KEY as given."""
    env: dict[str, str] = {}
    for key, value in inputs.items():
        env[f"RUNJOURNAL_INPUT_{key}"] = value
    for key, value in inputs.items():
        env[f"RUNJOURNAL_INPUT_{key.upper()}"] = value
    return env


def _start_watchdog(log_dir: Path) -> Watchdog | None:
    """The run's step watchdog; without one (it could not start) the run goes on, with a warning."""
    try:
        return Watchdog.start(log_dir / WATCHDOG_OUTPUT)
    except OSError as exc:
        print(f"runjournal: warning: cannot start the step watchdog ({exc.strerror or exc}); "
              "steps would outlive this process if it died", file=sys.stderr)
        return None


def _step_failure_message(failure: UnitResult) -> str | None:
    if failure.unit.item is None:
        return failure.message
    return f"item {failure.unit.item!r}: {failure.message}"


@contextlib.contextmanager
def stop_signals(runner: Runner, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """While inside, these signals ask ``runner`` to stop instead of killing this process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        runner.request_stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
