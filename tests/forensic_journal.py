"""A journal for forensics tests: one run of every kind an investigator meets.

* ``ok``: a fan-out that succeeded;
* ``failed`` and ``failed2``: fan-outs where item ``b`` failed (``failed`` never started ``c``);
* ``cancelled``: cancelled with an item in flight that was stopped by the cancel;
* ``killed``: written by a real process killed with SIGKILL mid-fan-out (item ``c`` in flight);
* ``torn``: a dead writer's run whose file ends in half a line;
* ``late``: failed, then a writer that kept going appended two more events;
* ``future``: failed with a reason code this runjournal does not know;
* ``damaged``: line 3 of 5 had a byte changed (raw bytes), so only lines 1 and 2 verify.

Everything but the killed run is written on a fixed clock; nothing is reconciled here.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from run_helpers import gone_identity, process_gone, wait_for

from runjournal.journal.codec import chain_hash
from runjournal.journal.events import Heartbeat, PlannedStep, StepProgress
from runjournal.journal.jsonl import JsonlStore
from runjournal.journal.run import Run, start_run

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ITEMS = ["a", "b", "c", "d"]
IDS = {
    "ok": "20260301T120000000000Z-0001",
    "failed": "20260301T130000000000Z-0002",
    "failed2": "20260301T133000000000Z-0003",
    "cancelled": "20260301T140000000000Z-0004",
    "torn": "20260301T150000000000Z-0005",
    "late": "20260301T160000000000Z-0006",
    "future": "20260301T170000000000Z-0007",
    "damaged": "20260301T180000000000Z-0008",
}
PLAN = ["prepare", PlannedStep(name="fan", items=ITEMS), "verify"]


def _clock(start: datetime, step: float) -> Callable[[], datetime]:
    counter = itertools.count()
    return lambda: start + timedelta(seconds=step * next(counter))


def _run(store: JsonlStore, key: str, offset_minutes: int, workflow: str = "deploy") -> Run:
    return start_run(workflow, PLAN, store=store, run_id=IDS[key], clock=_clock(T0 + timedelta(minutes=offset_minutes), 2),
                     identity=gone_identity(), durability="none")


def _prepare_and_fan(run: Run, outcomes: dict[str, str]) -> None:
    """Run ``prepare`` (4 s), then the fan-out items in order with the given outcomes ('-': leave in flight)."""
    run.step_started("prepare")
    run.step_succeeded("prepare", exit_code=0)
    run.step_started("fan", total=len(ITEMS))
    done = 0
    for item, outcome in outcomes.items():
        run.item_started("fan", item, done=done, total=len(ITEMS))
        if outcome == "-":
            continue
        done += 1
        code = 0 if outcome == "succeeded" else (143 if outcome == "stopped" else 3)
        state = "succeeded" if outcome == "succeeded" else "failed"
        run.item_ended("fan", item, state, done=done, total=len(ITEMS), exit_code=code,
                       message=None if code == 0 else f"exit code {code}")


def build(root: Path) -> JsonlStore:
    """Write every run but the killed one (see :func:`add_killed_run`)."""
    store = JsonlStore(root)
    with _run(store, "ok", 0) as run:
        _prepare_and_fan(run, dict.fromkeys(ITEMS, "succeeded"))
        run.step_succeeded("fan", done=4, total=4)
        run.step_started("verify")
        run.step_succeeded("verify", exit_code=0)
    for key, minutes in (("failed", 60), ("failed2", 90)):
        run = _run(store, key, minutes)
        _prepare_and_fan(run, {"a": "succeeded", "b": "failed"} if key == "failed" else
                         {"a": "failed", "b": "failed", "c": "succeeded", "d": "succeeded"})
        run.step_failed("fan", exit_code=3, message="item 'b': exit code 3")
        run.fail(step="fan", exit_code=3, message="item 'b': exit code 3")
        run.close()
    run = _run(store, "cancelled", 120)
    _prepare_and_fan(run, {"a": "succeeded", "b": "stopped"})
    run.step_failed("fan", exit_code=143, message="item 'b': stopped: run cancelled (killed by SIGTERM)")
    run.cancel("user:alice", "wrong version")
    run.close()
    run = _run(store, "torn", 150)
    _prepare_and_fan(run, {"a": "succeeded", "b": "-"})
    run.heartbeat()
    run.close()
    with open(store.path(IDS["torn"]), "ab") as f:
        f.write(b'{"v":1,"run_id":"' + IDS["torn"].encode() + b'","seq":9,"ts":"2026-03-01T14:30:')
    run = _run(store, "late", 180)
    _prepare_and_fan(run, {"a": "failed"})
    run.fail(step="fan", exit_code=3, message="item 'a': exit code 3")
    run.writer.append(StepProgress, step="fan", state="started", item="b", item_state="started", done=1, total=4)
    run.writer.append(Heartbeat)
    run.close()
    _future_run(store)
    _damaged_run(store)
    return store


def _future_run(store: JsonlStore) -> None:
    run = _run(store, "future", 210)
    run.step_started("prepare")
    run.close()
    path = store.path(IDS["future"])
    lines = path.read_bytes().splitlines()
    prev = orjson.loads(lines[-1])["h"]
    body = orjson.dumps({"v": 1, "run_id": IDS["future"], "seq": len(lines), "ts": "2026-03-01T15:30:09.000000Z",
                         "type": "failed", "reason": "a-code-from-the-future", "step": "prepare", "exit_code": None,
                         "message": None})[:-1]
    digest = chain_hash(prev, body)
    with open(path, "ab") as f:
        f.write(body + b',"h":"' + digest.encode() + b'"}\n')


def _damaged_run(store: JsonlStore) -> None:
    with _run(store, "damaged", 240) as run:
        run.step_started("prepare")
        run.step_succeeded("prepare", exit_code=0)
        run.step_started("verify")
    path = store.path(IDS["damaged"])
    data = bytearray(path.read_bytes())
    third = data.index(b"\n", data.index(b"\n") + 1) + 1
    at = data.index(b'"exit_code":0', third) + len('"exit_code":')
    data[at:at + 1] = b"7"  # still a valid event: only the hash chain can tell
    path.write_bytes(bytes(data))


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from runjournal.journal.events import PlannedStep
    from runjournal.journal.run import start_run
    run = start_run("deploy", ["prepare", PlannedStep(name="fan", items=["a", "b", "c", "d"]), "verify"],
                    root=sys.argv[1], run_id=sys.argv[2], durability="none")
    run.step_started("prepare"); run.step_succeeded("prepare", exit_code=0)
    run.step_started("fan", total=4)
    for done, item in enumerate(["a", "b"]):
        run.item_started("fan", item, done=done, total=4)
        run.item_ended("fan", item, "succeeded", done=done + 1, total=4, exit_code=0)
    run.item_started("fan", "c", done=2, total=4)
    time.sleep(0.05)
    run.heartbeat()
    print("ready", flush=True)
    time.sleep(600)
""")

KILLED_ID = "20260301T190000000000Z-0009"


def add_killed_run(root: Path) -> str:
    """Start a real writer process, let it get half way through the fan-out, and SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(root), KILLED_ID], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    wait_for(lambda: process_gone(proc.pid), "the killed writer to be gone")
    return KILLED_ID
