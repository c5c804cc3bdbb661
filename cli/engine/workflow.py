"""Workflow files: TOML (stdlib ``tomllib``) parsed and validated into a :class:`Workflow`.

::

    name = "patch"
    heartbeat_interval = 5          # optional, seconds (default 30)

    [[steps]]
    name = "drain"
    run = "echo draining"
    timeout = 60                    # optional, seconds, per command the step runs

    [[steps]]
    name = "patch"
    run = 'ssh "$RUNJOURNAL_ITEM" apply-patch'  # the item, from the environment
    foreach = ["web-01", "web-02"]  # optional: one command per item
    concurrency = 2                 # optional: items in parallel (default 1)

``{item}`` in ``run`` still works, and is safe: it becomes a reference to
``$RUNJOURNAL_ITEM`` (see :mod:`runjournal.cli.engine.itemref`), never the item's text, so
the shell never parses an item. Heartbeat intervals and timeouts must lie in the range of
:mod:`runjournal.journal.limits`; names and items are at most
:data:`~runjournal.journal.plan.MAX_NAME_BYTES`.

Every mistake is reported as one :class:`WorkflowError` line naming the file and line.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runjournal.cli.engine.itemref import ITEM_PLACEHOLDER, item_reference
from runjournal.journal.errors import JournalError
from runjournal.journal.events import PlannedStep
from runjournal.journal.limits import MAX_HEARTBEAT_INTERVAL, MAX_TIMEOUT, BadDurationError, check_seconds
from runjournal.journal.plan import MAX_NAME_BYTES
from runjournal.journal.run import DEFAULT_HEARTBEAT_INTERVAL

__all__ = ["ITEM_PLACEHOLDER", "MAX_NAME", "Step", "Workflow", "WorkflowError", "check_name", "load_workflow"]

MAX_NAME = 200
_TOP_KEYS = frozenset({"name", "heartbeat_interval", "steps"})
_STEP_KEYS = frozenset({"name", "run", "foreach", "concurrency", "timeout"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOML_POSITION = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")


class WorkflowError(JournalError, ValueError):
    """A workflow file is missing, unreadable or invalid; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Step:
    """One step: a shell command (``run``) or, for ``runjournal exec``, an argv run without a shell."""

    name: str
    run: str | None = None
    argv: tuple[str, ...] | None = None
    foreach: tuple[str, ...] | None = None
    concurrency: int = 1
    timeout: float | None = None

    def command(self, item: str | None = None) -> list[str]:
        """The argv that runs this step (for ``item`` of a fan-out step)."""
        if self.argv is not None:
            return list(self.argv)
        text = self.run or ""
        if item is not None:
            text = item_reference(text)  # the item itself reaches the command only through its environment
        return ["/bin/sh", "-c", text]

    def planned(self) -> PlannedStep:
        """The step as recorded in ``started``."""
        return PlannedStep(name=self.name, items=list(self.foreach) if self.foreach is not None else None)


@dataclass(frozen=True, slots=True)
class Workflow:
    """A validated workflow; ``file`` and ``digest`` (sha256 of its bytes) when read from a file."""

    name: str
    steps: tuple[Step, ...]
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    file: str | None = None
    digest: str | None = None

    def planned(self) -> list[PlannedStep]:
        """The steps as recorded in ``started``."""
        return [step.planned() for step in self.steps]

    def to_data(self) -> dict[str, Any]:
        """Plain data that :func:`workflow_from_data` turns back into this workflow."""
        steps = [
            {k: v for k, v in (("name", s.name), ("run", s.run), ("argv", s.argv), ("foreach", s.foreach),
                               ("concurrency", s.concurrency), ("timeout", s.timeout)) if v is not None}
            for s in self.steps
        ]
        return {"name": self.name, "heartbeat_interval": self.heartbeat_interval, "steps": steps,
                "file": self.file, "digest": self.digest}


def file_digest(data: bytes) -> str:
    """The digest recorded as ``workflow_digest``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


MAX_WORKFLOW_BYTES = 64 * 1024 * 1024
"""Largest workflow file read (64 MiB): ``/dev/zero`` or a runaway generator is refused, not read forever."""


def read_workflow_bytes(path: Path) -> bytes:
    """The bytes of a workflow file (a pipe like ``<(generate)`` too), or a one-line :class:`WorkflowError`.

    A named FIFO blocks until something writes to it, as ``cat`` would; stderr says so first,
    so a run that seems to hang says why.
    """
    try:
        if _is_named_fifo(path):
            print(f"runjournal: waiting for a writer on the FIFO {path} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        with open(path, "rb") as f:
            data = f.read(MAX_WORKFLOW_BYTES + 1)
        if len(data) > MAX_WORKFLOW_BYTES:
            raise WorkflowError(f"{path}: larger than {MAX_WORKFLOW_BYTES // (1024 * 1024)} MiB; not a workflow file")
        return data
    except FileNotFoundError:
        raise WorkflowError(f"{path}: no such workflow file") from None
    except IsADirectoryError:
        raise WorkflowError(f"{path}: is a directory, not a workflow file") from None
    except OSError as exc:
        raise WorkflowError(f"{path}: cannot read workflow file: {exc.strerror}") from None


def _is_named_fifo(path: Path) -> bool:
    """A FIFO in the file system (not the ``/dev/fd/N`` of a shell's ``<(...)``, whose writer is already there)."""
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode) and not str(path).startswith(("/dev/fd/", "/proc/"))
    except OSError:
        return False


def load_workflow(path: Path) -> Workflow:
    """Read, parse and validate the workflow file at ``path``."""
    data = read_workflow_bytes(path)
    workflow = parse_workflow(data, str(path))
    return Workflow(workflow.name, workflow.steps, workflow.heartbeat_interval,
                    str(path.resolve()), file_digest(data))


def parse_workflow(data: bytes, source: str = "<workflow>") -> Workflow:
    """Parse and validate workflow TOML; ``source`` names the file in error messages."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkflowError(f"{source}: not UTF-8 (byte {exc.start}); TOML files must be UTF-8") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WorkflowError(_toml_error(source, str(exc))) from None
    except RecursionError:
        raise WorkflowError(f"{source}: invalid TOML: arrays or tables nested too deeply") from None
    except ValueError as exc:  # a number tomllib cannot convert (over 4,300 digits)
        raise WorkflowError(f"{source}: invalid TOML: {str(exc).split(';')[0]}") from None
    return _Validator(source, text).workflow(doc)


def workflow_from_data(data: dict[str, Any]) -> Workflow:
    """Rebuild a workflow from :meth:`Workflow.to_data` (our own output, already validated)."""
    steps = tuple(
        Step(
            name=s["name"],
            run=s.get("run"),
            argv=tuple(s["argv"]) if s.get("argv") is not None else None,
            foreach=tuple(s["foreach"]) if s.get("foreach") is not None else None,
            concurrency=int(s.get("concurrency", 1)),
            timeout=s.get("timeout"),
        )
        for s in data["steps"]
    )
    return Workflow(data["name"], steps, float(data["heartbeat_interval"]), data.get("file"), data.get("digest"))


def check_name(value: object, what: str = "workflow name") -> str:
    """Validate a workflow name given outside a file (``runjournal exec --workflow``)."""
    if not isinstance(value, str) or not value.strip() or _CONTROL.search(value) or len(value) > MAX_NAME:
        raise WorkflowError(f"{what}: a workflow name must be 1 to {MAX_NAME} characters without control characters")
    return value


def _toml_error(source: str, message: str) -> str:
    found = _TOML_POSITION.match(message)
    if found is None:
        return f"{source}: invalid TOML: {message}"
    return f"{source}:{found['line']}:{found['col']}: invalid TOML: {found['msg']}"


class _Validator:
    """Checks a parsed document; finds line numbers for its messages by scanning the text."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = text.splitlines()
        headers = [n for n, line in enumerate(self.lines) if re.match(r"^\s*\[", line)]
        self.top_end = headers[0] if headers else len(self.lines)
        self.step_headers = [n for n, text in enumerate(self.lines) if re.match(r"^\s*\[\[\s*steps\s*\]\]", text)]

    def fail(self, message: str, line: int | None = None) -> WorkflowError:
        where = f"{self.source}:{line}" if line else self.source
        return WorkflowError(f"{where}: {message}")

    def workflow(self, doc: dict[str, Any]) -> Workflow:
        unknown = sorted(k for k in doc if k not in _TOP_KEYS and doc[k] is not None)
        if unknown:
            raise self.fail(f"unknown key {unknown[0]!r} (allowed: name, heartbeat_interval, [[steps]])",
                            self.key_line(unknown[0], 0, self.top_end))
        name = self.name(doc.get("name"), "workflow 'name'", self.key_line("name", 0, self.top_end))
        interval = doc.get("heartbeat_interval")
        if interval is None:
            interval = DEFAULT_HEARTBEAT_INTERVAL
        interval = self.seconds(interval, "'heartbeat_interval'", MAX_HEARTBEAT_INTERVAL,
                                self.key_line("heartbeat_interval", 0, self.top_end))
        raw_steps = doc.get("steps")
        if not isinstance(raw_steps, list) or not raw_steps:
            raise self.fail("a workflow needs at least one [[steps]] table with 'name' and 'run'")
        steps = tuple(self.step(raw, index) for index, raw in enumerate(raw_steps))
        seen: set[str] = set()
        for index, step in enumerate(steps):
            if step.name in seen:
                raise self.fail(f"step name {step.name!r} is used twice; step names must be unique",
                                self.step_key_line(index, "name"))
            seen.add(step.name)
        return Workflow(name, steps, interval)

    def step(self, raw: object, index: int) -> Step:
        where = self.step_line(index)
        if not isinstance(raw, dict):
            raise self.fail(f"step #{index + 1} must be a table ([[steps]])", where)

        def at(key: str) -> int | None:
            return self.step_key_line(index, key) or where

        unknown = sorted(k for k in raw if k not in _STEP_KEYS)
        if unknown:
            raise self.fail(f"step #{index + 1}: unknown key {unknown[0]!r} "
                            f"(allowed: {', '.join(sorted(_STEP_KEYS))})", at(unknown[0]))
        name = self.name(raw.get("name"), f"step #{index + 1} 'name'", at("name"))
        label = f"step {name!r}"
        run = self.command(raw.get("run"), label, at("run"))
        foreach = self.items(raw.get("foreach"), label, at("foreach"))
        concurrency = self.concurrency(raw.get("concurrency"), foreach, label, at("concurrency"))
        timeout = raw.get("timeout")
        if timeout is not None:
            timeout = self.seconds(timeout, f"{label} 'timeout'", MAX_TIMEOUT, at("timeout"))
        return Step(name, run, None, foreach, concurrency, timeout)

    def name(self, value: object, what: str, line: int | None) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{what} must be a non-empty string", line)
        if _CONTROL.search(value) or len(value) > MAX_NAME:
            raise self.fail(f"{what} must be at most {MAX_NAME} characters without control characters", line)
        return value

    def command(self, value: object, label: str, line: int | None) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{label} needs 'run', a non-empty shell command string", line)
        if "\x00" in value:
            raise self.fail(f"{label} 'run' contains a NUL character", line)
        return value

    def items(self, value: object, label: str, line: int | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v and "\x00" not in v for v in value):
            raise self.fail(f"{label} 'foreach' must be a list of non-empty strings", line)
        seen: set[str] = set()
        for item in value:  # one pass with a set: loading 100k items stays linear
            if item in seen:
                raise self.fail(f"{label} 'foreach' lists {item!r} twice; items must be unique", line)
            if len(item) > MAX_NAME_BYTES // 4 and len(item.encode()) > MAX_NAME_BYTES:
                raise self.fail(f"{label} 'foreach' has an item over {MAX_NAME_BYTES} bytes: {item[:40]!r}...", line)
            seen.add(item)
        return tuple(value)

    def concurrency(self, value: object, foreach: tuple[str, ...] | None, label: str, line: int | None) -> int:
        if value is None:
            return 1
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(f"{label} 'concurrency' must be a whole number >= 1", line)
        if foreach is None and value != 1:
            raise self.fail(f"{label} 'concurrency' only applies to a step with 'foreach'", line)
        return value

    def seconds(self, value: object, what: str, maximum: float, line: int | None) -> float:
        try:
            return check_seconds(value, what, maximum)  # type: ignore[arg-type]
        except BadDurationError as exc:
            raise self.fail(str(exc), line) from None

    def key_line(self, key: str, start: int, stop: int | None = None) -> int | None:
        """1-based line of ``key = ...`` between lines ``start`` and ``stop`` (0-based, exclusive)."""
        pattern = re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')\s*=")
        for number in range(start, len(self.lines) if stop is None else stop):
            if pattern.match(self.lines[number]):
                return number + 1
        return None

    def step_line(self, index: int) -> int | None:
        """1-based line of the ``index``-th ``[[steps]]`` header."""
        headers = self.step_headers
        return headers[index] + 1 if index < len(headers) else None

    def step_key_line(self, index: int, key: str) -> int | None:
        start = self.step_line(index)
        if start is None:
            return None
        stop = self.step_line(index + 1)
        return self.key_line(key, start, stop - 1 if stop else None)
