"""The benchmark suite: one command builds the fixtures, runs every case next to its baseline, prints a table.

    python benchmarks/run.py            # the issue's sizes (100, 10,000 and 100,000 runs; a 1M-event run;
                                        # a 500,000-step journal)
    python benchmarks/run.py --quick    # small sizes, under a minute: a smoke test
    python benchmarks/run.py --json results.json --only history,append

Fixtures are written under ``benchmarks/.work/`` (the same disk as the repository) and
removed afterwards unless ``--keep``. Each figure is the median of several runs (min-max
in brackets); a case stops repeating once its time budget is spent. Ratios are ours /
baseline for times (lower is better) and baseline / ours for throughput (higher is
better), as each goal states. Page cache is warm: the fixtures were just written.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

from benchmarks import cases, fixtures, reads  # noqa: E402
from benchmarks.cases import Config, Row  # noqa: E402
from benchmarks.measure import REPO, Series  # noqa: E402

GROUPS = ("history", "rebuild", "reconcile", "append", "big", "extreme", "startup", "follow")


def main(argv: list[str] | None = None) -> int:
    """Run the suite; exit 0 whether or not goals are met (the table says), 2 on bad usage."""
    args = _parser().parse_args(argv)
    only = set(args.only.split(",")) if args.only else set(GROUPS)
    if only - set(GROUPS):
        print(f"unknown group(s): {', '.join(sorted(only - set(GROUPS)))}; choose from {', '.join(GROUPS)}",
              file=sys.stderr)
        return 2
    base = REPO / "benchmarks" / ".work"
    base.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=base))
    cfg = Config.make(args.quick, work, log=_log)
    started = time.perf_counter()
    try:
        rows = run_groups(cfg, only)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    print(render_table(rows))
    print(f"\n{'quick' if cfg.quick else 'full'} mode, {elapsed:.0f} s, {platform.python_implementation()} "
          f"{platform.python_version()}, {platform.machine()}; command: python benchmarks/run.py"
          + (" --quick" if cfg.quick else ""))
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(_report(cfg, rows, elapsed), option=orjson.OPT_INDENT_2))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test (under a minute)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--only", metavar="GROUPS", help=f"comma-separated subset of: {', '.join(GROUPS)}")
    parser.add_argument("--keep", action="store_true", help="keep the fixtures (printed path) for profiling")
    return parser


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_groups(cfg: Config, only: set[str]) -> list[Row]:
    """Build the fixtures the chosen groups need and run them, in an order that lets them share fixtures."""
    rows: list[Row] = []
    small = large = None
    warm: Series | None = None
    if only & {"history", "rebuild", "reconcile"}:
        small = _timed(f"fixture: {cfg.small_runs:,} runs ({cfg.orphans} orphaned)", lambda: fixtures.build(
            cfg.work / "small", cfg.small_runs, cfg.events_per_run, orphans=cfg.orphans))
    if "rebuild" in only and small is not None:
        rows += _timed("index rebuild", lambda: cases.rebuild_row(cfg, small))
    if only & {"history", "reconcile"} and small is not None:
        history, warm = _timed("history (small)", lambda: cases.history_rows(
            cfg, small, ratio_goal=0.25, wall_goal=0.150))
        rows += history if "history" in only else []
    if "history" in only:
        large = _timed(f"fixture: {cfg.large_runs:,} runs", lambda: fixtures.build(
            cfg.work / "large", cfg.large_runs, cfg.events_per_run))
        history_large, warm_large = _timed("history (large)", lambda: cases.history_rows(
            cfg, large, ratio_goal=0.05, wall_goal=None, sqlite_goal=1.0))
        rows += history_large
        if warm is not None and warm_large is not None:
            rows.append(_growth_row(cfg, warm, warm_large))
        tiny = _timed(f"fixture: {cfg.shown_small_runs:,} runs", lambda: fixtures.build(
            cfg.work / "tiny", cfg.shown_small_runs, cfg.events_per_run))
        rows += _timed("history -n 20", lambda: reads.shown_rows(cfg, tiny, large))
    if "reconcile" in only and small is not None:
        rows.append(_timed("reconcile on read", lambda: cases.reconcile_row(cfg, small)))
    for group, label, fn in _simple_groups():
        if group in only:
            rows += _timed(label, lambda fn=fn: fn(cfg))
    return rows


def _simple_groups() -> list[tuple[str, str, Callable[[Config], list[Row]]]]:
    return [("append", "appends", cases.append_rows), ("big", "one big run", reads.big_run_rows),
            ("extreme", "a journal of many steps", reads.extreme_rows),
            ("startup", "start-up", cases.startup_rows), ("follow", "follow latency", cases.follow_rows)]


def _growth_row(cfg: Config, small: Series, large: Series) -> Row:
    growth = large.median / small.median
    row = Row(f"history cost growth {cfg.small_runs:,} -> {cfg.large_runs:,} runs", "(reported)", large,
              f"history at {cfg.small_runs:,} runs", small, growth)
    row.note = f"{cfg.large_runs / cfg.small_runs:.0f}x the runs cost {growth:.1f}x the time"
    return row


def _timed(label: str, fn: Callable[[], object]):  # type: ignore[no-untyped-def]
    _log(f"{label} ...")
    start = time.perf_counter()
    result = fn()
    _log(f"{label}: {time.perf_counter() - start:.1f} s")
    return result


# ---- output --------------------------------------------------------------------------------


def fmt_value(value: float, unit: str) -> str:
    """A time in a readable unit (per-event times in microseconds)."""
    if unit == "s/event":
        return f"{value * 1e6:.1f} us"
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1000:.1f} ms"


def fmt_series(series: Series | None) -> str:
    """``median [min-max]``."""
    if series is None:
        return "-"
    low, high = min(series.values), max(series.values)
    if len(series.values) == 1:
        return f"{fmt_value(series.median, series.unit)} (n=1)"
    return f"{fmt_value(series.median, series.unit)} [{fmt_value(low, series.unit)}-{fmt_value(high, series.unit)}]"


def render_table(rows: list[Row]) -> str:
    """The results as a Markdown table."""
    header = ["case", "measured", "baseline", "ratio", "goal", "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if row.skipped:
            cells = [row.case, "-", "-", "-", row.goal, f"skip: {row.skipped}"]
        else:
            base = f"{row.baseline_name}: {fmt_series(row.baseline)}" if row.baseline is not None else "-"
            ratio = "-" if row.ratio is None else f"{row.ratio:.3g}x"
            verdict = row.verdict + (f" ({row.note})" if row.note else "")
            cells = [row.case, fmt_series(row.measured), base, ratio, row.goal, verdict]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report(cfg: Config, rows: list[Row], elapsed: float) -> dict[str, object]:
    return {
        "mode": "quick" if cfg.quick else "full",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "seconds": elapsed,
        "cases": [
            {
                "case": r.case, "goal": r.goal, "verdict": r.verdict, "ratio": r.ratio, "note": r.note,
                "skipped": r.skipped, "checks": [{"check": c, "ok": ok} for c, ok in r.checks],
                "measured": r.measured.summary() if r.measured else None,
                "baseline": {"name": r.baseline_name, **r.baseline.summary()} if r.baseline else None,
            }
            for r in rows
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
