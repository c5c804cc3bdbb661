"""``runjournal events``: rows per second and peak memory over a journal of many runs.

    python benchmarks/events_table.py [RUNS] [EVENTS_PER_RUN]     (default 2000 runs of 50 events)

Builds the journal in a temporary directory (finished runs, written with the Python API,
no fsync), then times `runjournal events --jsonl > /dev/null` and `--csv`, each in a fresh
process, and reads the child's peak RSS. Memory should not grow with the number of runs:
the table streams one run at a time.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runjournal.journal.events import PlannedStep
from runjournal.journal.run import start_run


def build(root: Path, runs: int, events: int) -> int:
    items = [f"host-{n:03d}" for n in range((events - 4) // 2)]
    total = 0
    for _ in range(runs):
        with start_run("bench", [PlannedStep(name="fan", items=items)], root=root, durability="none") as run:
            run.step_started("fan", total=len(items))
            for done, item in enumerate(items):
                run.item_started("fan", item, done=done, total=len(items))
                run.item_ended("fan", item, "succeeded", done=done + 1, total=len(items), exit_code=0)
            run.step_succeeded("fan", done=len(items), total=len(items))
        total += 4 + 2 * len(items)
    return total


def measure(root: Path, fmt: str) -> tuple[float, float]:
    cli = Path(sys.executable).with_name("runjournal")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run([str(cli), "--root", str(root), "events", fmt], stdout=subprocess.DEVNULL, check=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    per_run = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "journal"
        rows = build(root, runs, per_run)
        subprocess.run([str(Path(sys.executable).with_name("runjournal")), "--root", str(root), "history", "-n", "1"],
                       stdout=subprocess.DEVNULL, check=True)  # warm the history index, as a user's journal is
        for fmt in ("--jsonl", "--csv"):
            seconds, peak_mb = measure(root, fmt)
            print(f"events {fmt}: runs={runs} rows={rows} seconds={seconds:.2f} rows_per_s={rows / seconds:,.0f} "
                  f"peak_rss_mb={peak_mb:.0f}")


if __name__ == "__main__":
    main()
