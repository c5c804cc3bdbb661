"""What an append costs PostgreSQL writers (NOTIFY, the summary row), and what NOTIFY buys ``follow``.

    python benchmarks/pg_notify.py            # 8 writers x 300 synchronous appends, 5 rounds; 200 follow appends
    python benchmarks/pg_notify.py --quick    # 100 appends, 3 rounds, 50 follow appends

A NOTIFY makes its transaction's commit take a lock that every notifying commit in the
cluster queues on, so writers that notify on every append slow each other down. runjournal's
append notifies only when someone follows the run (holds its watch lock). Ways of
appending, each 8 writer processes (each its own run, synchronous commit), interleaved
round after round:

* ``ours``: the append as shipped (line, head, summary row by the writer's fold), nobody following;
* ``no-notify``: the same statement with the notify part removed: the baseline of the goal;
* ``always``: the same statement notifying on every append (what runjournal 0.2's trigger did);
* ``followed``: as shipped, with a follower on every run (every append notifies);
* ``no-summary``: as shipped, by a writer given no projector (line and head only);
* ``insert-only``: runjournal 0.2's fenced insert alone (no head, no summary, no notify): what
  the summary row and the anchor cost on top of the line.

Then follow latency: ``runjournal follow RUN --jsonl`` in a child process while this process
appends a ``step-progress`` every 30 ms; the time from an append's return to its line on the
follower's stdout, with notifications (as shipped) and without (the follower polls, every 0.5 s).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
import psycopg

from benchmarks.measure import REPO, child_env, cli_argv
from runjournal.journal.postgres import schema
from tests.pgcluster import ThrowawayCluster

WRITERS = 8
NOTIFY_PART = "(SELECT count(pg_notify(%(channel)s, %(run_id)s)) FROM lk, run WHERE lk.watched)"
INSERT_ONLY = """
WITH ins AS (
    INSERT INTO rj_events (run_id, seq, type, line)
    SELECT %(run_id)s, %(seq)s, %(type)s, %(line)s
    WHERE EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
                  AND classid = %(classid)s::bigint::oid AND objid = %(objid)s::bigint::oid AND objsubid = 1)
    RETURNING 1)
SELECT (SELECT count(*) FROM ins), true, 0
"""
VARIANTS = {
    "ours": lambda sql: sql,
    "no-notify": lambda sql: sql.replace(NOTIFY_PART, "0"),
    "always": lambda sql: sql.replace("WHERE lk.watched)", ")"),
    "followed": lambda sql: sql,
    "no-summary": lambda sql: sql,
    "insert-only": lambda sql: INSERT_ONLY,
}


def writer_main(url: str, variant: str, count: int, barrier: Any, results: Any) -> None:
    """One writer process: its run (followed, for ``followed``), ``count`` synchronous appends once all are ready."""
    from runjournal.journal.postgres import writer as writer_module
    from runjournal.journal.postgres.store import PgStore
    from runjournal.journal.run import start_run
    from runjournal.projections.summary import PROJECTOR

    for name in ("APPEND", "APPEND_FOLDED", "APPEND_FOLDED_FINAL"):
        setattr(writer_module, name, VARIANTS[variant](getattr(schema, name)))
    store = PgStore(url, projector=None if variant == "no-summary" else PROJECTOR)
    run = start_run("bench-notify", [f"s{i}" for i in range(count)], store=store, durability="state")
    follower = psycopg.connect(url, autocommit=True) if variant == "followed" else None
    if follower is not None:
        follower.execute("SELECT pg_advisory_lock_shared(%s)", (schema.lock_key("watch", run.run_id),))
        follower.execute(f'LISTEN "{schema.watch_channel(run.run_id)}"')
    barrier.wait(120)
    start = time.perf_counter()
    for i in range(count):
        run.step_started(f"s{i}") if i % 2 == 0 else run.step_succeeded(f"s{i - 1}")
    results.put(count / (time.perf_counter() - start))
    run.succeed()
    run.close()
    if follower is not None:
        follower.close()


def throughput(url: str, variant: str, count: int) -> float:
    """Total appends per second of :data:`WRITERS` writer processes appending ``count`` events each."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(WRITERS), ctx.Queue()
    procs = [ctx.Process(target=writer_main, args=(url, variant, count, barrier, results)) for _ in range(WRITERS)]
    for proc in procs:
        proc.start()
    rates = [results.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(60)
    return sum(rates)


def follow_latency(url: str, appends: int, notify: bool, work: Path) -> list[float]:
    """Seconds from each append's return to its line on a follower's stdout."""
    from runjournal.journal.postgres import writer as writer_module
    from runjournal.journal.postgres.store import PgStore
    from runjournal.journal.run import start_run
    from runjournal.projections.summary import PROJECTOR

    saved = {name: getattr(writer_module, name) for name in ("APPEND", "APPEND_FOLDED", "APPEND_FOLDED_FINAL")}
    for name, sql in saved.items():
        setattr(writer_module, name, sql if notify else sql.replace(NOTIFY_PART, "0"))
    run = start_run("bench-follow", [f"s{i}" for i in range(appends)], store=PgStore(url, projector=PROJECTOR))
    follower = subprocess.Popen([*cli_argv(), "--root", str(work), "--store", url, "follow", run.run_id, "--jsonl"],
                                stdout=subprocess.PIPE, cwd=REPO, env=child_env())
    seen: dict[int, float] = {}

    def read() -> None:
        for line in follower.stdout:  # type: ignore[union-attr]
            seen[orjson.loads(line)["seq"]] = time.perf_counter()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    _wait(lambda: 0 in seen)
    time.sleep(0.5)  # the follower is listening
    sent: dict[int, float] = {}
    for i in range(appends):
        event = run.step_started(f"s{i}")
        sent[event.seq] = time.perf_counter()
        time.sleep(0.03)
    run.succeed()
    run.close()
    follower.wait(60)
    reader.join(10)
    for name, sql in saved.items():
        setattr(writer_module, name, sql)
    return [seen[seq] - at for seq, at in sent.items() if seq in seen]


def _wait(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("the follower printed nothing")
        time.sleep(0.01)


def _q(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    """Measure and print the tables."""
    parser = argparse.ArgumentParser(prog="benchmarks/pg_notify.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    count, rounds, follows = (100, 3, 50) if args.quick else (300, 5, 200)
    cluster = ThrowawayCluster(Path(tempfile.mkdtemp(prefix="pg-notify-cluster-")))
    work = Path(tempfile.mkdtemp(prefix="pg-notify-"))
    try:
        url = cluster.start()
        rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(rounds):
            for variant in VARIANTS:
                rates[variant].append(throughput(url, variant, count))
        latency = {way: follow_latency(url, follows, way == "notify", work) for way in ("notify", "poll")}
    finally:
        cluster.stop()
        shutil.rmtree(cluster.base_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(rates["no-notify"])
    print(f"### {WRITERS} writers x {count} synchronous appends, {rounds} rounds (median [min-max] appends/s)\n")
    print("| append | appends/s | / no-notify |\n|---|---|---|")
    for variant, values in rates.items():
        med = statistics.median(values)
        print(f"| {variant} | {med:,.0f} [{min(values):,.0f}-{max(values):,.0f}] | {med / base:.2f}x |")
    print(f"\ngoal: ours >= 0.8x no-notify: {'ok' if statistics.median(rates['ours']) >= 0.8 * base else 'MISS'}\n")
    print("| follow | median | p99 | n |\n|---|---|---|---|")
    for way, values in latency.items():
        print(f"| {way} | {statistics.median(values) * 1000:.1f} ms | {_q(values, 0.99) * 1000:.1f} ms | {len(values)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
