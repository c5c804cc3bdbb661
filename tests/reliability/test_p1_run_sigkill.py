"""Promise 1 (attached ``runjournal run``): SIGKILLing the runner loses nothing it acknowledged.

The side channel is the workflow's own commands: each one first appends its name to a side
file. A command can only run after the runner's append of its ``started`` (the step's, or
the item's) returned, and a step can only begin after the previous one's ``succeeded``
returned. So after the kill every name in the side file must have its ``started`` event in
the journal, and every step before the last one seen must have ended.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.verify import verify_file

from .figures import record
from .helpers import cli_command, read_chain, run_cli, scale

pytest.importorskip("runjournal.cli.commands.run")
history = pytest.importorskip("runjournal.projections.history")

RUN_KILLS = scale(10, 200)
ITEMS = [f"i{n:02d}" for n in range(30)]


def workflow(path: Path, side: Path) -> Path:
    """A three-step workflow whose every command first records itself in ``side``."""
    quoted = str(side).replace("'", "'\\''")
    items = ", ".join(f'"{i}"' for i in ITEMS)
    path.write_text(
        f"""name = "killme"
heartbeat_interval = 1

[[steps]]
name = "first"
run = "echo first >> '{quoted}'"

[[steps]]
name = "fan"
foreach = [{items}]
concurrency = 3
run = "echo {{item}} >> '{quoted}'; sleep 0.01"

[[steps]]
name = "last"
run = "echo last >> '{quoted}'"
"""
    )
    return path


def _side_lines(side: Path) -> list[str]:
    try:
        return side.read_text().split()
    except FileNotFoundError:
        return []


def kill_runner(base: Path, index: int, rng: random.Random) -> dict[str, object]:
    """Start `runjournal run`, SIGKILL it once a random number of commands ran, check the journal."""
    root, side = base / f"r{index}" / "root", base / f"r{index}" / "side"
    root.parent.mkdir(parents=True)
    flow = workflow(root.parent / "flow.toml", side)
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("RUNJOURNAL_CRASH_AT", None)
    proc = subprocess.Popen([*cli_command(), "--root", str(root), "run", str(flow)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    target = rng.randint(0, len(ITEMS) + 2)
    deadline = time.monotonic() + 30
    while len(_side_lines(side)) < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(rng.uniform(0, 0.01))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return check_run(root, side, through_cli=index % 5 == 0)


def _status_via_cli(root: Path, run_id: str) -> str:
    listed = run_cli(root, "history", "--json")
    assert listed.code == 0, listed.describe()
    verified = run_cli(root, "verify", run_id)
    assert verified.code == 0, verified.describe()
    return {row["run_id"]: row["status"] for row in listed.json()}[run_id]  # type: ignore[union-attr]


def _status_via_api(store: JsonlStore, run_id: str) -> str:
    current = {c.run_id: c for c in history.run_states(store)}[run_id]
    assert current.error is None, current.error
    return current.state.status


def check_run(root: Path, side: Path, through_cli: bool) -> dict[str, object]:
    """Every command that ran has its started event; steps before it ended; history abandons the run."""
    store = JsonlStore(root)
    run_ids = list(store.run_ids())
    seen = _side_lines(side)
    if not run_ids:
        assert not seen, "commands ran but there is no run file"
        return {"status": "no-file", "acked": 0, "lost": 0}
    [run_id] = run_ids
    chain_before = read_chain(store.path(run_id), run_id)
    events = list(store.read(run_id).events())
    started_items = {e.item for e in events if e.type == "step-progress" and e.item and e.item_state == "started"}
    steps = {(e.step, e.state) for e in events if e.type == "step-progress" and e.item is None}
    lost = 0
    for name in seen:
        if name in ("first", "last"):
            lost += (name, "started") not in steps
        else:
            lost += name not in started_items
    if any(n != "first" for n in seen):
        lost += ("first", "succeeded") not in steps
    if "last" in seen:
        lost += ("fan", "succeeded") not in steps
    status = _status_via_cli(root, run_id) if through_cli else _status_via_api(store, run_id)
    finished = chain_before.types[-1:] == ["succeeded"]
    assert status == ("succeeded" if finished else "abandoned"), (run_id, status)
    after = read_chain(store.path(run_id), run_id)
    assert after.torn is None and after.types.count(status) == 1
    assert not list(verify_file(store.path(run_id), run_id))
    return {"status": status, "acked": len(seen), "lost": lost, "torn": chain_before.torn is not None}


@pytest.mark.slow
def test_sigkilled_runjournal_run_loses_no_acknowledged_step_or_item(tmp_path: Path) -> None:
    """Every step and item whose command ran is in the journal after SIGKILL, and history abandons the run."""
    seeds = [random.Random(f"p1-run-{i}").randrange(1 << 30) for i in range(RUN_KILLS)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda i: kill_runner(tmp_path, i, random.Random(seeds[i])), range(RUN_KILLS)))
    statuses = Counter(str(o["status"]) for o in outcomes)
    lost = sum(int(o["lost"]) for o in outcomes)  # type: ignore[call-overload]
    record(
        1, "runjournal run SIGKILL", lost, kills=RUN_KILLS,
        acked_commands=sum(int(o["acked"]) for o in outcomes),  # type: ignore[call-overload]
        torn_tails=sum(1 for o in outcomes if o.get("torn")), abandoned=statuses["abandoned"],
        finished_first=statuses["succeeded"], no_file=statuses["no-file"],
    )
    assert lost == 0
    assert statuses["abandoned"] >= RUN_KILLS // 2, statuses
