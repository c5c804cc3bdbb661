"""Timing helpers: repeat a measurement within a time budget, time a child process with its peak RSS."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
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


@dataclass(frozen=True)
class ChildResult:
    """What one child process did: exit status, wall time, peak RSS, and its output."""

    returncode: int
    seconds: float
    rss_kb: int
    stdout: bytes
    stderr: bytes


GNU_TIME = "/usr/bin/time"


def run_child(argv: Sequence[str], *, env: dict[str, str] | None = None, capture: bool = False,
              rss: bool = False) -> ChildResult:
    """Run ``argv`` to completion: wall time from spawn to reap, and with ``rss`` its peak RSS.

    The peak RSS comes from GNU time, which forks the command from its own small process:
    ``wait4``'s ``ru_maxrss`` of our own child would count the pages it shared with this
    (large) benchmark process before ``exec``. 0 when GNU time is not installed.
    """
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    rss_file = None
    if rss and os.path.exists(GNU_TIME):
        fd, rss_file = tempfile.mkstemp(prefix="rss-")
        os.close(fd)
        argv = [GNU_TIME, "-f", "%M", "-o", rss_file, *argv]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, env=env)
    stdout = proc.stdout.read() if capture else b""  # type: ignore[union-attr]
    stderr = proc.stderr.read()  # type: ignore[union-attr]
    proc.wait()
    seconds = time.perf_counter() - start
    return ChildResult(proc.returncode, seconds, _read_rss(rss_file), stdout, stderr)


def _read_rss(path: str | None) -> int:
    if path is None:
        return 0
    try:
        lines = Path(path).read_text().split()
        return int(lines[-1]) if lines else 0
    except (OSError, ValueError):
        return 0
    finally:
        os.unlink(path)


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
    return [found] if found else [sys.executable, "-m", "runjournal"]


def child_env() -> dict[str, str]:
    """The environment for children: the repo importable, no colour, no inherited journal root."""
    env = {k: v for k, v in os.environ.items() if k != "RUNJOURNAL_ROOT"}
    env["NO_COLOR"] = "1"
    return env


Member = Callable[[], "tuple[float, int | None]"]
"""One thing measured in rounds: returns (value, peak RSS in KB or None)."""


def interleave(members: dict[str, Member], *, times: int, budget: float,
               setup: Callable[[], None] | None = None) -> dict[str, Series]:
    """Measure every member once per round, round after round, so a case and its baseline see the same load.

    A shared machine drifts (other jobs start and stop); alternating keeps the ratio of two
    series honest even when both move. Stops after ``times`` rounds or once a round ends
    past ``budget`` seconds in total (at least one round).
    """
    series = {name: Series() for name in members}
    start = time.perf_counter()
    for _ in range(times):
        if setup is not None:
            setup()
        for name, member in members.items():
            value, rss = member()
            series[name].values.append(value)
            if rss is not None:
                series[name].rss_kb.append(rss)
        if time.perf_counter() - start > budget:
            break
    return series


def child_member(argv: Sequence[str], env: dict[str, str] | None = None, *, rss: bool = True) -> Member:
    """A member that runs ``argv`` (wall time, peak RSS); raises :class:`ChildFailed` on an error exit."""

    def run() -> tuple[float, int | None]:
        result = run_child(argv, env=env, rss=rss)
        if result.returncode not in (0, 1, 4, 5):
            raise ChildFailed(argv, result)
        return result.seconds, (result.rss_kb or None)

    return run


def call_member(fn: Callable[[], float | None]) -> Member:
    """A member that calls ``fn`` (its own measurement, or wall time if it returns None)."""

    def run() -> tuple[float, int | None]:
        start = time.perf_counter()
        value = fn()
        return (time.perf_counter() - start if value is None else value), None

    return run
