"""Extreme sizes (issue 13): a 100,000-item workflow loaded and started, and a 500,000-step journal read.

::

    python benchmarks/extreme.py                 # both, with the sizes of the goal
    python benchmarks/extreme.py --steps 100000  # a smaller journal

Prints, for each case, the wall time and the peak RSS (GNU time) of the real console script:

* ``start 100k-item workflow``: ``runjournal run wf.toml`` until it prints the run id (the
  workflow is loaded, validated, and its ``started`` plus ``items-planned`` lines are
  written); the run is then stopped. Goal: 2 s.
* ``history`` and ``show`` of one run of N unplanned steps, each recorded by one
  ``step-progress`` line (state ``skipped``), N + 1 lines in all, whose writer is dead: the
  first ``history`` folds it and records it ``abandoned``; the second folds it again (it
  grew by that line; a run this large keeps no fold state in the index); ``show`` reads it
  once. Goal at N = 500,000: 10 s and 300 MB each.

The journal is generated with real hash chains (lines built from the writer's own
encoding of one event, then re-chained), without fsync.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.fixtures import identity  # noqa: E402
from benchmarks.measure import GNU_TIME, child_env, cli_argv, run_child  # noqa: E402
from runjournal.journal.codec import chain_hash, encode_line  # noqa: E402
from runjournal.journal.events import Started, StepProgress  # noqa: E402
from runjournal.journal.records import GENESIS_HASH  # noqa: E402

RUN_ID = "20250101T000000000000Z-b16a"
BASE = datetime(2025, 1, 1, tzinfo=UTC)


def build_journal(root: Path, steps: int) -> Path:
    """A run of ``steps`` unplanned steps (one ``skipped`` line each) by a dead writer, without a terminal."""
    runs = root / "runs"
    runs.mkdir(parents=True, mode=0o700)
    started = Started(run_id=RUN_ID, seq=0, ts=BASE, workflow="huge", steps=[], writer=identity(),
                      heartbeat_interval=30.0)
    first, prev = encode_line(started, GENESIS_HASH)
    template, _ = encode_line(StepProgress(run_id=RUN_ID, seq=1, ts=BASE, step="s", state="skipped"), GENESIS_HASH)
    body = template[: template.rindex(b',"h":"')].decode()
    path = runs / f"{RUN_ID}.jsonl"
    with open(path, "wb") as f:
        f.write(first)
        seq, chunk = 1, []
        stamp = BASE.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for n in range(steps):
            ts = (BASE + timedelta(microseconds=seq)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            line = (body.replace('"seq":1', f'"seq":{seq}', 1).replace(stamp, ts, 1)
                    .replace('"step":"s"', f'"step":"step-{n:07d}"', 1))
            data = line.encode()
            prev = chain_hash(prev, data)
            chunk.append(data + b',"h":"' + prev.encode() + b'"}\n')
            seq += 1
            if len(chunk) > 20_000:
                f.write(b"".join(chunk))
                chunk = []
        f.write(b"".join(chunk))
    return path


def build_workflow(directory: Path, items: int) -> Path:
    """A workflow file whose one fan-out step has ``items`` items (about 1.3 MB at 100,000)."""
    path = directory / "wide.toml"
    names = ",\n".join(f'  "host-{n:06d}.example.internal"' for n in range(items))
    path.write_text(f'name = "wide"\n\n[[steps]]\nname = "patch"\nrun = "true"\nforeach = [\n{names}\n]\n')
    return path


def measure_start(root: Path, workflow: Path) -> tuple[float, int]:
    """Seconds from spawning ``runjournal run`` until it prints the run id, and its peak RSS (kB) by then."""
    start = time.perf_counter()
    proc = subprocess.Popen([*cli_argv(), "--root", str(root), "run", str(workflow)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=child_env())
    proc.stdout.readline()  # type: ignore[union-attr]
    seconds = time.perf_counter() - start
    rss = _peak_rss(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    return seconds, rss


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def measure_read(root: Path, *command: str) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds (user + system), peak RSS (kB) and exit code of one read command on ``root``.

    CPU time is printed next to wall time because on a shared machine the wall time also
    counts the time other processes had the cores.
    """
    fd, report = tempfile.mkstemp(prefix="rj-time-")
    os.close(fd)
    argv = [GNU_TIME, "-f", "%U %S %M", "-o", report, *cli_argv(), "--root", str(root), *command]
    result = run_child(argv, env=child_env())
    user, system, rss = Path(report).read_text().split()[-3:]
    os.unlink(report)
    return result.seconds, float(user) + float(system), int(rss), result.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=500_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rj-extreme-") as tmp:
        base = Path(tmp)
        seconds, rss = measure_start(base / "wide-root", build_workflow(base, args.items))
        print(f"start {args.items:,}-item workflow: {seconds:.2f} s, peak RSS {rss / 1024:.0f} MB (goal 2 s)",
              flush=True)
        t0 = time.perf_counter()
        path = build_journal(base / "deep-root", args.steps)
        print(f"built a {args.steps:,}-step journal: {path.stat().st_size / 1e6:.0f} MB, "
              f"{args.steps + 1:,} lines, in {time.perf_counter() - t0:.0f} s", flush=True)
        for command in (("history",), ("history",), ("show", RUN_ID)):
            seconds, cpu, rss, code = measure_read(base / "deep-root", *command)
            print(f"{command[0]:<8} of a {args.steps:,}-step run: {seconds:.2f} s wall, {cpu:.2f} s CPU, "
                  f"peak RSS {rss / 1024:.0f} MB, exit {code} (goal 10 s, 300 MB)", flush=True)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)


if __name__ == "__main__":
    main()
