"""Baselines: what each case is compared with, measured in the same run on the same disk.

Run as a script for the whole-process baselines (so they pay interpreter start-up like
the CLI does)::

    python benchmarks/baselines.py naive ROOT        # fold every run, print a JSON summary list
    python benchmarks/baselines.py lines FILE        # read lines + orjson.loads only
    python benchmarks/baselines.py sqlite-history DB # latest status per run from sqlite

Only stdlib and orjson are imported at the top, so the ``lines`` and ``sqlite`` baselines
do not pay for pydantic; the naive scan imports the event models and the fold when it runs.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

STATUS_OF = {"started": "running", "succeeded": "succeeded", "failed": "failed", "cancelled": "cancelled",
             "abandoned": "abandoned"}


# ---- reading -------------------------------------------------------------------------------


def naive_history(runs_dir: Path) -> list[dict[str, Any]]:
    """The naive full scan: read every file, orjson-parse every line, validate it as an event, fold.

    No hash chain, no seq checks, no index: what a straightforward history would do.
    """
    from runjournal.journal.events import EVENT_ADAPTER
    from runjournal.projections.fold import fold

    rows = []
    for name in sorted(os.listdir(runs_dir), reverse=True):
        if not name.endswith(".jsonl") or name.startswith("."):
            continue
        with open(runs_dir / name, "rb") as file:
            events = [EVENT_ADAPTER.validate_python(_without_hash(orjson.loads(line))) for line in file]
        state = fold(events)
        rows.append({"run_id": name[:-6], "workflow": state.workflow, "status": state.status,
                     "reason": state.reason, "started_at": state.started_at, "ended_at": state.ended_at,
                     "steps_done": state.steps_done, "steps_total": state.steps_total})
    return rows


def _without_hash(obj: dict[str, Any]) -> dict[str, Any]:
    obj.pop("h", None)
    return obj


def lines_and_orjson(path: Path) -> int:
    """Read a file's lines and ``orjson.loads`` each: the floor for any strict reader."""
    count = 0
    with open(path, "rb") as file:
        for line in file:
            orjson.loads(line)
            count += 1
    return count


# ---- sqlite, the tool a user might pick instead ------------------------------------------------


def sqlite_connect(path: Path) -> sqlite3.Connection:
    """An events database in WAL mode with ``synchronous=FULL``, autocommit off (explicit transactions)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, "
        "status TEXT, ts TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (run_id, seq))"
    )
    return db


def sqlite_append(db: sqlite3.Connection, rows: Iterable[tuple[str, int, str, str, bytes]]) -> None:
    """One committed insert per event."""
    for run_id, seq, kind, ts, body in rows:
        db.execute("BEGIN")
        db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", (run_id, seq, kind, STATUS_OF.get(kind), ts, body))
        db.execute("COMMIT")


def sqlite_load(db: sqlite3.Connection, runs_dir: Path) -> None:
    """Bulk-load a fixture's journals into the events table (one transaction), then index status changes."""
    db.execute("BEGIN")
    for name in os.listdir(runs_dir):
        with open(runs_dir / name, "rb") as file:
            for line in file:
                obj = orjson.loads(line)
                db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", (
                    obj["run_id"], obj["seq"], obj["type"], STATUS_OF.get(obj["type"]), obj["ts"], line))
    db.execute("COMMIT")
    db.execute("CREATE INDEX IF NOT EXISTS by_status ON events (run_id, seq, status) WHERE status IS NOT NULL")


LATEST_STATUS = (
    "SELECT run_id, status, MAX(seq) AS seq, ts FROM events WHERE status IS NOT NULL "
    "GROUP BY run_id ORDER BY run_id DESC"
)
"""Latest status per run, newest run first (SQLite returns the bare columns of the MAX row)."""


def sqlite_history(path: Path) -> list[dict[str, Any]]:
    """The history a sqlite user would write: the latest status of every run, over an index."""
    db = sqlite3.connect(path)
    try:
        return [{"run_id": r, "status": s, "seq": q, "ts": t} for r, s, q, t in db.execute(LATEST_STATUS)]
    finally:
        db.close()


# ---- writing -------------------------------------------------------------------------------


def raw_append(path: Path, lines: list[bytes], *, sync: bool) -> float:
    """Append ``lines`` with one ``os.write`` each (and ``fdatasync`` after each if ``sync``); seconds per line."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
    try:
        start = time.perf_counter()
        for line in lines:
            os.write(fd, line)
            if sync:
                os.fdatasync(fd)
        return (time.perf_counter() - start) / len(lines)
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    """Entry point for the whole-process baselines (see the module docstring)."""
    kind, target = argv[0], Path(argv[1])
    if kind == "naive":
        sys.stdout.buffer.write(orjson.dumps(naive_history(target / "runs"), option=orjson.OPT_UTC_Z))
    elif kind == "lines":
        print(lines_and_orjson(target))
    elif kind == "sqlite-history":
        sys.stdout.buffer.write(orjson.dumps(sqlite_history(target)))
    else:
        print(f"unknown baseline {kind!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main(sys.argv[1:]))
