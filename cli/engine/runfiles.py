"""Files the workflow runner keeps beside a run's journal: step output and cancel requests.

They live in the host's side-file directory (:class:`~runjournal.journal.sidefiles.SideFiles`),
whatever store holds the events. Step output lives under ``logs/<run_id>/``: ``<step>.log`` for a single-command step and
``<step>.d/<item>.log`` for each item of a fan-out step (stdout and stderr together, in the
order they were written). Names are made safe for a file system (see :func:`safe_name`);
file names end in ``.log`` and item directories in ``.d`` so the two can never collide.
The detached supervisor's own output is ``supervisor.out``; the step watchdog's (see
:mod:`runjournal.cli.engine.watchdog`) is ``watchdog.out``. When ``started`` had to clip a
long value (the writer's argv, an input; see :mod:`runjournal.journal.limits`), the full
values are kept in ``full-values.json`` (``{"argv": [...], "inputs": {...}}``), and
``rerun`` takes clipped inputs from there.

A cancel request is ``runs/<run_id>.cancel``: JSON ``{"by": ..., "reason": ...}`` written
by ``runjournal cancel`` before it signals the writer, so the writer can record who asked
and why. It is a request, not a status: the status is only ever the journal's ``cancelled``.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

import orjson

from runjournal.journal.errors import JournalError
from runjournal.journal.events import Started
from runjournal.journal.fsio import ensure_private_dir, fsync_dir, open_regular
from runjournal.journal.limits import encodable, is_clipped
from runjournal.journal.sidefiles import SideFiles

SUPERVISOR_OUTPUT = "supervisor.out"
WATCHDOG_OUTPUT = "watchdog.out"
FULL_VALUES = "full-values.json"
MAX_CANCEL_BYTES = 4096
MAX_CANCEL_FIELD = 500
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_MAX_NAME_BYTES = 100


def safe_name(name: str) -> str:
    """``name`` as a file name: unsafe characters become ``_``, plus a short hash if anything changed.

    The hash keeps two names apart that differ only in replaced characters (``a/b``, ``a_b``).
    """
    cleaned = _UNSAFE_CHARS.sub("_", name)[:_MAX_NAME_BYTES]
    if cleaned != name or cleaned.startswith("."):
        cleaned = cleaned.lstrip(".") + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return cleaned


def unit_log_path(log_dir: Path, step: str, item: str | None = None) -> Path:
    """Where the output of ``step`` (or of one ``item`` of it) is kept."""
    if item is None:
        return log_dir / f"{safe_name(step)}.log"
    return log_dir / f"{safe_name(step)}.d" / f"{safe_name(item)}.log"


def open_unit_log(log_dir: Path, step: str, item: str | None = None) -> int:
    """Create (truncate) a unit's log file, 0600, in a private directory; return its fd (close-on-exec)."""
    path = unit_log_path(log_dir, step, item)
    ensure_private_dir(path.parent)
    return open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)


def ensure_log_dir(side: SideFiles, run_id: str) -> Path:
    """The run's private log directory, created if missing."""
    ensure_private_dir(side.logs_dir)
    return ensure_private_dir(side.log_dir(run_id))


def keep_full_values(log_dir: Path, started: Started, inputs: dict[str, str]) -> None:
    """Write ``full-values.json`` if ``started`` clipped the writer's argv or an input (else nothing)."""
    clipped = any(is_clipped(a) for a in started.writer.argv) or any(is_clipped(v) for v in started.inputs.values())
    if not clipped:
        return
    data = orjson.dumps({"argv": [encodable(a) for a in sys.argv], "inputs": {k: encodable(v) for k, v in inputs.items()}})
    fd = open_regular(log_dir / FULL_VALUES, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def full_inputs(side: SideFiles, run_id: str) -> dict[str, str] | None:
    """The inputs kept in a run's ``full-values.json``, or None if it has none (or it is unreadable)."""
    try:
        fd = open_regular(side.log_dir(run_id) / FULL_VALUES, os.O_RDONLY)
    except (OSError, JournalError):
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            inputs = orjson.loads(f.read()).get("inputs")
    except (OSError, ValueError, AttributeError):
        return None
    return {str(k): str(v) for k, v in inputs.items()} if isinstance(inputs, dict) else None


def write_cancel_request(side: SideFiles, run_id: str, by: str, reason: str | None) -> Path:
    """Write the cancel request atomically (temp file, fsync, rename), 0600."""
    final = side.cancel_request(run_id)
    ensure_private_dir(final.parent)
    tmp = final.with_name(f".{final.name}.{os.getpid()}")
    data = orjson.dumps({"by": by[:MAX_CANCEL_FIELD], "reason": reason[:MAX_CANCEL_FIELD] if reason else None})
    fd = open_regular(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    return final


def read_cancel_request(side: SideFiles, run_id: str) -> tuple[str, str | None] | None:
    """``(by, reason)`` from the run's cancel request, or None if there is none (or it is unreadable)."""
    try:
        fd = open_regular(side.cancel_request(run_id), os.O_RDONLY)
    except OSError:
        return None
    try:
        data = orjson.loads(os.read(fd, MAX_CANCEL_BYTES))
    except (OSError, orjson.JSONDecodeError):
        return None
    finally:
        os.close(fd)
    by, reason = (data.get("by"), data.get("reason")) if isinstance(data, dict) else (None, None)
    if not isinstance(by, str) or not by:
        return None
    return by[:MAX_CANCEL_FIELD], reason[:MAX_CANCEL_FIELD] if isinstance(reason, str) else None


def clear_cancel_request(side: SideFiles, run_id: str) -> None:
    """Remove a consumed (or stale) cancel request."""
    try:
        os.unlink(side.cancel_request(run_id))
    except FileNotFoundError:
        pass
