"""A writer process for the real-process tests (run as a script, never imported by pytest).

Modes (all print one line per fact on stdout, flushed, so the test waits for lines, not time):

``hold ROOT RUN_ID``
    Start the run, prove the lock survives closing another fd of the file (the ``lockf``
    trap), print ``READY``, then hold the run until stdin closes.
``try-open ROOT RUN_ID``
    Try to take over the run's writer role; print ``OPENED`` or ``LOCKED <message>``.
``zygote ROOT``
    Import once, then for each ``spawn RUN_ID SEED DURABILITY`` on stdin fork a writer that
    prints ``PID <pid>`` and appends in a tight loop, printing ``ACK <seq>`` after each
    append returns; ``reap PID`` waits for that writer and prints ``REAPED <pid> <status>``.
``short-write ROOT RUN_ID EXTRA``
    Start the run, cap the file size (RLIMIT_FSIZE) at EXTRA bytes past its end, try a big
    and a small append, print a JSON report.
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
from pathlib import Path

from runjournal.journal.errors import JournalError
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.run import start_run


def say(text: str) -> None:
    """One whole line straight to fd 1 (no buffering shared across fork)."""
    os.write(1, (text + "\n").encode())


def hold(root: str, run_id: str) -> None:
    run = start_run("hold", ["s"], root=root, run_id=run_id)
    store = JsonlStore(root)
    list(store.read(run_id))  # opens and closes a second fd of the run file
    say("READY" if store.writer_alive(run_id) else "LOCK-LOST after closing another fd")
    sys.stdin.read()
    run.close()


def try_open(root: str, run_id: str) -> None:
    try:
        JsonlStore(root).open_writer(run_id).close()
        say("OPENED")
    except JournalError as exc:
        say(f"LOCKED {exc}")


def append_loop(root: str, run_id: str, seed: int, durability: str) -> None:
    rng = random.Random(seed)
    run = start_run("kill-loop", ["s"], root=root, run_id=run_id, durability=durability)  # type: ignore[arg-type]
    while True:
        if rng.random() < 0.3:
            event = run.heartbeat()
        else:
            size = rng.choice([0, 10, 1000, 60_000, 300_000, 900_000])
            event = run.progress("s", "started", message="m" * size)
        say(f"ACK {event.seq}")


def zygote(root: str) -> None:
    for command in sys.stdin:
        verb, *args = command.split()
        if verb == "spawn":
            pid = os.fork()
            if pid == 0:
                try:
                    say(f"PID {os.getpid()}")
                    append_loop(root, args[0], int(args[1]), args[2])
                finally:
                    os._exit(1)
        elif verb == "reap":
            _, status = os.waitpid(int(args[0]), 0)
            say(f"REAPED {args[0]} {status}")


def short_write(root: str, run_id: str, extra: int) -> None:
    run = start_run("fsize", ["s"], root=root, run_id=run_id)
    fd = run.writer.fd
    size = os.fstat(fd).st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + extra, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    results = []
    attempts = {"big": lambda: run.progress("s", "started", message="x" * 5000), "small": run.heartbeat}
    for label, attempt in attempts.items():
        try:
            results.append({"label": label, "seq": attempt().seq})
        except JournalError as exc:
            results.append({"label": label, "error": type(exc).__name__, "errno": getattr(exc, "errno", None),
                            "message": str(exc), "size": os.fstat(fd).st_size})
    say(json.dumps({"size_before": size, "path": str(Path(Path(run.location))), "results": results}))
    os._exit(0)  # no context manager: it would try to append past the limit again


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "hold":
        hold(*rest)
    elif mode == "try-open":
        try_open(*rest)
    elif mode == "zygote":
        zygote(*rest)
    elif mode == "short-write":
        short_write(rest[0], rest[1], int(rest[2]))
    else:
        sys.exit(f"unknown mode {mode!r}")
