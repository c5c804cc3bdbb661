"""Timing helpers: repeat a measurement within a time budget, time a child process with its peak RSS."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Series:
    """Repeated measurements of one thing (seconds, or whatever ``unit`` says), plus peak RSS if known."""

    values: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    unit: str = "s"

    @property
    def median(self) -> float:
        """The median value."""
        return statistics.median(self.values)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (nearest rank)."""
        ordered = sorted(self.values)
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    def summary(self) -> dict[str, object]:
        """Median, min, max, count (and peak RSS) as JSON-ready values."""
        out: dict[str, object] = {
            "median": self.median, "min": min(self.values), "max": max(self.values), "n": len(self.values),
            "unit": self.unit,
        }
        if self.rss_kb:
            out["peak_rss_mb"] = max(self.rss_kb) / 1024
        return out


def repeat(fn: Callable[[], float | None], *, times: int, budget: float, setup: Callable[[], None] | None = None) -> Series:
    """Call ``fn`` up to ``times`` times (at least once), stopping early once ``budget`` seconds are spent.

    ``fn`` returns its own measurement, or None to be timed from outside. ``setup`` runs
    untimed before each call.
    """
    series = Series()
    spent = 0.0
    for _ in range(times):
        if setup is not None:
            setup()
        start = time.perf_counter()
        value = fn()
        elapsed = time.perf_counter() - start
        series.values.append(elapsed if value is None else value)
        spent += elapsed
        if spent > budget:
            break
    return series


@dataclass(frozen=True)
class ChildResult:
    """What one child process did: exit status, wall time, peak RSS, and its output."""

    returncode: int
    seconds: float
    rss_kb: int
    stdout: bytes
    stderr: bytes


def run_child(argv: Sequence[str], *, env: dict[str, str] | None = None, capture: bool = False) -> ChildResult:
    """Run ``argv`` to completion; wall time from spawn to reap, peak RSS from ``wait4``."""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, env=env)
    stdout, stderr = b"", b""
    if capture:
        stdout = proc.stdout.read()  # type: ignore[union-attr]
    stderr = proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ChildResult(proc.returncode, seconds, usage.ru_maxrss, stdout, stderr)


def time_child(argv: Sequence[str], *, times: int, budget: float, setup: Callable[[], None] | None = None,
               env: dict[str, str] | None = None) -> Series:
    """Wall time and peak RSS of ``argv`` over repeated runs; raises if the child fails."""
    series = Series()
    spent = 0.0
    for _ in range(times):
        if setup is not None:
            setup()
        result = run_child(argv, env=env)
        if result.returncode not in (0, 1, 4, 5):
            raise ChildFailed(argv, result)
        series.values.append(result.seconds)
        series.rss_kb.append(result.rss_kb)
        spent += result.seconds
        if spent > budget:
            break
    return series


class ChildFailed(RuntimeError):
    """A measured command exited with an error."""

    def __init__(self, argv: Sequence[str], result: ChildResult) -> None:
        err = result.stderr.decode(errors="replace").strip().splitlines()
        super().__init__(f"{' '.join(argv[:4])} ... exited {result.returncode}: {err[-1] if err else ''}")


def cli_argv() -> list[str]:
    """How to start the console script: the installed ``runjournal`` next to this Python, else ``-m cli.main``."""
    script = Path(sys.executable).with_name("runjournal")
    if script.exists():
        return [str(script)]
    found = shutil.which("runjournal")
    return [found] if found else [sys.executable, "-m", "cli.main"]


def child_env() -> dict[str, str]:
    """The environment for children: the repo importable, no colour, no inherited journal root."""
    env = {k: v for k, v in os.environ.items() if k != "RUNJOURNAL_ROOT"}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["NO_COLOR"] = "1"
    return env
