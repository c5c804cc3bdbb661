"""The PostgreSQL store at scale: ``history`` flat in total runs, against sqlite and JSONL, and ``prune`` of a month.

    python benchmarks/pg_history.py              # 100,000 runs x 20 events (~20 minutes on 2 cores)
    python benchmarks/pg_history.py --quick      # 10,000 runs
    python benchmarks/pg_history.py --runs 50000 --json results.json --keep

Builds two JSONL roots with :func:`benchmarks.fixtures.build` (the big one and one of 100 runs;
runs 5 minutes apart, so 100,000 runs span 12 months, over 10 workflows), starts a throw-away
PostgreSQL cluster (``tests/pgcluster.py``, default durability) and loads each root into a
database of its own with two ``COPY``s, as runjournal 0.2 databases upgraded in place or
imported by a projector-less writer look: every run's head and status recorded, no summary
folded yet. Then, each command a child process:

* cold: the first ``history --json`` on PostgreSQL (folds and saves every summary) and on
  JSONL (builds the index), once each;
* warm: PostgreSQL ``history --json`` against the sqlite3 "latest status per run" baseline of
  :mod:`benchmarks.baselines` (and JSONL), interleaved round after round;
* flat: ``history -n 20``, ``history --status failed -n 20`` and ``history bench-3 -n 20`` on
  the big database against the same on the 100-run database, interleaved; both databases
  have 5 live runs (writers holding their locks, in a child process) at the top;
* prune: ``prune --before`` the end of the first month, archiving to a JSONL directory, then
  the second month without an archive: each drops one partition; the other partitions' row
  counts are compared before and after.

Checks that both stores list the same runs with the same objects. ``--keep`` leaves the
cluster running and the fixtures on disk (their paths are printed) for profiling.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
import psycopg

from benchmarks import baselines, fixtures
from benchmarks.measure import REPO, Series, child_env, child_member, cli_argv, interleave, run_child
from runjournal.journal.postgres.schema import month_of, next_month
from runjournal.journal.postgres.store import PgStore
from runjournal.journal.status import TERMINAL_TYPES
from tests.pgcluster import ThrowawayCluster

EVENTS_PER_RUN = 20
MINUTES_APART = 5
WORKFLOWS = 10
LIVE_RUNS = 5
SMALL_RUNS = 100


def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def create_database(server_url: str, name: str) -> str:
    """A new database on the cluster; its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def load(url: str, runs_dir: Path) -> dict[str, float]:
    """Copy every run file into the database: each run's row (head, status, workflow, start; no summary), its lines."""
    store = PgStore(url)
    store.connection  # noqa: B018 - creates the schema
    files = sorted(runs_dir.glob("*.jsonl"))
    for month in sorted({m for m in (month_of(p.name) for p in files) if m}):
        store.query("SELECT rj_ensure_partition(%s)", (month,))
    store.close()
    start = time.perf_counter()
    events = 0
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        rows = []
        with cur.copy("COPY rj_events (run_id, seq, type, line) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "int4", "text", "bytea"])
            for path in files:
                run_id = path.name[: -len(".jsonl")]
                lines = path.read_bytes().split(b"\n")[:-1]
                objs = [orjson.loads(line) for line in lines]
                for obj, line in zip(objs, lines, strict=True):
                    copy.write_row((run_id, obj["seq"], obj["type"], line))
                events += len(lines)
                rows.append((run_id, objs[-1]["seq"], objs[-1]["h"], sum(len(line) + 1 for line in lines),
                             _status(objs), objs[0]["workflow"], objs[0]["ts"]))
        with cur.copy("COPY rj_runs (run_id, head_seq, head_hash, head_offset, received_at, status, workflow, "
                      "started_at) FROM STDIN") as copy:
            for run_id, seq, head, offset, status, workflow, ts in rows:
                copy.write_row((run_id, seq, head, offset, "2025-01-01T00:00:00Z", status, workflow, ts))
    seconds = time.perf_counter() - start
    vacuum(url)
    return {"runs": len(files), "events": events, "seconds": seconds, "rows_per_s": events / seconds}


def _status(objs: list[dict[str, Any]]) -> str:
    """The status writers record: the first terminal event's type, else ``running``."""
    return next((obj["type"] for obj in objs if obj["type"] in TERMINAL_TYPES), "running")


def vacuum(url: str) -> None:
    """``VACUUM ANALYZE``, as a long-lived database would be after autovacuum."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


LIVE_CODE = """
import sys
from runjournal.journal.postgres.store import PgStore
from runjournal.journal.run import start_run
from runjournal.projections.summary import PROJECTOR
store = PgStore(sys.argv[1], projector=PROJECTOR)
runs = [start_run("live", ["a"], store=store) for _ in range(int(sys.argv[2]))]
for run in runs:
    run.step_started("a")
print("ready", flush=True)
sys.stdin.read()
"""


def hold_live_runs(url: str, count: int) -> subprocess.Popen[bytes]:
    """A child process writing ``count`` runs, holding their locks until its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", LIVE_CODE, url, str(count)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, cwd=REPO, env=child_env())
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc


def partition_counts(url: str) -> dict[str, int]:
    """Rows per ``rj_events`` partition."""
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT tableoid::regclass::text, count(*) FROM rj_events GROUP BY 1").fetchall())


def listing(argv: list[str], env: dict[str, str]) -> list[dict[str, Any]]:
    """The objects ``history --json`` prints (raises on an error exit)."""
    result = run_child(argv, env=env, capture=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.decode()[-500:]}")
    return orjson.loads(result.stdout)


def once(argv: list[str], env: dict[str, str]) -> Series:
    """One timed run of ``argv``."""
    value, rss = child_member(argv, env)()
    return Series([value], [rss] if rss else [])


def measure(runs: int, repeats: int, keep: bool) -> dict[str, Any]:
    """Build, load, time and check; returns everything the report shows."""
    work = Path(tempfile.mkdtemp(prefix="pg-scale-", dir=os.environ.get("BENCH_TMP")))
    cluster = ThrowawayCluster(Path(tempfile.mkdtemp(prefix="pg-scale-cluster-")))  # its own: the server user enters it
    env = child_env()
    live: list[subprocess.Popen[bytes]] = []
    try:
        t0 = time.perf_counter()
        big = fixtures.build(work / "big", runs, EVENTS_PER_RUN, minutes_apart=MINUTES_APART, workflows=WORKFLOWS)
        small = fixtures.build(work / "small", SMALL_RUNS, EVENTS_PER_RUN, minutes_apart=MINUTES_APART,
                               workflows=WORKFLOWS)
        log(f"fixtures: {runs:,} + {SMALL_RUNS} runs in {time.perf_counter() - t0:.1f} s ({work})")
        server = cluster.start()
        urls = {"big": create_database(server, "big"), "small": create_database(server, "small")}
        loaded = {name: load(url, (big if name == "big" else small).runs_dir) for name, url in urls.items()}
        log(f"load: {loaded['big']['events']:,} events in {loaded['big']['seconds']:.1f} s")
        pg = {name: [*cli_argv(), "--root", str(work / "local"), "--store", url, "history"] for name, url in urls.items()}
        jl = [*cli_argv(), "--root", str(big.root), "history"]
        series: dict[str, Series] = {"pg_cold": once([*pg["big"], "--json"], env)}
        log(f"cold PG history: {series['pg_cold'].median:.1f} s")
        series["jsonl_cold"] = once([*jl, "--json"], env)
        log(f"cold JSONL history: {series['jsonl_cold'].median:.1f} s")
        vacuum(urls["big"])
        sqlite_db = work / "baseline.sqlite"
        db = baselines.sqlite_connect(sqlite_db)
        baselines.sqlite_load(db, big.runs_dir)
        db.close()
        checks = _check(runs, listing([*pg["big"], "--json"], env), listing([*jl, "--json"], env))
        live = [hold_live_runs(url, LIVE_RUNS) for url in urls.values()]
        sqlite_argv = [sys.executable, str(REPO / "benchmarks" / "baselines.py"), "sqlite-history", str(sqlite_db)]
        series |= interleave({"pg_json": child_member([*pg["big"], "--json"], env),
                              "sqlite": child_member(sqlite_argv, env),
                              "jsonl_json": child_member([*jl, "--json"], env)}, times=repeats, budget=900.0)
        flat = {}
        for case, args in {"n20": ["-n", "20"], "failed": ["--status", "failed", "-n", "20"],
                           "workflow": ["bench-3", "-n", "20"]}.items():
            flat[f"{case}_big"] = child_member([*pg["big"], *args], env)
            flat[f"{case}_small"] = child_member([*pg["small"], *args], env)
        series |= interleave(flat, times=max(repeats, 7), budget=600.0)
        n20 = run_child([*pg["big"], "-n", "20"], env=env, capture=True).stdout.count(b"\n")
        checks.append((f"history -n 20 prints 20 runs (+ header): {n20} lines", n20 == 21))
        for proc in live:
            proc.stdin.close()  # type: ignore[union-attr]
            proc.wait(timeout=60)
        live = []
        prune_report = _prune(urls["big"], work, env, checks)
        return {"runs": runs, "events_per_run": EVENTS_PER_RUN, "load": loaded["big"], "series": series,
                "checks": checks, "prune": prune_report,
                "kept": {"cluster": str(cluster.base_dir), "urls": urls, "root": str(big.root)} if keep else None}
    finally:
        for proc in live:
            proc.kill()
        if not keep:
            cluster.stop()
            shutil.rmtree(cluster.base_dir, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)


def _check(runs: int, pg: list[dict[str, Any]], jsonl: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    strip = [{k: v for k, v in o.items() if k != "path"} for o in pg]
    same = strip == [{k: v for k, v in o.items() if k != "path"} for o in jsonl]
    return [(f"PG objects = runs ({len(pg):,} vs {runs:,})", len(pg) == runs),
            ("PG and JSONL list the same objects in the same order (path aside)", same)]


def _prune(url: str, work: Path, env: dict[str, str], checks: list[tuple[str, bool]]) -> dict[str, Any]:
    """Prune the first month (archiving to JSONL), then the second (no archive); check what went and what stayed."""
    report = {}
    first = fixtures.run_id_for(0)[:6]
    for label, month, archive in (("archive", first, True), ("plain", next_month(first), False)):
        before = partition_counts(url)
        until = f"{next_month(month)[:4]}-{next_month(month)[4:]}-01T00:00:00+00:00"
        argv = [*cli_argv(), "--root", str(work / "local"), "--store", url, "prune", "--before", until, "--json"]
        if archive:
            argv += ["--archive", str(work / "attic")]
        result = run_child(argv, env=env, capture=True)
        outcomes = [r["outcome"] for r in orjson.loads(result.stdout)["runs"]] if result.returncode == 0 else []
        after = partition_counts(url)
        gone = f"rj_events_m{month}"
        rest_same = {k: v for k, v in before.items() if k != gone} == after
        checks.append((f"prune {month} ({label}): {len(outcomes):,} runs pruned, partition dropped, rest untouched",
                       result.returncode == 0 and set(outcomes) == {"pruned"} and gone not in after and rest_same))
        report[label] = {"month": month, "runs": len(outcomes), "seconds": result.seconds,
                         "events_dropped": before.get(gone, 0)}
    return report


LABELS = {
    "pg_cold": "PG `history --json`, cold (every summary folded and saved)",
    "jsonl_cold": "JSONL `history --json`, first call (index build)",
    "pg_json": "PG `history --json`, warm",
    "sqlite": "sqlite3 latest status per run (baselines.py)",
    "jsonl_json": "JSONL `history --json`, warm",
    "n20_big": "PG `history -n 20`, big", "n20_small": "PG `history -n 20`, 100 runs",
    "failed_big": "PG `history --status failed -n 20`, big", "failed_small": "... at 100 runs",
    "workflow_big": "PG `history bench-3 -n 20`, big", "workflow_small": "... at 100 runs",
}

GOALS = [("pg_json", "sqlite", 1.0, "PG history --json <= sqlite baseline"),
         ("pg_cold", "jsonl_cold", 2.0, "PG cold history <= 2x JSONL cold"),
         ("n20_big", "n20_small", 1.5, "history -n 20: big <= 1.5x 100 runs"),
         ("failed_big", "failed_small", 1.5, "--status failed -n 20: big <= 1.5x 100 runs"),
         ("workflow_big", "workflow_small", 1.5, "WORKFLOW -n 20: big <= 1.5x 100 runs")]


def _t(value: float) -> str:
    return f"{value:.2f} s" if value >= 1 else f"{value * 1000:.0f} ms"


def render(report: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    s = report["series"]
    lines = [f"### PostgreSQL at {report['runs']:,} runs x {report['events_per_run']} events", "",
             "| case | median | min | max | n | peak RSS |", "|---|---|---|---|---|---|"]
    for key, label in LABELS.items():
        rss = f"{max(s[key].rss_kb) / 1024:.0f} MB" if s[key].rss_kb else "-"
        lines.append(f"| {label} | {_t(s[key].median)} | {_t(min(s[key].values))} | {_t(max(s[key].values))} "
                     f"| {len(s[key].values)} | {rss} |")
    lines += ["", "| goal | ratio (medians) | verdict |", "|---|---|---|"]
    for case, base, limit, text in GOALS:
        ratio = s[case].median / s[base].median
        lines.append(f"| {text} | {ratio:.2f}x | {'ok' if ratio <= limit else 'MISS'} |")
    lines += ["", "| prune | runs | events dropped | time |", "|---|---|---|---|"]
    for label, p in report["prune"].items():
        lines.append(f"| month {p['month']} ({label}) | {p['runs']:,} | {p['events_dropped']:,} | {_t(p['seconds'])} |")
    ld = report["load"]
    lines += ["", f"load: {ld['events']:,} events, {ld['runs']:,} runs in {ld['seconds']:.1f} s", "",
              "| check | ok |", "|---|---|"]
    lines += [f"| {name} | {'ok' if ok else 'FAIL'} |" for name, ok in report["checks"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 if a correctness check failed."""
    parser = argparse.ArgumentParser(prog="benchmarks/pg_history.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the big fixture (default 100,000)")
    parser.add_argument("--quick", action="store_true", help="10,000 runs, 3 rounds")
    parser.add_argument("--repeats", type=int, help="warm rounds (default 5, --quick 3)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running and the fixtures on disk")
    args = parser.parse_args(argv)
    runs = 10_000 if args.quick else args.runs
    report = measure(runs, args.repeats or (3 if args.quick else 5), args.keep)
    print(render(report))
    if report["kept"]:
        print(f"\nkept: {report['kept']}; stop with: python tests/pgcluster.py stop {report['kept']['cluster']}")
    if args.json:
        out = {**report, "series": {k: {"label": LABELS[k], **v.summary()} for k, v in report["series"].items()},
               "checks": [{"check": c, "ok": ok} for c, ok in report["checks"]]}
        Path(args.json).write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    return 0 if all(ok for _, ok in report["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
