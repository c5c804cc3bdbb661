"""Shared helpers for the reliability tests: scale, identities, chain reading, CLI subprocesses, figures."""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runjournal.journal.codec import decode_line
from runjournal.journal.events import WriterIdentity
from runjournal.journal.identity import writer_identity
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.lines import OverlongLine, TornTail, iter_raw_lines
from runjournal.journal.records import Cursor, check_sequence
from runjournal.journal.run import start_run

FULL = os.environ.get("RUNJOURNAL_FULL", "") not in ("", "0")
"""Full-count mode (the figures in docs/reliability.md); CI runs the reduced counts."""

HERE = Path(__file__).resolve().parent
CHILD = HERE / "child.py"
"""The child-process script (writers, crashers, reconcilers) the tests run."""

CLI_TIMEOUT = 10.0
"""Seconds a CLI subprocess may take before it counts as a hang."""

MEMORY_LIMIT = 1 << 30
"""Address-space limit (RLIMIT_AS) of every CLI subprocess run on hostile input: 1 GiB."""


def scale(default: int, full: int) -> int:
    """``full`` under RUNJOURNAL_FULL=1, else ``default``."""
    return full if FULL else default


def dead_pid() -> int:
    """A pid no process can have (``kernel.pid_max`` itself is never handed out)."""
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except OSError:
        return 4_194_304


def dead_identity() -> WriterIdentity:
    """This host's writer identity with a pid that cannot be alive: a writer that has died."""
    return writer_identity().model_copy(update={"pid": dead_pid(), "start_ticks": 1})


@dataclass(frozen=True)
class Chain:
    """A run file read strictly: ``(seq, type, h)`` of every whole line, and the torn tail if any."""

    entries: list[tuple[int, str, str]]
    torn: TornTail | None

    @property
    def hashes(self) -> dict[int, str]:
        """seq -> h."""
        return {seq: h for seq, _, h in self.entries}

    @property
    def types(self) -> list[str]:
        """Event types in order."""
        return [t for _, t, _ in self.entries]


def read_chain(path: Path, run_id: str) -> Chain:
    """Read ``path`` strictly (raises CorruptLineError in the middle), returning its chain."""
    cursor = Cursor()
    entries: list[tuple[int, str, str]] = []
    torn = None
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for item in iter_raw_lines(fd):
            if isinstance(item, TornTail):
                torn = item
                break
            assert not isinstance(item, OverlongLine), f"overlong line at {item.offset}"
            event, digest = decode_line(
                item.data, cursor.prev_hash, path=str(path), line_no=item.line_no, offset=item.offset
            )
            check_sequence(event, item, run_id, cursor.seq, str(path))
            entries.append((event.seq, event.type, digest))
            cursor = Cursor(item.end, item.line_no + 1, cursor.seq + 1, digest)
    finally:
        os.close(fd)
    return Chain(entries, torn)


def write_orphan(store: JsonlStore, run_id: str, *, events: int = 3, tail: bytes = b"", **started: Any) -> int:
    """Write a run of ``events`` events (``started`` first) by a writer that has died, then the raw
    bytes ``tail`` (a torn fragment, garbage ...); return the offset where ``tail`` starts."""
    run = start_run("orphan", steps=["work"], store=store, run_id=run_id, identity=dead_identity(), **started)
    for i in range(events - 1):
        run.step_started("work") if i == 0 else run.heartbeat()
    offset = run.writer.cursor.offset
    run.writer.close()
    with open(store.path(run_id), "ab") as f:
        f.write(tail)
    return offset


def quarantine_files(store: JsonlStore, run_id: str) -> list[Path]:
    """Torn tails reconciliation moved aside for ``run_id``."""
    return sorted(store.runs_dir.glob(f"{run_id}.jsonl.torn-*"))


def cli_command() -> list[str]:
    """How to run the console script of this venv."""
    script = Path(sys.executable).parent / "runjournal"
    return [str(script)] if script.exists() else [sys.executable, "-m", "runjournal"]


@dataclass(frozen=True)
class CliResult:
    """One finished CLI subprocess."""

    args: list[str]
    code: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> object:
        """stdout parsed as JSON."""
        return json.loads(self.stdout)

    def describe(self) -> str:
        """A one-paragraph summary for assertion messages."""
        head = f"runjournal {' '.join(self.args)} -> {self.code}"
        return f"{head}\nstdout: {self.stdout[-800:]!r}\nstderr: {self.stderr[-1500:]!r}"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_SETPCAP = 1, 2, 8


def can_bind_file_modes() -> bool:
    """Whether :func:`bind_file_modes` can work here: not root, or root allowed to drop capabilities."""
    if os.geteuid() != 0:
        return True
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    effective = next((line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), "0")
    return bool(int(effective, 16) & (1 << _CAP_SETPCAP))


def bind_file_modes() -> None:
    """In a child before exec: make file modes bind even for root, by dropping CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH from the bounding set (root keeps every other capability). No-op for others."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def run_cli(
    root: Path,
    *args: str,
    timeout: float = CLI_TIMEOUT,
    env: dict[str, str] | None = None,
    limit_memory: bool = True,
    modes_bind: bool = False,
) -> CliResult:
    """Run ``runjournal --root ROOT ARGS`` in a subprocess with a timeout (a hang fails the test)."""
    full_env = {k: v for k, v in os.environ.items() if k != "RUNJOURNAL_CRASH_AT"}
    full_env.update({"NO_COLOR": "1", "COLUMNS": "120", **(env or {})})
    argv = [*cli_command(), "--root", str(root), *args]

    def preexec() -> None:
        if limit_memory:
            _limit_memory()
        if modes_bind:
            bind_file_modes()

    start = time.monotonic()
    proc = subprocess.run(
        argv, capture_output=True, timeout=timeout, env=full_env, preexec_fn=preexec, stdin=subprocess.DEVNULL
    )
    seconds = time.monotonic() - start
    return CliResult(
        list(args),
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
        seconds,
    )


def assert_clean_failure(result: CliResult, codes: tuple[int, ...] = (1, 2, 3)) -> None:
    """The command failed the way a user's mistake or a bad journal should: a listed exit code,
    no traceback, and an error line starting with ``runjournal:``."""
    assert result.code in codes, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    lines = result.stderr.splitlines()
    # click's own usage errors (exit 2) say "Error: ..." after a usage line; ours say "runjournal: ...".
    said = any(line.startswith("runjournal:") or (result.code == 2 and line.startswith("Error:")) for line in lines)
    assert result.code == 1 or said, result.describe()


def python_child(*args: str, env: dict[str, str] | None = None, **popen: object) -> subprocess.Popen[bytes]:
    """Start ``child.py ARGS`` (see that file) with a clean crash-point environment unless given."""
    full_env = {k: v for k, v in os.environ.items() if k != "RUNJOURNAL_CRASH_AT"}
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, str(CHILD), *args], env=full_env, **popen)  # type: ignore[call-overload]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.005):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes (then fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
