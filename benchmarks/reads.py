"""The read cases of issue 16: one big run read twice, ``history -n 20`` as runs pile up, a huge journal.

Each case runs the CLI as a child process (start-up included, peak RSS from GNU time),
interleaved round by round with its baseline from the same run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks import fixtures
from benchmarks.cases import PY, Config, Row, cli, command_available
from benchmarks.measure import REPO, Series, child_env, child_member, interleave

RSS_GOAL_MB = 150


def _lines_member(path: Path) -> object:
    return child_member([PY, str(REPO / "benchmarks" / "baselines.py"), "lines", str(path)], child_env())


def _rss_mb(series: Series) -> float:
    return max(series.rss_kb) / 1024 if series.rss_kb else 0.0


def _speed_row(label: str, goal: str, measured: Series, base: Series, min_ratio: float) -> Row:
    """Throughput ratio (baseline time / ours) with the RSS goal checked too."""
    ratio = base.median / measured.median
    rss = _rss_mb(measured)
    checks = [(f">= {min_ratio}x", ratio >= min_ratio)]
    if rss:
        checks.append((f"<= {RSS_GOAL_MB} MB", rss <= RSS_GOAL_MB))
    return Row(label, goal, measured, "read lines + orjson.loads", base, ratio, checks, note=f"peak RSS {rss:.0f} MB")


# ---- one big run, read twice ----------------------------------------------------------------


def big_run_rows(cfg: Config) -> list[Row]:
    """``show --json`` first (verifying) and second (from the fold record), ``replay --json``, next to lines+orjson.

    Each round starts without an index (``<root>/index`` removed), so the first ``show``
    verifies every line and the rest read what it recorded, as a user's second look would.
    """
    root = cfg.work / "big"
    cfg.log(f"  writing a run of {cfg.big_run_events:,} events")
    run_id = fixtures.build_big_run(root, cfg.big_run_events)
    path = root / "runs" / f"{run_id}.jsonl"
    label = f"one run of {cfg.big_run_events:,} events"
    missing = command_available("show") or command_available("replay")
    if missing:
        return [Row(f"show --json, {label}", ">= 0.5x lines+orjson", skipped=missing)]
    env = child_env()
    members = {
        "lines": _lines_member(path),
        "show first": child_member(cli(root, "show", run_id, "--json"), env),
        "show second": child_member(cli(root, "show", run_id, "--json"), env),
        "replay": child_member(cli(root, "replay", run_id, "--json"), env),
    }
    series = interleave(members, times=cfg.repeats, budget=cfg.budget * 2,  # type: ignore[arg-type]
                        setup=lambda: shutil.rmtree(root / "index", ignore_errors=True))
    lines = series["lines"]
    rows = [
        _speed_row(f"show --json, {label}, first call (verifies every line)", ">= 0.2x lines+orjson, <= 150 MB",
                   series["show first"], lines, 0.2),
        _speed_row(f"show --json, {label}, second call", ">= 0.5x lines+orjson, <= 150 MB",
                   series["show second"], lines, 0.5),
        _speed_row(f"replay --json, {label}, after a show", ">= 0.25x lines+orjson, <= 150 MB",
                   series["replay"], lines, 0.25),
    ]
    rows += [_cold_replay_row(cfg, root, run_id, path, label)]
    return rows


def _cold_replay_row(cfg: Config, root: Path, run_id: str, path: Path, label: str) -> Row:
    """``replay --json`` on a run nobody read before (it verifies as it streams): reported, no goal."""
    members = {"lines": _lines_member(path), "replay": child_member(cli(root, "replay", run_id, "--json"), child_env())}
    series = interleave(members, times=max(1, cfg.repeats - 2), budget=cfg.budget,  # type: ignore[arg-type]
                        setup=lambda: shutil.rmtree(root / "index", ignore_errors=True))
    row = _speed_row(f"replay --json, {label}, first call (verifies every line)", "(reported)", series["replay"],
                     series["lines"], 0.0)
    row.checks = []
    return row


# ---- history -n 20 as runs pile up ----------------------------------------------------------


def shown_rows(cfg: Config, small: fixtures.Fixture, large: fixtures.Fixture) -> list[Row]:
    """``history -n 20 --json`` at 100 runs and at the large store's size, warm, interleaved: O(what is shown)."""
    env = child_env()
    members = {name: child_member(cli(fx.root, "history", "-n", "20", "--json"), env)
               for name, fx in (("small", small), ("large", large))}
    for member in members.values():  # warm both indexes
        member()
        member()
    series = interleave(members, times=cfg.repeats * 2, budget=cfg.budget)  # type: ignore[arg-type]
    ratio = series["large"].median / series["small"].median
    row = Row(f"history -n 20 --json at {large.runs:,} runs", "<= 1.5x the same at 100 runs", series["large"],
              f"history -n 20 --json at {small.runs:,} runs", series["small"], ratio,
              [("<= 1.5x", ratio <= 1.5)])
    row.note = f"peak RSS {_rss_mb(series['large']):.0f} MB at {large.runs:,} runs"
    return [row]


# ---- a journal of many steps -----------------------------------------------------------------


def extreme_rows(cfg: Config) -> list[Row]:
    """A run of ``cfg.extreme_steps`` steps (two events each) whose writer died: ``history`` and ``show`` on it.

    Every round starts from the orphaned run and no index, so ``history`` folds it, finds the
    writer dead and records ``abandoned``; ``show`` then reads what that left.
    """
    root = cfg.work / "extreme"
    cfg.log(f"  writing a run of {cfg.extreme_steps:,} steps")
    run_id = fixtures.build_steps_run(root, cfg.extreme_steps)
    path = root / "runs" / f"{run_id}.jsonl"
    size = path.stat().st_size
    env = child_env()
    members = {"lines": _lines_member(path), "history": child_member(cli(root, "history", "--json"), env),
               "show": child_member(cli(root, "show", run_id, "--json"), env)}

    def reset() -> None:
        shutil.rmtree(root / "index", ignore_errors=True)
        shutil.rmtree(root / "anchors", ignore_errors=True)
        fixtures.restore_steps_run(path, size)

    series = interleave(members, times=max(1, cfg.repeats - 2), budget=cfg.budget * 2,  # type: ignore[arg-type]
                        setup=reset)
    label = f"a {cfg.extreme_steps:,}-step journal (writer dead)"
    rows = []
    for name in ("history", "show"):
        measured = series[name]
        rss = _rss_mb(measured)
        ratio = series["lines"].median / measured.median
        checks = [(f"<= {RSS_GOAL_MB} MB", rss <= RSS_GOAL_MB)] if rss else []
        rows.append(Row(f"{name} --json, {label}", f"peak RSS <= {RSS_GOAL_MB} MB", measured,
                        "read lines + orjson.loads", series["lines"], ratio, checks, note=f"peak RSS {rss:.0f} MB"))
    return rows
