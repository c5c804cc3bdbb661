"""Append throughput of the two stores (JSONL files and PostgreSQL) with concurrent writer processes.

    python benchmarks/stores.py                 # starts a throw-away PostgreSQL cluster (default settings)
    python benchmarks/stores.py --quick         # 300 events per writer instead of 2,000
    python benchmarks/stores.py --store-url postgresql://user@host/db --json results.json

Each case starts 1 or 8 writer processes (spawned), each with its own run. They create their
run, wait on a barrier, append N events, then end the run. Two kinds of event:

* ``state``: ``step_started``/``step_succeeded`` pairs with durability ``"state"``: every
  append is synced (JSONL: fdatasync; PostgreSQL: synchronous commit).
* ``heartbeat``: heartbeats with durability ``"none"``: nothing is synced (PostgreSQL:
  ``synchronous_commit = off``).

Wall time runs from the barrier's release to the last writer's last append (monotonic clock,
shared by the processes); "per writer" is the mean of each writer's own rate. Latency
percentiles pool every append of every writer. Each run is read back afterwards and must
hold exactly N + 2 events (``started``, N, ``succeeded``).
The cluster this script starts keeps PostgreSQL's default durability (fsync on,
synchronous_commit on); the JSONL runs go to a temporary directory on the same disk.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

from runjournal.journal.postgres.schema import redact  # noqa: E402
from runjournal.journal.run import Run, start_run  # noqa: E402
from runjournal.journal.stores import open_store  # noqa: E402
from runjournal.projections.summary import PROJECTOR  # noqa: E402

KINDS = {"state": "state", "heartbeat": "none"}
"""Event kind -> the writer's durability."""
WRITER_COUNTS = (1, 8)
BARRIER_TIMEOUT = 120.0


@dataclass
class Case:
    """One measured case: a store, an event kind, a number of writer processes, and what came out."""

    store: str
    kind: str
    writers: int
    events_per_writer: int
    wall_s: float = 0.0
    total_per_s: float = 0.0
    per_writer_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def durability(self) -> str:
        """The durability the writers used."""
        return KINDS[self.kind]


# ---- the writer process --------------------------------------------------------------------


def writer_main(target: str, kind: str, count: int, barrier: Any, results: Any) -> None:
    """One writer process: create a run, wait on ``barrier``, append ``count`` events, report to ``results``."""
    try:
        store = open_store(target, projector=PROJECTOR)  # as the CLI opens it: PG writers keep the summary row
        steps = [f"s{i:05d}" for i in range((count + 1) // 2)] if kind == "state" else ["s"]
        run = start_run("bench-stores", steps, store=store, durability=KINDS[kind])
    except Exception:  # noqa: BLE001 - reported to the parent, which prints it
        barrier.abort()
        results.put({"error": traceback.format_exc()})
        return
    with run:
        try:
            barrier.wait(BARRIER_TIMEOUT)
            start, end, latencies = _append_all(run, kind, count, steps)
        except Exception:
            results.put({"run_id": run.run_id, "error": traceback.format_exc()})
            raise
    results.put({"run_id": run.run_id, "start": start, "end": end, "latencies": latencies})


def _append_all(run: Run, kind: str, count: int, steps: list[str]) -> tuple[float, float, list[float]]:
    """Append ``count`` events of ``kind``; the start and end times and each append's latency (s)."""
    latencies: list[float] = []
    clock = time.perf_counter
    start = clock()
    for i in range(count):
        before = clock()
        if kind == "heartbeat":
            run.heartbeat()
        elif i % 2 == 0:
            run.step_started(steps[i // 2])
        else:
            run.step_succeeded(steps[i // 2])
        latencies.append(clock() - before)
    return start, clock(), latencies


# ---- running a case ------------------------------------------------------------------------


def run_case(ctx: Any, target: str, case: Case) -> Case:
    """Start ``case.writers`` processes against ``target``, collect their timings, check the runs' lengths."""
    barrier = ctx.Barrier(case.writers)
    results = ctx.Queue()
    procs = [ctx.Process(target=writer_main, args=(target, case.kind, case.events_per_writer, barrier, results))
             for _ in range(case.writers)]
    for proc in procs:
        proc.start()
    reports = [_next_report(results, procs) for _ in procs]
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            case.errors.append(f"writer pid {proc.pid} exited with code {proc.exitcode}")
    case.errors += [r["error"].strip() for r in reports if r and "error" in r]
    good = [r for r in reports if r and "error" not in r]
    if good and len(good) == case.writers:
        _summarise(case, good)
    case.errors += _check_lengths(target, [r["run_id"] for r in good], case.events_per_writer + 2)
    return case


def _next_report(results: Any, procs: list[Any]) -> dict[str, Any] | None:
    """The next writer report; None if every writer is gone without one."""
    while True:
        try:
            return results.get(timeout=1.0)
        except Exception:  # noqa: BLE001 - queue.Empty
            if not any(p.is_alive() for p in procs) and results.empty():
                return None


def _summarise(case: Case, reports: list[dict[str, Any]]) -> None:
    """Throughput from barrier release to the last append; latency percentiles over every append."""
    wall = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    latencies = sorted(x for r in reports for x in r["latencies"])
    total = case.writers * case.events_per_writer
    case.wall_s = wall
    case.total_per_s = total / wall
    case.per_writer_per_s = statistics.mean(case.events_per_writer / (r["end"] - r["start"]) for r in reports)
    case.p50_ms = _quantile(latencies, 0.50) * 1000
    case.p99_ms = _quantile(latencies, 0.99) * 1000


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of a sorted list."""
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _check_lengths(target: str, run_ids: list[str], expected: int) -> list[str]:
    """Read every run back: it must hold ``expected`` events and end with ``succeeded``."""
    store = open_store(target)
    problems = []
    try:
        for run_id in run_ids:
            events = list(store.read(run_id).events())
            if len(events) != expected or events[-1].type != "succeeded":
                last = events[-1].type if events else None
                problems.append(f"run {run_id}: {len(events)} events (expected {expected}), last {last}")
    finally:
        getattr(store, "close", lambda: None)()
    return problems


# ---- the stores ----------------------------------------------------------------------------


def start_cluster() -> tuple[Any, str]:
    """A throw-away PostgreSQL cluster with default durability settings, started; and its URL."""
    from tests.pgcluster import ThrowawayCluster

    cluster = ThrowawayCluster(Path(tempfile.mkdtemp(prefix="rj-bench-pg-", dir="/tmp")))
    try:
        return cluster, cluster.start()
    except BaseException:
        shutil.rmtree(cluster.base_dir, ignore_errors=True)
        raise


def server_settings(url: str) -> dict[str, str]:
    """The server's durability settings, printed with the results so nobody mistakes an fsync=off run."""
    from runjournal.journal.postgres.conn import connect

    with connect(url, application_name="runjournal bench") as conn:
        return {name: conn.execute(f"SHOW {name}").fetchone()[0]
                for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method", "full_page_writes")}


def measure_all(targets: dict[str, str], count: int, log: Any) -> list[Case]:
    """Every case: each store x each event kind x 1 and 8 writers."""
    ctx = mp.get_context("spawn")
    cases = []
    for kind in KINDS:
        for writers in WRITER_COUNTS:
            for name, target in targets.items():
                log(f"{name}, {kind}, {writers} writer(s) x {count} events ...")
                case = run_case(ctx, target, Case(name, kind, writers, count))
                for error in case.errors:
                    log(f"  ERROR: {error}")
                cases.append(case)
    return cases


# ---- output --------------------------------------------------------------------------------


def render_table(cases: list[Case]) -> str:
    """The results as a Markdown table."""
    header = ["store", "events (durability)", "writers", "events/s total", "events/s per writer",
              "p50 append", "p99 append", "wall", "check"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in cases:
        check = "ok" if not c.errors else f"FAILED ({len(c.errors)} problem(s), see stderr)"
        cells = [c.store, f"{c.kind} ({c.durability})", str(c.writers), f"{c.total_per_s:,.0f}",
                 f"{c.per_writer_per_s:,.0f}", f"{c.p50_ms:.3f} ms", f"{c.p99_ms:.3f} ms", f"{c.wall_s:.3f} s", check]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report(args: argparse.Namespace, targets: dict[str, str], cases: list[Case], elapsed: float) -> dict[str, Any]:
    return {
        "mode": "quick" if args.quick else "full",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": mp.cpu_count(),
        "seconds": elapsed,
        "postgres": redact(targets["postgres"]) if args.store_url else "throw-away cluster (default settings)",
        "cases": [{**asdict(c), "durability": c.durability} for c in cases],
    }


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmarks/stores.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 events per writer (a smoke test)")
    parser.add_argument("--events", type=int, metavar="N", help="events per writer (default 2000, --quick 300)")
    parser.add_argument("--store-url", metavar="URL", help="use this PostgreSQL server instead of starting one")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run every case, print the table; exit 1 if a store failed or a run came back wrong."""
    args = _parser().parse_args(argv)
    count = args.events or (300 if args.quick else 2000)
    jsonl_dir = Path(tempfile.mkdtemp(prefix="rj-bench-jsonl-", dir="/tmp"))
    cluster = None
    started = time.perf_counter()
    try:
        if args.store_url:
            url = args.store_url
        else:
            cluster, url = start_cluster()
        targets = {"jsonl": str(jsonl_dir), "postgres": url}
        settings = server_settings(url)
        cases = measure_all(targets, count, _log)
    finally:
        if cluster is not None:
            cluster.stop()
            shutil.rmtree(cluster.base_dir, ignore_errors=True)
        shutil.rmtree(jsonl_dir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    print(render_table(cases))
    print("\nPostgreSQL: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    print(f"{'quick' if args.quick else 'full'} mode, {count} events per writer, {elapsed:.0f} s, "
          f"{platform.python_implementation()} {platform.python_version()}, {mp.cpu_count()} CPUs; "
          f"command: python benchmarks/stores.py" + (" --quick" if args.quick else "")
          + (f" --events {args.events}" if args.events else "")
          + (f" --store-url {redact(args.store_url)}" if args.store_url else ""))
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(_report(args, targets, cases, elapsed) | {"server_settings": settings}, option=orjson.OPT_INDENT_2))
    return 1 if any(c.errors for c in cases) else 0


if __name__ == "__main__":
    sys.exit(main())
