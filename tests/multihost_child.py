"""A writer "host" for the multi-host tests (run as a script, never imported by pytest).

Usage: ``python multihost_child.py URL COUNT INTERVAL``

The test launches it under ``unshare --uts`` with its own hostname; it sets nothing about
the hostname itself. It starts COUNT runs on the PostgreSQL store at URL (each run has its
own writer session, so its own advisory lock), appends a ``step-progress`` to each, and
prints one JSON line per run, ``{"run_id", "host", "pid"}``. Then it loops forever: every
INTERVAL seconds it appends a heartbeat to each run it still writes. An append that raises
a :class:`JournalError` prints ``{"fenced": run_id, "error": type name, "message": text}``
and that run is never touched again. It never exits by itself: the test kills it.
"""

from __future__ import annotations

import json
import os
import sys
import time

from runjournal.journal.errors import JournalError
from runjournal.journal.postgres.store import PgStore
from runjournal.journal.run import Run, start_run


def say(obj: dict[str, object]) -> None:
    """One whole JSON line straight to fd 1, so the test sees it at once."""
    os.write(1, (json.dumps(obj) + "\n").encode())


def main(url: str, count: int, interval: float) -> None:
    store = PgStore(url)
    runs: list[Run] = []
    for index in range(count):
        run = start_run("multihost", ["work"], store=store, heartbeat_interval=interval, inputs={"index": index})
        run.step_started("work")
        runs.append(run)
    for run in runs:
        say({"run_id": run.run_id, "host": run.started.writer.host, "pid": run.started.writer.pid})
    live = list(runs)
    while True:
        time.sleep(interval)  # the writer's own heartbeat cadence (the test never sleeps on it)
        for run in list(live):
            try:
                run.heartbeat()
            except JournalError as exc:
                say({"fenced": run.run_id, "error": type(exc).__name__, "message": str(exc)})
                live.remove(run)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
