"""Conformance of a writer in another language (Node.js, ``tests/foreign_writer/writer.js``), written from
docs/format.md alone: its runs verify, read, and are judged alive while it lives and abandoned once killed.

It takes its run's lock the way the doc tells a runtime without flock(2) to: util-linux
flock(1) on an inherited file descriptor. CI has node and flock; without them this fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from run_helpers import cli_argv, process_gone, wait_for

from runjournal.journal.jsonl import JsonlStore

WRITER = Path(__file__).resolve().parent / "foreign_writer" / "writer.js"
FORMAT_DOC = (Path(__file__).resolve().parent.parent / "docs" / "format.md").read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def tools() -> None:
    """node and util-linux flock are required: a missing tool fails the test, it never skips."""
    for tool in ("node", "flock"):
        if shutil.which(tool) is None:
            pytest.fail(f"the foreign-writer conformance test needs {tool!r} on PATH")


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_argv(root, *args), capture_output=True, text=True, timeout=120)


def cli_json(root: Path, *args: str) -> Any:
    proc = cli(root, *args, "--json")
    return json.loads(proc.stdout)


def test_a_finished_foreign_run_verifies_and_reads(journal_dir: Path) -> None:
    """verify is clean; history, show and events read the run as the writer meant it."""
    subprocess.run(["node", str(WRITER), str(journal_dir), "node-run-1", "finish"], check=True, timeout=60)
    assert cli(journal_dir, "verify").returncode == 0
    [row] = cli_json(journal_dir, "history")
    assert (row["run_id"], row["workflow"], row["status"], row["reason"]) == (
        "node-run-1", "node-deploy", "failed", "step-failed")
    show = cli_json(journal_dir, "show", "node-run-1")
    ship = {item["name"]: (item["status"], item["exit_code"]) for item in show["steps"][1]["items"]}
    assert ship == {"eu": ("succeeded", 0), "us": ("succeeded", 0), "ap": ("failed", 143)}
    assert show["writer"]["tool_version"] == "node-writer 1.0" and show["anomalies"] == []
    lines = (journal_dir / "runs" / "node-run-1.jsonl").read_bytes().count(b"\n")
    events = cli(journal_dir, "events", "--jsonl").stdout.splitlines()
    assert len(events) == lines and cli(journal_dir, "reconcile").returncode == 0


@pytest.mark.parametrize("boot_id", ["stripped", "with-newline"])
def test_alive_is_never_abandoned_and_killed_is(journal_dir: Path, boot_id: str) -> None:
    """While the writer runs every read says running, whether or not it stripped the boot id; after SIGKILL it is abandoned."""
    env = os.environ | {"WRITER_RAW_BOOT_ID": "1" if boot_id == "with-newline" else "0"}
    writer = subprocess.Popen(["node", str(WRITER), str(journal_dir), "node-run-2", "hold", "0.2"],
                              stdout=subprocess.PIPE, text=True, env=env)
    store = JsonlStore(journal_dir)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        recorded = next(store.read("node-run-2").events()).writer.boot_id  # type: ignore[attr-defined]
        assert recorded.endswith("\n") == (boot_id == "with-newline")
        assert store.writer_alive("node-run-2"), "the flock(1) lock on the inherited fd is not held"
        wait_for(lambda: sum(1 for e in store.read("node-run-2").events() if e.type == "heartbeat") >= 3,
                 "three heartbeats")
        for _ in range(3):
            reconciled = cli_json(journal_dir, "reconcile")["runs"][0]
            assert reconciled["action"] == "alive", reconciled
            assert cli_json(journal_dir, "history")[0]["status"] == "running"
        assert cli(journal_dir, "verify").returncode == 0
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    wait_for(lambda: process_gone(writer.pid), "the killed writer to be gone")
    [row] = cli_json(journal_dir, "history")
    assert (row["status"], row["reason"]) == ("abandoned", "originating-process-not-alive")
    evidence = cli_json(journal_dir, "show", "node-run-2")["evidence"]
    assert evidence["pid"] == writer.pid and evidence["pid_state"] == "gone" and evidence["lock"] == "free"
    assert evidence["boot_id_recorded"].strip() == evidence["boot_id_now"].strip()
    assert cli(journal_dir, "verify").returncode == 0


def test_the_doc_tells_a_runtime_without_flock_what_the_writer_does() -> None:
    """The locking recipe the writer follows is the one docs/format.md gives."""
    assert "flock --exclusive --nonblock 3" in FORMAT_DOC
    assert "128 + N" in FORMAT_DOC or "128+N" in FORMAT_DOC
