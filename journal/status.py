"""The status vocabulary: one home for every word a run's status can be, and what each means.

A leaf module (it imports nothing from the project), so the fold, the read models, the
stores and the CLI all use the same words without pulling in the event models.

* :data:`EVENT_STATUS` is the status table: event type -> the run status after it (None:
  unchanged). The fold is this table plus the step bookkeeping.
* The *recorded* statuses (:data:`RUN_STATUSES`) are what a fold of the journal gives.
* The *display* statuses add what a reader concludes without writing it down:
  :data:`DERIVED_ABANDONED` (the writer is gone, but the journal could not or may not be
  written), :data:`DAMAGED` (a bad line after a verified prefix: the prefix is shown) and
  :data:`UNREADABLE` (nothing of the journal could be read).
* :class:`ExitCode` is the stable exit code of every command, and
  :data:`STATUS_EXIT_CODES` the code of a command whose exit mirrors a run.
"""

from __future__ import annotations

import enum
from typing import Final, Literal

EVENT_STATUS: Final[dict[str, str | None]] = {
    "started": "running",
    "items-planned": None,
    "step-progress": None,
    "heartbeat": None,
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
    "abandoned": "abandoned",
}
"""Event type -> the run status after it (None: the status does not change)."""

TERMINAL_TYPES: Final = frozenset({"succeeded", "failed", "cancelled", "abandoned"})
"""Event types that end a run: the first one wins, later events are kept as late events."""

RunStatus = Literal["empty", "running", "succeeded", "failed", "cancelled", "abandoned"]
"""A recorded status. ``empty``: no ``started`` event yet (an empty or just-created run)."""

RUN_STATUSES: Final[tuple[RunStatus, ...]] = ("empty", "running", "succeeded", "failed", "cancelled", "abandoned")

TERMINAL_STATUSES: Final = frozenset(status for status in EVENT_STATUS.values() if status in TERMINAL_TYPES)
"""Statuses of runs that have ended (each named after its terminal event type)."""

DERIVED_ABANDONED: Final = "abandoned?"
"""Display status of a run whose writer is gone, not recorded (a read-only journal, or ``--no-reconcile``)."""

UNREADABLE: Final = "unreadable"
"""Display status of a run of which nothing could be read (the error says where and why)."""

DAMAGED: Final = "damaged"
"""Display status of a run with a bad line after a verified prefix: the state shown is the
prefix's, and the error names the first bad line (file, line, byte offset, reason)."""

DisplayStatus = Literal[
    "empty", "running", "succeeded", "failed", "cancelled", "abandoned", "abandoned?", "damaged", "unreadable"
]
"""Every status a command can show."""

LISTED_STATUSES: Final = ("running", "succeeded", "failed", "cancelled", "abandoned", "damaged", "unreadable")
"""The statuses ``history --status`` filters on (``abandoned`` also matches ``abandoned?``)."""

NOT_LIVE: Final = frozenset(TERMINAL_STATUSES | {DERIVED_ABANDONED})
"""Display statuses of runs that cannot be running: over, or dead but not recordable.

``damaged`` and ``unreadable`` are not in it: a run that cannot be read to its end may
still have a writer at work, so the one-run-per-workflow guard asks its lock.
"""

UNTRUSTED: Final = frozenset({DAMAGED, UNREADABLE})
"""Display statuses of runs whose journal has a bad line (commands exit 3 for them)."""


class ExitCode(enum.IntEnum):
    """The stable exit codes of every command (documented in ``docs/cli.md``)."""

    OK = 0
    NEGATIVE = 1
    USAGE = 2
    JOURNAL = 3
    ABANDONED = 4
    CANCELLED = 5
    TIMEOUT = 124  # as timeout(1): `follow --timeout` gave up while the run was still running
    INTERRUPTED = 130


STATUS_EXIT_CODES: Final[dict[str, ExitCode]] = {
    "succeeded": ExitCode.OK,
    "failed": ExitCode.NEGATIVE,
    "abandoned": ExitCode.ABANDONED,
    "cancelled": ExitCode.CANCELLED,
}
"""Run status -> exit code, for commands whose exit code mirrors a run (run, follow)."""
