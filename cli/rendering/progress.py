"""Live progress of an attached run, on stderr.

On a terminal: one status line redrawn in place (the step, its items done/total and how
many are running) above which finished steps and failed items are printed for good. When
stderr is not a terminal (a log file, CI, a pipe): one plain line per event, so the output
reads like a log and can be grepped. Every name from the workflow or from command output is
sanitised before it reaches the terminal.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import IO

from runjournal.cli.rendering.sanitize import sanitize
from runjournal.journal.events import Cancelled, Event, Failed, Started, StepProgress
from runjournal.projections.fold import fold_steps
from runjournal.projections.state import RunState

_CLEAR_LINE = "\r\x1b[K"


def _name(text: str | None) -> str:
    return sanitize(text or "", keep_newlines=False)


def describe(event: Event, state: RunState, stopping: bool = False) -> str | None:
    """One line for ``event`` (``state`` is the fold after it), or None for events not worth a line.

    ``stopping``: the run is being cancelled, so a step or item that fails now was stopped
    by the cancel, and is shown as ``cancelled``.
    """
    if isinstance(event, Started):
        count = len(event.steps)
        return f"run {event.run_id} started: workflow {_name(event.workflow)}, {count} step{'s' * (count != 1)}"
    if isinstance(event, StepProgress):
        return _describe_progress(event, stopping)
    if isinstance(event, Failed):
        detail = ", ".join(p for p in (f"step {_name(event.step)}" if event.step else "", _name(event.message)) if p)
        return f"run {event.run_id} failed: {event.reason.value}" + (f" ({detail})" if detail else "")
    if isinstance(event, Cancelled):
        why = f": {_name(event.reason)}" if event.reason else ""
        return f"run {event.run_id} cancelled by {_name(event.by)}{why}"
    if event.type in ("succeeded", "abandoned"):
        return f"run {event.run_id} {event.type}"
    return None


def _describe_progress(event: StepProgress, stopping: bool) -> str:
    step = _name(event.step)
    message = f": {_name(event.message)}" if event.message else ""
    if event.item is not None:
        state = event.item_state or event.state
        state = "cancelled" if stopping and state == "failed" else state
        count = f" ({event.done}/{event.total})" if state != "started" and event.total is not None else ""
        return f"  {step} [{_name(event.item)}] {state}{count}{message}"
    if event.state == "started":
        items = f" ({event.total} items)" if event.total is not None else ""
        return f"step {step} started{items}"
    return f"step {step} {'cancelled' if stopping and event.state == 'failed' else event.state}{message}"


class Progress:
    """Receives each event the runner appends and shows it on ``stream`` (``brief``: run start and end only)."""

    def __init__(
        self, stream: IO[str], *, live: bool, brief: bool = False, stopping: Callable[[], bool] | None = None
    ) -> None:
        self.stream = stream
        self.live = live
        self.brief = brief
        self.stopping = stopping or (lambda: False)
        self.state = RunState()
        self._status_shown = False
        self._failed_items: dict[str, str] = {}
        self._feed = _Feed()
        self._folding = fold_steps(self._feed)

    def __call__(self, event: Event) -> None:
        self._feed.event = event
        _, self.state = next(self._folding)
        if isinstance(event, StepProgress) and event.item is not None and event.item_state == "failed":
            self._failed_items.setdefault(event.step, event.item)
        if self.brief and event.type in ("step-progress", "heartbeat"):
            return
        if not self.live:
            line = describe(event, self.state, self.stopping())
            if line is not None:
                self._write(line + "\n")
            return
        self._show_live(event)

    def _show_live(self, event: Event) -> None:
        if _is_lasting(event):
            line = describe(event, self.state, self.stopping())
            if line is not None:
                self._write(_CLEAR_LINE + line + "\n")
                self._status_shown = False
        status = self.status_line()
        if status is not None and event.type in ("started", "step-progress"):
            self._write(_CLEAR_LINE + status)
            self._status_shown = True
        elif self._status_shown:
            self._write(_CLEAR_LINE)
            self._status_shown = False

    def failure_hint(self) -> str | None:
        """For a failed run, the command that prints the failing step's (or item's) output."""
        terminal = self.state.terminal
        if not isinstance(terminal, Failed) or terminal.step is None or self.state.run_id is None:
            return None
        item = self._failed_items.get(terminal.step)
        args = [self.state.run_id, terminal.step, *([item] if item is not None else [])]
        return f"see the output: runjournal logs {_name(shlex.join(args))}"

    def status_line(self) -> str | None:
        """The redrawn line: the running step, its position and its fan-out progress."""
        if self.state.is_terminal:
            return None
        steps = list(self.state.steps.values())
        current = next((s for s in steps if s.state == "started"), None)
        if current is None:
            return None
        position = f"[{steps.index(current) + 1}/{len(steps)}]"
        if current.total is None:
            return f"{position} {_name(current.name)} running"
        running = sum(1 for i in current.items.values() if i.state == "started")
        return f"{position} {_name(current.name)} {current.done or 0}/{current.total} done, {running} running"

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


class _Feed:
    """An endless iterator over the one event handed to it, so one fold runs across many calls."""

    def __init__(self) -> None:
        self.event: Event | None = None

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> Event:
        if self.event is None:
            raise StopIteration
        event, self.event = self.event, None
        return event


def _is_lasting(event: Event) -> bool:
    """Events printed for good on a terminal: run start and end, step ends, failed items."""
    if isinstance(event, StepProgress):
        if event.item is not None:
            return event.item_state == "failed"
        return event.state != "started"
    return event.type != "heartbeat"
