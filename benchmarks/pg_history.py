"""``history`` on the PostgreSQL store next to the JSONL store, on the same runs.

    python benchmarks/pg_history.py              # 100,000 runs x 20 events (the history benchmark's shape)
    python benchmarks/pg_history.py --quick      # 10,000 runs
    python benchmarks/pg_history.py --runs 50000 --json results.json --keep

Builds a JSONL root with :func:`benchmarks.fixtures.build`, starts a throw-away PostgreSQL
cluster (``tests/pgcluster.py``, default durability) and loads the same runs into it with one
COPY of ``rj_runs`` and one of ``rj_events`` (the notify trigger is disabled during the load,
then re-enabled; ``VACUUM ANALYZE`` afterwards). Then times, as child processes:
``history --json`` cold (``rj_folds`` empty, once), ``history --json`` warm on both stores and
``history -n 20`` warm on PostgreSQL, interleaved round after round. Checks that both stores
list the same runs with the same status counts. ``--keep`` leaves the cluster running and the
fixture on disk (their paths are printed) for profiling.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
import psycopg

from benchmarks import fixtures
from benchmarks.measure import (
    Series,
    child_env,
    child_member,
    cli_argv,
    interleave,
    run_child,
)
from runjournal.journal.postgres.store import PgStore
from tests.pgcluster import ThrowawayCluster

EVENTS_PER_RUN = 20  # benchmarks.cases.Config.events_per_run: the JSONL history benchmark's shape


def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def load(url: str, runs_dir: Path) -> dict[str, float]:
    """Copy every run file of ``runs_dir`` into the database: one COPY per table, one transaction."""
    store = PgStore(url)
    store.connection  # noqa: B018 - creates the schema
    store.close()
    files = sorted(runs_dir.glob("*.jsonl"))
    start = time.perf_counter()
    events = 0
    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE rj_events DISABLE TRIGGER rj_events_notify")
        with conn.cursor() as cur:
            with cur.copy("COPY rj_runs (run_id) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["text"])
                for path in files:
                    copy.write_row((path.name[: -len(".jsonl")],))
            with cur.copy("COPY rj_events (run_id, seq, type, line) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["text", "int4", "text", "bytea"])
                for path in files:
                    run_id = path.name[: -len(".jsonl")]
                    for line in path.read_bytes().split(b"\n")[:-1]:
                        obj = orjson.loads(line)
                        copy.write_row((run_id, obj["seq"], obj["type"], line))
                        events += 1
        conn.execute("ALTER TABLE rj_events ENABLE TRIGGER rj_events_notify")
    seconds = time.perf_counter() - start
    vacuum(url)
    return {"runs": len(files), "events": events, "seconds": seconds, "rows_per_s": events / seconds,
            "vacuum_s": time.perf_counter() - start - seconds}


def vacuum(url: str, *tables: str) -> None:
    """``VACUUM ANALYZE`` (the whole database, or ``tables``), as a long-lived database would be after autovacuum."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE " + ", ".join(tables))


def sizes(url: str) -> dict[str, int]:
    """``pg_total_relation_size`` of each table, and the row count of ``rj_folds``."""
    with psycopg.connect(url) as conn:
        out = {t: conn.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0]
               for t in ("rj_runs", "rj_events", "rj_folds")}
        out["rj_folds_rows"] = conn.execute("SELECT count(*) FROM rj_folds").fetchone()[0]
    return out


def listing(argv: list[str], env: dict[str, str]) -> list[dict[str, Any]]:
    """The objects ``history --json`` prints (raises on an error exit)."""
    result = run_child(argv, env=env, capture=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.decode()[-500:]}")
    return orjson.loads(result.stdout)


def check(runs: int, pg: list[dict[str, Any]], jsonl: list[dict[str, Any]], n20: int) -> list[tuple[str, bool]]:
    """Both stores list every run once, with the same statuses (and the same objects, ``path`` aside)."""
    pg_status = collections.Counter(o["status"] for o in pg)
    jsonl_status = collections.Counter(o["status"] for o in jsonl)
    strip = [{k: v for k, v in o.items() if k != "path"} for o in pg]
    same = strip == [{k: v for k, v in o.items() if k != "path"} for o in jsonl]
    return [
        (f"PG objects = runs ({len(pg):,} vs {runs:,})", len(pg) == runs),
        (f"PG objects = JSONL objects ({len(pg):,} vs {len(jsonl):,})", len(pg) == len(jsonl)),
        (f"status counts equal (PG {dict(pg_status)}, JSONL {dict(jsonl_status)})", pg_status == jsonl_status),
        ("same objects in the same order (path aside)", same),
        (f"history -n 20 prints 20 runs (+ header): {n20} lines", n20 == 21),
    ]


def measure(runs: int, repeats: int, keep: bool) -> dict[str, Any]:
    """Build, load, time and check; returns everything the report shows."""
    work = Path(tempfile.mkdtemp(prefix="pg-history-"))
    cluster = ThrowawayCluster(Path(tempfile.mkdtemp(prefix="pg-history-cluster-")))
    env = child_env()
    try:
        t0 = time.perf_counter()
        fx = fixtures.build(work / "root", runs, EVENTS_PER_RUN)
        log(f"fixture: {runs:,} runs x {EVENTS_PER_RUN} events in {time.perf_counter() - t0:.1f} s ({work})")
        url = cluster.start()
        log(f"cluster: {url} ({cluster.base_dir})")
        loaded = load(url, fx.runs_dir)
        log(f"load: {loaded['events']:,} events in {loaded['seconds']:.1f} s ({loaded['rows_per_s']:,.0f} rows/s)")
        pg = [*cli_argv(), "--store", url, "history"]
        jl = [*cli_argv(), "--root", str(fx.root), "history"]
        cold = Series()
        value, rss = child_member([*pg, "--json"], env)()
        cold.values.append(value)
        cold.rss_kb += [rss] if rss else []
        log(f"cold PG history: {value:.2f} s")
        vacuum(url, "rj_folds")
        first_jsonl = Series()
        value, rss = child_member([*jl, "--json"], env)()
        first_jsonl.values.append(value)
        first_jsonl.rss_kb += [rss] if rss else []
        members = {"pg_json": child_member([*pg, "--json"], env), "jsonl_json": child_member([*jl, "--json"], env),
                   "pg_n20": child_member([*pg, "-n", "20"], env)}
        series = interleave(members, times=repeats, budget=3600.0)
        n20 = run_child([*pg, "-n", "20"], env=env, capture=True).stdout.count(b"\n")
        checks = check(runs, listing([*pg, "--json"], env), listing([*jl, "--json"], env), n20)
        jsonl_bytes = sum(p.stat().st_size for p in fx.runs_dir.iterdir())
        return {"runs": runs, "events_per_run": EVENTS_PER_RUN, "load": loaded, "sizes": sizes(url),
                "jsonl_runs_bytes": jsonl_bytes, "checks": checks,
                "series": {"pg_cold_json": cold, "jsonl_first_json": first_jsonl, **series},
                "kept": {"url": url, "cluster": str(cluster.base_dir), "root": str(fx.root)} if keep else None}
    finally:
        if not keep:
            cluster.stop()
            shutil.rmtree(cluster.base_dir, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)


LABELS = {
    "pg_cold_json": "PG `history --json`, cold (rj_folds empty; first call)",
    "pg_json": "PG `history --json`, warm",
    "jsonl_json": "JSONL `history --json`, warm",
    "jsonl_first_json": "JSONL `history --json`, first call (index build)",
    "pg_n20": "PG `history -n 20`, warm",
}


def _t(value: float) -> str:
    return f"{value:.2f} s" if value >= 1 else f"{value * 1000:.0f} ms"


def render(report: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    runs, series = report["runs"], report["series"]
    lines = [f"### history, {runs:,} runs x {report['events_per_run']} events", "",
             "| case | median | min | max | n | peak RSS |", "|---|---|---|---|---|---|"]
    for key, label in LABELS.items():
        s: Series = series[key]
        rss = f"{max(s.rss_kb) / 1024:.0f} MB" if s.rss_kb else "-"
        lines.append(f"| {label} | {_t(s.median)} | {_t(min(s.values))} | {_t(max(s.values))} | {len(s.values)} | {rss} |")
    ratio = series["pg_json"].median / series["jsonl_json"].median
    lines += ["", f"PG warm / JSONL warm (medians): {ratio:.2f}x", ""]
    ld, sz = report["load"], report["sizes"]
    mb = 1024 * 1024
    lines += ["| store facts | value |", "|---|---|",
              (f"| load (read files, orjson, 2 COPYs, commit) | {ld['events']:,} events, {ld['runs']:,} runs in "
               f"{ld['seconds']:.1f} s = {ld['rows_per_s']:,.0f} event rows/s (then VACUUM ANALYZE {ld['vacuum_s']:.1f} s) |"),
              f"| rj_events total size | {sz['rj_events'] / mb:,.0f} MB |",
              f"| rj_folds total size | {sz['rj_folds'] / mb:,.0f} MB ({sz['rj_folds_rows']:,} rows) |",
              f"| rj_runs total size | {sz['rj_runs'] / mb:,.0f} MB |",
              f"| JSONL run files | {report['jsonl_runs_bytes'] / mb:,.0f} MB |", "",
              "| check | ok |", "|---|---|"]
    lines += [f"| {name} | {'ok' if ok else 'FAIL'} |" for name, ok in report["checks"]]
    return "\n".join(lines)


def to_json(report: dict[str, Any]) -> dict[str, Any]:
    """The report with its series summarised (JSON-ready)."""
    return {**report, "series": {k: {"label": LABELS[k], **s.summary()} for k, s in report["series"].items()},
            "checks": [{"check": c, "ok": ok} for c, ok in report["checks"]]}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 if a correctness check failed."""
    parser = argparse.ArgumentParser(prog="benchmarks/pg_history.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the fixture (default 100,000)")
    parser.add_argument("--quick", action="store_true", help="10,000 runs, 3 rounds")
    parser.add_argument("--repeats", type=int, help="warm rounds (default 5, --quick 3)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running and the fixture on disk")
    args = parser.parse_args(argv)
    runs = 10_000 if args.quick else args.runs
    report = measure(runs, args.repeats or (3 if args.quick else 5), args.keep)
    print(render(report))
    if report["kept"]:
        kept = report["kept"]
        print(f"\nkept: --store {kept['url']} / --root {kept['root']}; "
              f"stop with: python tests/pgcluster.py stop {kept['cluster']}")
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(to_json(report), option=orjson.OPT_INDENT_2))
    return 0 if all(ok for _, ok in report["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
