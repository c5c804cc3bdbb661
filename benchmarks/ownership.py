"""How fast a run's steps die with their owner: SIGKILL the runner mid fan-out, time until no step process is left.

    python benchmarks/ownership.py [--rounds N]

For each case (attached runner, detached supervisor, steps that ignore SIGTERM) it starts a
real ``runjournal run`` of a 4-item fan-out (concurrency 4), SIGKILLs the owner once all
four commands run, and polls /proc every millisecond for processes carrying the run's
marker. It prints the median and worst time from the kill to the last one gone (the goal
is 1 s), and the cost the watchdog adds to a run that succeeds (a one-step run with and
without it is not separable from the CLI, so the watchdog's own start is timed instead).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runjournal.journal.processes import marked_processes

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-P", "-m", "runjournal"]


def marked(run_id: str) -> int:
    """Live processes whose environment names the run (as reconcile finds escapees)."""
    return len(marked_processes(run_id)[0])


def one_kill(base: Path, detach: bool, ignore_term: bool) -> float:
    """Seconds from SIGKILL of the owner to the last step process gone."""
    root = base / "root"
    trap = "trap '' TERM; " if ignore_term else ""
    wf = base / "wf.toml"
    wf.write_text(f'name = "bench"\n[[steps]]\nname = "fan"\nforeach = ["a", "b", "c", "d"]\nconcurrency = 4\n'
                  f'run = "{trap}sleep 30"\n')
    args = [*CLI, "--root", str(root), "run", str(wf)]
    if detach:
        run_id = subprocess.run([*args, "--detach"], capture_output=True, text=True, check=True).stdout.strip()
        runner = None
    else:
        runner = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        run_id = runner.stdout.readline().decode().strip()  # type: ignore[union-attr]
    deadline = time.monotonic() + 30
    while marked(run_id) < 8 and time.monotonic() < deadline:  # four shells, four sleeps
        time.sleep(0.005)
    owner = json.loads((root / "runs" / f"{run_id}.jsonl").read_text().splitlines()[0])["writer"]["pid"]
    os.kill(owner, signal.SIGKILL)
    killed = time.monotonic()
    while marked(run_id) and time.monotonic() - killed < 10:
        time.sleep(0.001)
    took = time.monotonic() - killed
    if runner is not None:
        runner.wait()
    return took


def watchdog_start(rounds: int) -> list[float]:
    """Seconds for the watchdog helper to start and exit on an immediately closed pipe."""
    times = []
    for _ in range(rounds):
        read_end, write_end = os.pipe()
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-P", "-m", "runjournal.cli.engine.watchdog", "--fd", str(read_end),
                                 "--owner", str(os.getpid())], pass_fds=(read_end,))
        os.close(read_end)
        os.close(write_end)
        proc.wait()
        times.append(time.monotonic() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for name, detach, ignore in (("attached", False, False), ("detached", True, False),
                                 ("ignores SIGTERM", False, True)):
        times = []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as base:
                times.append(one_kill(Path(base), detach, ignore))
        print(f"owner SIGKILL -> last step gone, {name:16}: median {statistics.median(times) * 1000:7.1f} ms, "
              f"max {max(times) * 1000:7.1f} ms (n={len(times)}, goal 1000 ms)")
    starts = watchdog_start(args.rounds)
    print(f"watchdog start+exit (per run, in parallel with the first step): median "
          f"{statistics.median(starts) * 1000:.1f} ms (n={len(starts)})")


if __name__ == "__main__":
    main()
