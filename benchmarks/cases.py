"""The benchmark cases of issue 5, each measured next to its baseline in the same run."""

from __future__ import annotations

import importlib.util
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from benchmarks import baselines, fixtures
from benchmarks.measure import (
    REPO,
    Series,
    call_member,
    child_env,
    child_member,
    cli_argv,
    interleave,
    run_child,
)
from runjournal.journal.codec import encode_line
from runjournal.journal.events import Heartbeat, StepProgress
from runjournal.journal.jsonl.index import INDEX_DIR, HistoryIndex
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.records import GENESIS_HASH
from runjournal.journal.run import start_run
from runjournal.projections.summary import PROJECTOR

PY = sys.executable


@dataclass
class Config:
    """Sizes and repetition for one benchmark run."""

    quick: bool
    work: Path
    small_runs: int = 10_000
    large_runs: int = 100_000
    events_per_run: int = 20
    orphans: int = 100
    big_run_events: int = 1_000_000
    extreme_steps: int = 500_000
    shown_small_runs: int = 100
    durable_events: int = 1_000
    heartbeat_events: int = 20_000
    startup_repeats: int = 20
    follow_samples: int = 200
    repeats: int = 5
    budget: float = 60.0
    log: Callable[[str], None] = print

    @classmethod
    def make(cls, quick: bool, work: Path, log: Callable[[str], None]) -> Config:
        """Full sizes (the issue's), or ``quick`` ones for a smoke test under a minute."""
        if not quick:
            return cls(False, work, log=log)
        return cls(True, work, small_runs=500, large_runs=2_000, orphans=5, big_run_events=10_000,
                   extreme_steps=10_000, durable_events=50, heartbeat_events=3_000, startup_repeats=5, follow_samples=20,
                   repeats=3, budget=1.0, log=log)


@dataclass
class Row:
    """One line of the results table."""

    case: str
    goal: str
    measured: Series | None = None
    baseline_name: str = ""
    baseline: Series | None = None
    ratio: float | None = None
    checks: list[tuple[str, bool]] = field(default_factory=list)
    note: str = ""
    skipped: str | None = None

    @property
    def verdict(self) -> str:
        """``ok``, ``MISS``, ``info`` (no goal) or ``skip``."""
        if self.skipped:
            return "skip"
        if not self.checks:
            return "info"
        return "ok" if all(ok for _, ok in self.checks) else "MISS"


def command_available(name: str) -> str | None:
    """None if ``runjournal NAME`` exists, else why not (its module is not written yet)."""
    from runjournal.cli.main import COMMANDS

    target = COMMANDS.get(name)
    if target is None:
        return f"'runjournal {name}' does not exist"
    if importlib.util.find_spec(target.split(":")[0]) is None:
        return f"'runjournal {name}' not available yet ({target.split(':')[0]} missing)"
    return None


def cli(root: Path, *args: str) -> list[str]:
    """argv of a runjournal command on ``root``."""
    return [*cli_argv(), "--root", str(root), *args]


# ---- history -------------------------------------------------------------------------------


def _naive_argv(root: Path) -> list[str]:
    """The naive full scan as a whole process (start-up included, like the CLI)."""
    return [PY, str(REPO / "benchmarks" / "baselines.py"), "naive", str(root)]


def history_rows(cfg: Config, fx: fixtures.Fixture, *, ratio_goal: float, wall_goal: float | None,
                 sqlite_goal: float | None = None) -> tuple[list[Row], Series | None]:
    """``history --json`` (warm index), the index-only process and sqlite, interleaved with the naive scan.

    ``sqlite_goal``: also at most this ratio to the sqlite baseline, and peak RSS within 150 MB.
    """
    label = f"{fx.runs:,} runs x {fx.events_per_run} events"
    goal = f"<= {ratio_goal}x naive" + (f", <= {wall_goal * 1000:.0f} ms" if wall_goal else "")
    if sqlite_goal is not None:
        goal += f", <= {sqlite_goal}x sqlite3, <= 150 MB"
    env = child_env()
    members = {"naive": child_member(_naive_argv(fx.root), env)}
    missing = command_available("history")
    if not missing:
        members["cli"] = child_member(cli(fx.root, "history", "--json"), env)
    lean_argv = [PY, str(REPO / "benchmarks" / "lean_history.py"), str(fx.root)]
    members["lean"] = child_member(lean_argv, env)
    members["sqlite"] = child_member(_sqlite_history_argv(cfg, fx), env)
    for name in ("cli", "lean"):  # warm the index (and let the CLI reconcile any orphans)
        if name in members:
            members[name]()
    series = interleave(members, times=cfg.repeats, budget=cfg.budget * 2)
    naive = series["naive"]
    rows = []
    if missing:
        rows.append(Row(f"history --json, {label}, warm", goal, skipped=missing))
    else:
        rows.append(_history_row(f"history --json, {label}, warm", goal, series["cli"], naive, ratio_goal, wall_goal))
        if sqlite_goal is not None:
            _check_against_sqlite(rows[-1], series["cli"], series["sqlite"], sqlite_goal)
        if not (fx.root / INDEX_DIR).exists():
            rows[-1].note += "; the CLI does not use the index yet (no <root>/index after the call)"
    lean = _history_row(f"index-only history process, {label}", goal, series["lean"], naive, ratio_goal, wall_goal)
    lean.note = (f"{lean.note}; " if lean.note else "") + (
        "benchmarks/lean_history.py: HistoryIndex summaries -> JSON, no pydantic (what history could be)")
    sqlite = _ratio_row(f"sqlite3 latest status per run, {label}", "(baseline)", series["sqlite"],
                        "naive full scan", naive, None)
    sqlite.note = "the tool a user might pick instead: events table, WAL, index on (run_id, seq, status)"
    return [*rows, lean, sqlite], series.get("cli")


def _check_against_sqlite(row: Row, measured: Series, sqlite: Series, goal: float) -> None:
    ratio = measured.median / sqlite.median
    rss = max(measured.rss_kb) / 1024 if measured.rss_kb else 0.0
    row.checks.append((f"<= {goal}x sqlite3", ratio <= goal))
    if rss:
        row.checks.append(("<= 150 MB", rss <= 150))
    row.note += f"; {ratio:.2f}x sqlite3"


def _history_row(case: str, goal: str, measured: Series, naive: Series, ratio_goal: float,
                 wall_goal: float | None) -> Row:
    row = _ratio_row(case, goal, measured, "naive full scan", naive, ratio_goal)
    if wall_goal is not None:
        row.checks.append((f"<= {wall_goal * 1000:.0f} ms", measured.median <= wall_goal))
    row.note = f"peak RSS {max(measured.rss_kb) / 1024:.0f} MB" if measured.rss_kb else ""
    return row


def _sqlite_history_argv(cfg: Config, fx: fixtures.Fixture) -> list[str]:
    db_path = cfg.work / f"history-{fx.runs}.sqlite"
    db = baselines.sqlite_connect(db_path)
    baselines.sqlite_load(db, fx.runs_dir)
    db.close()
    return [PY, str(REPO / "benchmarks" / "baselines.py"), "sqlite-history", str(db_path)]


def rebuild_row(cfg: Config, fx: fixtures.Fixture) -> list[Row]:
    """Index rebuild from nothing, in-process, interleaved with the naive scan in-process."""
    store = JsonlStore(fx.root)

    def rebuild() -> None:
        shutil.rmtree(fx.root / INDEX_DIR, ignore_errors=True)
        start = time.perf_counter()
        HistoryIndex(store, PROJECTOR).refresh()
        return time.perf_counter() - start  # type: ignore[return-value]

    series = interleave({"naive": call_member(lambda: baselines.naive_history(fx.runs_dir) and None),
                         "rebuild": call_member(rebuild)}, times=cfg.repeats, budget=cfg.budget)
    label = f"index rebuild from nothing, {fx.runs:,} runs (in-process)"
    row = _ratio_row(label, "<= 1.5x naive", series["rebuild"], "naive full scan (in-process)", series["naive"], 1.5)
    row.note = "strict reads: hash chain, seq and run_id checked on every line; index written"
    return [row]


def reconcile_row(cfg: Config, fx: fixtures.Fixture) -> Row:
    """``history`` on a store where some runs' writers died since the last call, next to the call after it."""
    label = f"reconcile-on-read: history --json, {fx.runs:,} runs, {len(fx.orphan_ids)} orphaned"
    missing = command_available("history")
    if missing:
        return Row(label, "<= 1 s", skipped=missing)
    argv = cli(fx.root, "history", "--json")
    run = child_member(argv, child_env())
    series = interleave({"orphans": run, "after": run}, times=cfg.repeats, budget=cfg.budget,
                        setup=lambda: fixtures.reset_orphans(fx))
    status = orjson.loads(run_child(argv, env=child_env(), capture=True).stdout)
    orphans = set(fx.orphan_ids)
    abandoned = sum(1 for r in status if r["run_id"] in orphans and r["status"] == "abandoned")
    row = Row(label, "<= 1 s", series["orphans"], "the next history call (nothing left to reconcile)",
              series["after"], series["orphans"].median / series["after"].median)
    row.checks.append(("<= 1 s", series["orphans"].median <= 1.0))
    row.note = f"{abandoned}/{len(orphans)} orphans shown abandoned after the last call"
    return row


def _ratio_row(case: str, goal: str, measured: Series, base_name: str, base: Series, max_ratio: float | None) -> Row:
    ratio = measured.median / base.median
    row = Row(case, goal, measured, base_name, base, ratio)
    if max_ratio is not None:
        row.checks.append((f"<= {max_ratio}x", ratio <= max_ratio))
    return row


# ---- appends -------------------------------------------------------------------------------


def append_rows(cfg: Config) -> list[Row]:
    """Durable (fdatasync'ed) and unsynced appends through the API against raw loops and sqlite, interleaved."""
    directory = cfg.work / "append"
    directory.mkdir(exist_ok=True)
    lines = _sample_lines(cfg.durable_events, progress=True)
    beats = _sample_lines(cfg.heartbeat_events, progress=False)
    durable = interleave({
        "api": call_member(lambda: _api_append(cfg, directory, durable=True)),
        "raw": call_member(lambda: baselines.raw_append(directory / "raw-sync", lines, sync=True)),
        "sqlite": call_member(lambda: _sqlite_per_event(directory, lines)),
    }, times=cfg.repeats, budget=cfg.budget)
    unsynced = interleave({
        "api": call_member(lambda: _api_append(cfg, directory, durable=False)),
        "raw": call_member(lambda: baselines.raw_append(directory / "raw", beats, sync=False)),
    }, times=cfg.repeats, budget=cfg.budget)
    for series in (*durable.values(), *unsynced.values()):
        series.unit = "s/event"
    synced = "durable append via API (step-progress, fdatasync each)"
    return [
        _speed_row(synced, durable["api"], "raw os.write+fdatasync", durable["raw"], 0.8),
        _speed_row(synced, durable["api"], "sqlite3 commit per event (WAL, FULL)", durable["sqlite"], 1.0),
        _speed_row("unsynced append via API (heartbeats)", unsynced["api"], "raw os.write loop", unsynced["raw"], 0.1),
    ]


def _speed_row(case: str, measured: Series, base_name: str, base: Series, min_speed: float) -> Row:
    """A throughput comparison: ratio = baseline time / our time (higher is better)."""
    ratio = base.median / measured.median
    return Row(case, f">= {min_speed}x {base_name.split(' ')[0]}", measured, base_name, base, ratio,
               [(f">= {min_speed}x", ratio >= min_speed)])


def _api_append(cfg: Config, directory: Path, *, durable: bool) -> float:
    """Seconds per event through ``journal.run``: step progress (fdatasync'ed) or heartbeats (not)."""
    count = cfg.durable_events if durable else cfg.heartbeat_events
    with start_run("bench", steps=["s"], root=directory / "api", durability="state") as run:
        start = time.perf_counter()
        for i in range(count):
            if durable:
                run.item_started("s", f"item-{i}", done=i, total=count)
            else:
                run.heartbeat()
        return (time.perf_counter() - start) / count


def _sample_lines(count: int, *, progress: bool) -> list[bytes]:
    """Lines like the API writes (same sizes), encoded once, for the raw and sqlite loops."""
    run_id = fixtures.run_id_for(0)
    now = fixtures.BASE_TIME
    lines, prev = [], GENESIS_HASH
    for seq in range(count):
        if progress:
            event = StepProgress(run_id=run_id, seq=seq, ts=now, step="s", state="started", item=f"item-{seq}",
                                 item_state="started", done=seq, total=count)
        else:
            event = Heartbeat(run_id=run_id, seq=seq, ts=now)
        line, prev = encode_line(event, prev)
        lines.append(line)
    return lines


def _sqlite_per_event(directory: Path, lines: list[bytes]) -> float:
    path = directory / "events.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    db = baselines.sqlite_connect(path)
    rows = [(o["run_id"], o["seq"], o["type"], o["ts"], line) for line in lines for o in [orjson.loads(line)]]
    start = time.perf_counter()
    baselines.sqlite_append(db, rows)
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed / len(lines)


# ---- start-up ------------------------------------------------------------------------------


def startup_rows(cfg: Config) -> list[Row]:
    """``runjournal --version`` and ``history`` on an empty root, interleaved with ``python -c 'import click'``."""
    empty = cfg.work / "empty-root"
    empty.mkdir(mode=0o700, exist_ok=True)
    env = child_env()
    members = {"click": child_member([PY, "-c", "import click"], env, rss=False),
               "version": child_member([*cli_argv(), "--version"], env, rss=False)}
    missing = command_available("history")
    if not missing:
        members["history"] = child_member(cli(empty, "history"), env, rss=False)
    series = interleave(members, times=cfg.startup_repeats, budget=cfg.budget)
    base = series["click"]
    rows = [_ratio_row("runjournal --version", "<= 1.3x import click", series["version"],
                       "python -c 'import click'", base, 1.3)]
    if missing:
        rows.append(Row("history on an empty root", "<= 2x import click", skipped=missing))
    else:
        rows.append(_ratio_row("history on an empty root", "<= 2x import click", series["history"],
                               "python -c 'import click'", base, 2.0))
    return rows


# ---- follow --------------------------------------------------------------------------------


def follow_rows(cfg: Config) -> list[Row]:
    """Latency from an append to its line on ``follow``'s stdout; ``tail -F`` as the baseline."""
    root = cfg.work / "follow"
    tail = shutil.which("tail")
    base = None
    if tail is not None:
        base = _latencies(cfg, root, lambda path, _: [tail, "-n", "+1", "-F", str(path)])
    label = "follow latency, append to line on stdout"
    goal = "median <= 20 ms, p99 <= 100 ms"
    missing = command_available("follow")
    if missing:
        return [Row(label, goal, skipped=missing)]
    series = _latencies(cfg, root, lambda _, run_id: cli(root, "follow", run_id, "--jsonl"))
    p99 = series.quantile(0.99)
    row = Row(label, goal, series, "tail -F (inotify)" if base else "", base,
              None if base is None else series.median / base.median,
              [("median <= 20 ms", series.median <= 0.020), ("p99 <= 100 ms", p99 <= 0.100)])
    row.note = f"p99 {p99 * 1000:.1f} ms over {len(series.values)} appends" + (
        f"; tail -F p99 {base.quantile(0.99) * 1000:.1f} ms" if base else "")
    return [row]


def _latencies(cfg: Config, root: Path, argv_for: Callable[[Path, str], Sequence[str]]) -> Series:
    """Append heartbeats one at a time and time each until a line with its seq appears on the child's stdout."""
    lines: queue.Queue[tuple[float, bytes]] = queue.Queue()
    series = Series()
    with start_run("follow-bench", steps=["s"], root=root, durability="none") as run:
        proc = subprocess.Popen(argv_for(Path(run.location), run.run_id), stdout=subprocess.PIPE, stderr=None,
                                env=child_env())
        threading.Thread(target=_pump, args=(proc, lines), daemon=True).start()
        try:
            _wait_for_seq(lines, 0, deadline=time.monotonic() + 30)
            for n in range(cfg.follow_samples + 3):
                time.sleep(0.02)  # pacing between appends, so each is measured on its own
                start = time.perf_counter()
                seq = run.heartbeat().seq
                arrived = _wait_for_seq(lines, seq, deadline=time.monotonic() + 10)
                if n >= 3:  # the first few warm the watcher up
                    series.values.append(arrived - start)
        finally:
            run.succeed()
            _stop(proc)
    return series


def _pump(proc: subprocess.Popen[bytes], lines: queue.Queue[tuple[float, bytes]]) -> None:
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.put((time.perf_counter(), line))


def _wait_for_seq(lines: queue.Queue[tuple[float, bytes]], seq: int, *, deadline: float) -> float:
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no line with seq {seq} within the deadline")
        try:
            arrived, line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        try:
            if orjson.loads(line).get("seq") == seq:
                return arrived
        except (orjson.JSONDecodeError, AttributeError):
            continue


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
