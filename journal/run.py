"""The Python API for producers: start a run, report progress, heartbeat, end it.

::

    from runjournal.journal.run import start_run

    with start_run("deploy", steps=["build", "ship"], root=".runjournal") as run:
        run.step_started("build")
        ...
        run.step_succeeded("build")
    # succeeded on normal exit, failed on an exception, cancelled on Ctrl-C

The context manager writes ``started`` on entry; on exit it writes ``succeeded`` (normal
exit), ``cancelled`` (KeyboardInterrupt) or ``failed`` (any other exception), unless the
body already ended the run.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from runjournal.journal.errors import JournalError, WriterClosedError
from runjournal.journal.events import (
    Cancelled,
    Event,
    Failed,
    FailReason,
    Heartbeat,
    ItemsPlanned,
    PlannedStep,
    Started,
    StepProcess,
    StepProgress,
    StepState,
    Succeeded,
    WriterIdentity,
)
from runjournal.journal.identity import writer_identity
from runjournal.journal.ids import new_run_id
from runjournal.journal.limits import MAX_HEARTBEAT_INTERVAL, check_seconds, clip_text
from runjournal.journal.plan import PlanSplit, check_names, clip_inputs, split_plan
from runjournal.journal.status import TERMINAL_TYPES
from runjournal.journal.store import Clock, Durability, RunWriter, Store, utc_now
from runjournal.journal.stores import open_store

DEFAULT_HEARTBEAT_INTERVAL = 30.0
"""Seconds between heartbeats when the producer does not say."""


class Run:
    """A run this process writes. Every method appends one event and returns it."""

    def __init__(self, writer: RunWriter, started: Started, planned: list[ItemsPlanned] | None = None) -> None:
        self.writer = writer
        self.started = started
        self.planned: list[ItemsPlanned] = planned or []
        """The ``items-planned`` events written right after ``started`` (a plan too long for one line)."""
        self.ended_with: str | None = None
        self._append_lock = threading.Lock()
        self._stop_beats = threading.Event()
        self._beats: threading.Thread | None = None
        self.heartbeat_failure: JournalError | None = None
        """The last heartbeat that could not be written (None once one succeeds again)."""
        self._on_beat_failure: Callable[[JournalError], None] = self._warn

    @property
    def run_id(self) -> str:
        """This run's id."""
        return self.writer.run_id

    @property
    def location(self) -> str:
        """Where this run is: its journal file, or ``URL#run_id`` in a database."""
        return self.writer.location

    def progress(self, step: str, state: StepState, **fields: Any) -> Event:
        """Append a ``step-progress`` event (the general form of the helpers below); a long message is clipped."""
        if fields.get("message") is not None:
            fields["message"] = clip_text(fields["message"])
        return self._append(StepProgress, step=step, state=state, **fields)

    def step_started(
        self, step: str, *, total: int | None = None, message: str | None = None, process: StepProcess | None = None
    ) -> Event:
        """A step began (``total`` items for a fan-out step; ``process``: the group its command runs in)."""
        done = 0 if total is not None else None
        return self.progress(step, "started", done=done, total=total, message=message, process=process)

    def step_succeeded(self, step: str, **fields: Any) -> Event:
        """A step ended successfully."""
        return self.progress(step, "succeeded", **fields)

    def step_failed(self, step: str, **fields: Any) -> Event:
        """A step ended in failure."""
        return self.progress(step, "failed", **fields)

    def step_skipped(self, step: str, *, message: str | None = None, **fields: Any) -> Event:
        """A step was not run (``message`` says why)."""
        return self.progress(step, "skipped", message=message, **fields)

    def item_started(self, step: str, item: str, *, done: int, total: int, process: StepProcess | None = None) -> Event:
        """One item of a fan-out step began (``process``: the group its command runs in)."""
        return self.progress(step, "started", item=item, item_state="started", done=done, total=total,
                             process=process)

    def item_ended(self, step: str, item: str, item_state: StepState, *, done: int, total: int, **fields: Any) -> Event:
        """One item of a fan-out step ended (``done`` counts ended items, this one included)."""
        return self.progress(step, "started", item=item, item_state=item_state, done=done, total=total, **fields)

    def heartbeat(self) -> Event:
        """Say the writer is still alive."""
        return self._append(Heartbeat)

    def succeed(self, message: str | None = None) -> Event:
        """End the run as succeeded."""
        return self._append(Succeeded, message=_clipped(message))

    def fail(
        self,
        reason: FailReason = FailReason.STEP_FAILED,
        *,
        step: str | None = None,
        exit_code: int | None = None,
        message: str | None = None,
    ) -> Event:
        """End the run as failed."""
        return self._append(Failed, reason=reason, step=step, exit_code=exit_code, message=_clipped(message))

    def cancel(self, by: str, reason: str | None = None) -> Event:
        """End the run as cancelled (``by`` says who asked)."""
        return self._append(Cancelled, by=clip_text(by), reason=_clipped(reason))

    def _append(self, event_cls: type[Any], **fields: Any) -> Event:
        # One lock around the check and the append: a heartbeat racing the terminal event
        # either lands before it or is refused, never after it.
        with self._append_lock:
            if self.ended_with is not None:
                raise WriterClosedError(f"run {self.run_id} already ended ({self.ended_with})")
            event = self.writer.append(event_cls, **fields)
            if event.type in TERMINAL_TYPES:
                self.ended_with = event.type
            return event

    def start_heartbeats(
        self, interval: float | None = None, *, on_failure: Callable[[JournalError], None] | None = None
    ) -> None:
        """Heartbeat from a daemon thread every ``interval`` seconds until the run ends.

        ``interval`` must be within the documented range (:mod:`runjournal.journal.limits`).
        A heartbeat that cannot be written is never swallowed: it is kept in
        :attr:`heartbeat_failure` and reported, to ``on_failure`` if given, else as one
        warning line on stderr (and a line when heartbeats resume). A writer that refuses
        for good (closed, fenced, after a failed fsync) ends the loop.
        """
        every = check_seconds(interval or self.started.heartbeat_interval, "heartbeat interval",
                              MAX_HEARTBEAT_INTERVAL)
        self._on_beat_failure = on_failure or self._warn
        self._beats = threading.Thread(target=self._beat_loop, args=(every,), name="runjournal-heartbeat", daemon=True)
        self._beats.start()

    def _beat_loop(self, every: float) -> None:
        while not self._stop_beats.wait(every):
            try:
                self.heartbeat()
            except JournalError as exc:
                if self.ended_with is not None or self._stop_beats.is_set():
                    return  # the run ended meanwhile: nothing was lost
                self.heartbeat_failure = exc
                self._on_beat_failure(exc)
                if isinstance(exc, WriterClosedError):
                    return
                continue
            if self.heartbeat_failure is not None:
                self.heartbeat_failure = None
                print(f"runjournal: run {self.run_id}: heartbeats resumed", file=sys.stderr, flush=True)

    def _warn(self, exc: JournalError) -> None:
        print(f"runjournal: warning: run {self.run_id}: heartbeat failed: {exc}", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Stop heartbeats and release the writer (without ending the run)."""
        self._stop_beats.set()
        if self._beats is not None and self._beats is not threading.current_thread():
            self._beats.join()
        self.writer.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self._stop_beats.set()
            if self.ended_with is None:
                try:
                    self._end_for(exc)
                except JournalError:
                    # Failing to record the end must not replace the body's own exception
                    # (a Ctrl-C, or the failed fsync that caused this): the run is left
                    # without a terminal, for reconciliation to find.
                    if exc is None:
                        raise
        finally:
            self.close()

    def _end_for(self, exc: BaseException | None) -> None:
        if exc is None:
            self.succeed()
        elif isinstance(exc, KeyboardInterrupt):
            self.cancel("signal:SIGINT", "interrupted")
        else:
            self.fail(FailReason.EXCEPTION, message=f"{type(exc).__name__}: {exc}")


def start_run(
    workflow: str,
    steps: Iterable[str | PlannedStep] = (),
    *,
    store: Store | None = None,
    root: Path | str | None = None,
    inputs: dict[str, Any] | None = None,
    identity: WriterIdentity | None = None,
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
    run_id: str | None = None,
    durability: Durability = "state",
    clock: Clock = utc_now,
    **started_fields: Any,
) -> Run:
    """Create a run, write its ``started`` event and return it (use it as a context manager).

    ``identity`` overrides the writer identity recorded (importers, tests); by default it
    describes this process. ``started_fields`` are further ``started`` fields
    (``workflow_file``, ``workflow_digest``, ``rerun_of``).

    Long values are kept within the line cap (:mod:`runjournal.journal.limits`): string
    inputs are clipped, and a plan whose items do not fit in the ``started`` line is
    recorded in ``items-planned`` events right after it (:attr:`Run.planned`). A name, an
    interval or a value that cannot be kept raises a :class:`JournalError` before anything
    is written.
    """
    target = store if store is not None else open_store(root)
    planned = [s if isinstance(s, PlannedStep) else PlannedStep(name=s) for s in steps]
    check_names(workflow, planned)
    started = Started(
        run_id=run_id or new_run_id(clock()),
        seq=0,
        ts=clock(),
        workflow=workflow,
        steps=planned,
        inputs=clip_inputs(inputs or {}),
        writer=identity or writer_identity(),
        heartbeat_interval=check_seconds(heartbeat_interval, "heartbeat interval", MAX_HEARTBEAT_INTERVAL),
        **started_fields,
    )
    split = split_plan(started)
    run = Run(target.create(split.started, durability=durability, clock=clock), split.started)
    _record_plan(run, split)
    return run


def _record_plan(run: Run, split: PlanSplit) -> None:
    """Append the ``items-planned`` events of a plan too long for ``started`` (before any step runs)."""
    try:
        for step, items in split.chunks:
            run.planned.append(run.writer.append(ItemsPlanned, step=step, items=items))  # type: ignore[arg-type]
    except BaseException:
        run.writer.close()  # the run is left without a terminal; reconciliation records it abandoned
        raise


def _clipped(text: str | None) -> str | None:
    return None if text is None else clip_text(text)
