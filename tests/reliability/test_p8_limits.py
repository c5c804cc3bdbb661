"""Promise 8 (part 1): nothing the writer accepts is unreadable, and every bound holds.

Long values users make (a long argv, big inputs, long messages, a 20,000-item plan) are
kept within the line cap in the documented way and the run reads back; values no line can
carry are refused before a byte is written; intervals and timeouts have a range; a replay
never sleeps for a journal's gaps; no heartbeat follows the terminal event; a closed or
full stdout does not change a run's outcome.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runjournal.journal.codec import MAX_LINE_BYTES
from runjournal.journal.events import PlannedStep, StepProgress
from runjournal.journal.jsonl.reader import JsonlRunReader as RunReader
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.limits import BadDurationError, EventTooLargeError
from runjournal.journal.run import start_run
from runjournal.journal.testing import make_progress, make_started, make_succeeded, write_journal
from runjournal.journal.verify import verify_file

from .figures import record
from .helpers import cli_command, run_cli, scale

pytest.importorskip("runjournal.cli.commands.run")


def _workflow(directory: Path, text: str, name: str = "wf.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def _history(root: Path) -> list[dict]:  # type: ignore[type-arg]
    result = run_cli(root, "history", "--json")
    assert result.code == 0, result.describe()
    return result.json()  # type: ignore[return-value]


def _every_line_within_cap(root: Path) -> int:
    lines = 0
    for path in (root / "runs").glob("*.jsonl"):
        for line in path.read_bytes().splitlines(keepends=True):
            assert len(line) <= MAX_LINE_BYTES
            lines += 1
        assert not list(verify_file(path, path.name[: -len(".jsonl")]))
    return lines


def test_long_argv_and_inputs_are_clipped_and_kept_in_full(tmp_path: Path) -> None:
    """exec with ten 110 kB arguments and a 100 kB input succeeds and reads back; the full values are kept."""
    root = tmp_path / "root"
    big = ["a" * 110_000 + str(n) for n in range(10)]
    value = "v" * 100_000
    script = 'test "${#RUNJOURNAL_INPUT_big}" = 100000 && test "$#" = 10'
    result = run_cli(root, "exec", "-w", "big", "--input", f"big={value}", "--", "/bin/sh", "-c", script, "x", *big,
                     timeout=30)
    assert result.code == 0, result.describe()
    (row,) = _history(root)
    assert row["status"] == "succeeded"
    show = run_cli(root, "show", row["run_id"], "--json")
    assert show.code == 0, show.describe()
    started = next(RunReader(root / "runs" / f"{row['run_id']}.jsonl", row["run_id"]).events())
    assert started.inputs["big"].endswith("more bytes]") and len(started.inputs["big"]) < 20_000
    assert any(arg.endswith("more bytes]") for arg in started.writer.argv)
    full = json.loads((root / "logs" / row["run_id"] / "full-values.json").read_text())
    assert full["inputs"]["big"] == value and all(arg in full["argv"] for arg in big)
    lines = _every_line_within_cap(root)
    record(8, "long argv and inputs", 0, argv_bytes=sum(map(len, big)), input_bytes=len(value), lines_checked=lines)


def test_rerun_uses_the_full_input(tmp_path: Path) -> None:
    """rerun of a run whose input was clipped runs with the full value from the side files."""
    root = tmp_path / "root"
    wf = _workflow(tmp_path, 'name = "in"\n[[steps]]\nname = "check"\nrun = \'test "${#RUNJOURNAL_INPUT_k}" = 50000\'\n')
    first = run_cli(root, "run", str(wf), "--input", "k=" + "x" * 50_000, timeout=30)
    assert first.code == 0, first.describe()
    again = run_cli(root, "rerun", first.stdout.strip(), timeout=30)
    assert again.code == 0, again.describe()


def test_a_20k_item_plan_is_recorded_in_chunks_and_never_started_items_show(tmp_path: Path) -> None:
    """A 20,000-item fan-out (a 1.3 MB workflow) runs, reads back, and its items that never ran show as never started."""
    root = tmp_path / "root"
    items = ", ".join(f'"host-{n:05d}-{"x" * 40}"' for n in range(20_000))
    wf = _workflow(tmp_path, f'name = "wide"\n[[steps]]\nname = "fan"\nrun = "exit 3"\nforeach = [{items}]\n')
    assert wf.stat().st_size > 1_000_000
    result = run_cli(root, "run", str(wf), timeout=60)
    assert result.code == 1, result.describe()
    run_id = result.stdout.strip()
    show = run_cli(root, "show", run_id, "--json", timeout=30)
    assert show.code == 0, show.describe()
    detail = show.json()
    assert detail["status"] == "failed"  # type: ignore[index]
    assert len(detail["never_started"]) == 19_999 and len(detail["completed"]) == 1  # type: ignore[index]
    assert detail["steps"][0]["total"] == 20_000  # type: ignore[index]
    types = [json.loads(line)["type"] for line in (root / "runs" / f"{run_id}.jsonl").read_bytes().splitlines()]
    assert types[0] == "started" and types.count("items-planned") >= 4
    lines = _every_line_within_cap(root)
    record(8, "20k-item plan", 0, items=20_000, items_planned_events=types.count("items-planned"),
           never_started_shown=len(detail["never_started"]), lines_checked=lines)  # type: ignore[index]


def test_the_writer_refuses_what_no_reader_would_read(tmp_path: Path) -> None:
    """An event over the line cap, or with text JSON cannot carry, is refused before a byte is written."""
    store = JsonlStore(tmp_path)
    with start_run("w", ["s"], store=store, durability="none") as run:
        size = store.path(run.run_id).stat().st_size
        refused = 0
        for fields in ({"message": "m" * (2 << 20)}, {"item": "\udcff", "item_state": "started"},
                       {"exit_code": 2**70}):
            with pytest.raises(EventTooLargeError):
                run.writer.append(StepProgress, step="s", state="started", **fields)
            refused += 1
        assert store.path(run.run_id).stat().st_size == size
        run.progress("s", "started", message="x" * (3 << 20))  # the Run API clips messages instead
    assert len(list(RunReader(store.path(run.run_id), run.run_id))) == 3 and not list(verify_file(store.path(run.run_id), run.run_id))
    with pytest.raises(EventTooLargeError):
        start_run("w", [PlannedStep(name="fan", items=["i" * 5000])], store=store)
    assert len(list(store.run_ids())) == 1
    record(8, "writer refuses unreadable events", 0, refused=refused + 1, written_unreadable=0)


@pytest.mark.parametrize(("key", "value"), [("heartbeat_interval", "1e300"), ("heartbeat_interval", "1e-9"),
                                            ("timeout", "1e300"), ("timeout", "1e-9"), ("timeout", "nan")])
def test_intervals_and_timeouts_out_of_range_are_refused(tmp_path: Path, key: str, value: str) -> None:
    """A heartbeat interval or timeout outside the documented range is one line, exit 2, and no run."""
    step_key = f"{key} = {value}\n" if key == "timeout" else ""
    top_key = f"{key} = {value}\n" if key != "timeout" else ""
    wf = _workflow(tmp_path, f'name = "b"\n{top_key}[[steps]]\nname = "s"\nrun = "true"\n{step_key}')
    result = run_cli(tmp_path / "root", "run", str(wf))
    assert result.code == 2 and "Traceback" not in result.stderr, result.describe()
    assert result.stderr.count("\n") == 1 and "seconds from 0.01 to" in result.stderr, result.describe()
    assert not (tmp_path / "root" / "runs").exists() or not list((tmp_path / "root" / "runs").iterdir())
    with pytest.raises(BadDurationError):
        start_run("w", store=JsonlStore(tmp_path / "api"), heartbeat_interval=float(value))


def test_replay_caps_waits_on_absurd_gaps(tmp_path: Path) -> None:
    """replay --speed 1 over timestamps from year 1 to 9999 finishes in seconds, without a traceback."""
    run_id = "20260101T000000000000Z-0ae0"
    events = [make_started(run_id, ts=datetime(1, 1, 1, tzinfo=UTC)),
              make_progress(1, "s", run_id=run_id, ts=datetime(9999, 1, 1, tzinfo=UTC)),
              make_succeeded(2, run_id=run_id, ts=datetime(5000, 1, 1, tzinfo=UTC))]
    write_journal(tmp_path / "root", events)
    result = run_cli(tmp_path / "root", "replay", run_id, "--speed", "1", timeout=20)
    assert result.code == 0 and "Traceback" not in result.stderr, result.describe()
    assert result.seconds < 15
    record(8, "replay waits capped", 0, gap_years=9998, seconds=round(result.seconds, 2))


def test_no_heartbeat_after_the_terminal_event(tmp_path: Path) -> None:
    """A heartbeat thread racing the terminal event never appends after it."""
    store = JsonlStore(tmp_path)
    rng = random.Random(8)
    runs = scale(60, 300)
    late = 0
    for _ in range(runs):
        run = start_run("hb", store=store, durability="none", heartbeat_interval=0.01)
        run.start_heartbeats(0.01)
        time.sleep(rng.uniform(0, 0.03))
        run.succeed()
        time.sleep(0.02)  # the heartbeat thread gets its chance to append late
        run.close()
        types = [e.type for e in RunReader(store.path(run.run_id), run.run_id).events()]
        late += types.index("succeeded") != len(types) - 1
    assert late == 0
    record(8, "no heartbeat after terminal", late, runs=runs)


@pytest.mark.parametrize("sink", ["closed pipe", "/dev/full"])
def test_a_closed_or_full_stdout_does_not_change_the_outcome(tmp_path: Path, sink: str) -> None:
    """runjournal run with stdout closed (| true) or full (> /dev/full) runs every step and records succeeded."""
    root = tmp_path / "root"
    wf = _workflow(tmp_path, 'name = "out"\n[[steps]]\nname = "a"\nrun = "sleep 0.2"\n[[steps]]\nname = "b"\nrun = "true"\n')
    argv = [*cli_command(), "--root", str(root), "run", str(wf)]
    env = dict(os.environ, NO_COLOR="1")
    if sink == "/dev/full":
        with open("/dev/full", "wb") as full:
            proc = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, env=env, timeout=30)
    else:
        read_end, write_end = os.pipe()
        os.close(read_end)  # nobody reads: the first write gets EPIPE
        try:
            proc = subprocess.run(argv, stdout=write_end, stderr=subprocess.PIPE, env=env, timeout=30)
        finally:
            os.close(write_end)
    stderr = proc.stderr.decode()
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    assert "runjournal: warning: cannot write to stdout" in stderr
    (row,) = _history(root)
    assert row["status"] == "succeeded" and row["steps_done"] == 2
    record(8, f"stdout {sink}", 0, runs=1, abandoned=0)


def test_a_memory_limit_is_one_line_never_a_traceback(tmp_path: Path) -> None:
    """history and show of a 50,000-step run under a tight RLIMIT_AS end in success or one out-of-memory line.

    The limits leave the interpreter room to start (under ~40 MB CPython itself fails to import
    its modules, in ways no program can catch). The one other outcome allowed is an abort by a
    failed allocation inside a native extension (pydantic-core and orjson are Rust, whose
    allocator aborts instead of raising): Python never sees it; docs/reliability.md says so.
    """
    import resource

    run_id = "20260101T000000000000Z-0e0e"
    events = [make_started(run_id), *(make_progress(n, f"step-{n}", "skipped", run_id=run_id) for n in range(1, 50_001))]
    write_journal(tmp_path / "root", events)
    hit = native = 0
    for megabytes in (48, 56, 64, 1024):
        def limit(size: int = megabytes << 20) -> None:
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

        for command in (("history", "--no-reconcile"), ("show", run_id, "--no-reconcile")):
            proc = subprocess.run([*cli_command(), "--root", str(tmp_path / "root"), *command], capture_output=True,
                                  preexec_fn=limit, timeout=60, env=dict(os.environ, NO_COLOR="1"))
            stderr = proc.stderr.decode()
            assert "Traceback" not in stderr, stderr
            if proc.returncode == -signal.SIGABRT and megabytes < 1024:
                assert stderr.startswith("memory allocation of"), stderr
                native += 1
                continue
            assert proc.returncode in (0, 3), stderr
            if proc.returncode == 3:
                assert stderr.startswith("runjournal: error: out of memory") and stderr.count("\n") == 1, stderr
                hit += 1
    assert hit >= 1
    record(8, "memory limit hit", 0, limits_tried=4, commands_over_limit=hit, native_aborts=native, tracebacks=0)
