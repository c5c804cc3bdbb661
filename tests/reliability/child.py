"""Child processes for the reliability tests: real writers, crashers, reconcilers and readers.

Run as ``python child.py COMMAND ...``. A writer prints ``ACK <seq> <h>`` (flushed) after each
append *returns*: the side channel the parent checks the journal against after killing it.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import signal
import sys
import time
from pathlib import Path

from runjournal.journal.errors import JournalError
from runjournal.journal.events import Heartbeat, StepProgress
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.run import start_run
from runjournal.projections.summary import PROJECTOR


def ack(writer: object) -> None:
    """Tell the parent the last append returned: its seq and chain hash."""
    cursor = writer.cursor  # type: ignore[attr-defined]
    sys.stdout.write(f"ACK {cursor.seq - 1} {cursor.prev_hash}\n")
    sys.stdout.flush()


def message_for(rng: random.Random, big: float) -> str:
    """Mostly short messages, some over a page, a share ``big`` of hundreds of KB (tearing needs big writes)."""
    roll = rng.random()
    if roll < big:
        return "m" * rng.randint(100_000, 300_000)
    return "m" * (rng.randint(5_000, 20_000) if roll < big + 0.1 else rng.randint(0, 300))


def cmd_writer(args: argparse.Namespace) -> None:
    """Append ``count`` events as fast as possible, acking each; end the run as succeeded."""
    rng = random.Random(args.seed)
    run = start_run("crash-harness", steps=["work"], root=args.root, run_id=args.run_id, durability=args.durability)
    ack(run.writer)
    for i in range(args.count):
        if rng.random() < 0.25:
            run.writer.append(Heartbeat)
        else:
            message = message_for(rng, args.big)
            run.writer.append(StepProgress, step="work", state="started", done=i, total=args.count, message=message)
        ack(run.writer)
    run.succeed()
    ack(run.writer)
    sys.stdout.write("DONE\n")
    sys.stdout.flush()
    run.close()


def cmd_fsize(args: argparse.Namespace) -> None:
    """Hit a real RLIMIT_FSIZE mid-line: report the short write, then show the writer still appends."""
    run = start_run("fsize", steps=["work"], root=args.root, run_id=args.run_id)
    ack(run.writer)
    size = os.fstat(run.writer.fd).st_size
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + args.room, resource.RLIM_INFINITY))
    for message in ("x" * args.big, "ok"):
        try:
            run.writer.append(StepProgress, step="work", state="started", message=message)
            ack(run.writer)
        except JournalError as exc:
            sys.stdout.write(f"ERROR {type(exc).__name__} {exc}\n")
            sys.stdout.flush()
    run.writer.close()


def cmd_start(args: argparse.Namespace) -> None:
    """Try to start a run; print ``ERROR <class> <message>`` for a journal error (anything else raises)."""
    try:
        run = start_run("start", root=args.root, run_id=args.run_id)
    except JournalError as exc:
        sys.stdout.write(f"ERROR {type(exc).__name__} {exc}\n")
        return
    ack(run.writer)
    run.writer.close()


def cmd_live(args: argparse.Namespace) -> None:
    """A live writer: step progress and heartbeats until ``stop`` exists, then succeed."""
    run = start_run("live", steps=["work"], root=args.root, run_id=args.run_id, heartbeat_interval=args.beat)
    ack(run.writer)
    i = 0
    while not Path(args.stop).exists():
        run.writer.append(StepProgress, step="work", state="started", done=i, message=f"tick {i}")
        ack(run.writer)
        i += 1
        time.sleep(args.pause)
    run.succeed()
    ack(run.writer)
    run.close()


def cmd_reconciler(args: argparse.Namespace) -> None:
    """Reconcile every run of the root again and again for ``seconds``; print each abandonment."""
    from runjournal.projections.reconcile import reconcile_run  # only this command needs it

    store = JsonlStore(args.root)
    deadline = time.monotonic() + args.seconds
    rounds = 0
    while time.monotonic() < deadline:
        for run_id in sorted(store.run_ids()):
            result = reconcile_run(store, run_id)
            if result.action == "abandoned":
                sys.stdout.write(f"ABANDONED {run_id}\n")
                sys.stdout.flush()
        rounds += 1
    sys.stdout.write(f"ROUNDS {rounds}\n")


def cmd_reader(args: argparse.Namespace) -> None:
    """Read history (which reconciles) and verify every run in a loop for ``seconds``."""
    from runjournal.journal.verify import verify_file
    from runjournal.projections.history import run_states

    store = JsonlStore(args.root)
    deadline = time.monotonic() + args.seconds
    rounds = 0
    while time.monotonic() < deadline:
        for current in run_states(store):
            run_id = current.state.run_id
            for problem in verify_file(store.path(run_id), run_id):
                if problem.kind != "torn-tail":
                    sys.stdout.write(f"PROBLEM {problem}\n")
        rounds += 1
    sys.stdout.write(f"ROUNDS {rounds}\n")


def cmd_index(args: argparse.Namespace) -> None:
    """Bring the history index of the root up to date (the crash-point tests kill this mid-write)."""
    from runjournal.journal.jsonl.index import HistoryIndex  # only this command needs it

    print(HistoryIndex(JsonlStore(args.root), PROJECTOR).refresh())


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line of this script."""
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("writer")
    w.add_argument("root")
    w.add_argument("run_id")
    w.add_argument("--count", type=int, default=200)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--durability", default="state")
    w.add_argument("--big", type=float, default=0.03)
    f = sub.add_parser("fsize")
    f.add_argument("root")
    f.add_argument("run_id")
    f.add_argument("--room", type=int, default=100)
    f.add_argument("--big", type=int, default=5000)
    start = sub.add_parser("start")
    start.add_argument("root")
    start.add_argument("run_id")
    live = sub.add_parser("live")
    live.add_argument("root")
    live.add_argument("run_id")
    live.add_argument("stop")
    live.add_argument("--pause", type=float, default=0.01)
    live.add_argument("--beat", type=float, default=30.0)
    sub.add_parser("index").add_argument("root")
    for name in ("reconciler", "reader"):
        p = sub.add_parser(name)
        p.add_argument("root")
        p.add_argument("--seconds", type=float, default=3.0)
    return parser.parse_args(argv)


COMMANDS = {
    "writer": cmd_writer,
    "fsize": cmd_fsize,
    "start": cmd_start,
    "live": cmd_live,
    "reconciler": cmd_reconciler,
    "reader": cmd_reader,
    "index": cmd_index,
}

if __name__ == "__main__":
    ns = parse(sys.argv[1:])
    COMMANDS[ns.command](ns)
