"""Promise 8 (part 2): a damaged run keeps its verified prefix visible, and nothing makes it worse.

A corrupt line in the middle, or lines appended by a second writer that ignored the lock
(duplicate seqs), end what verifies, not what is shown: history, show and replay show the
state before the first bad line as ``damaged`` and name the file, line and byte offset;
reconcile appends nothing; a damaged or unreadable run whose lock is held keeps blocking
its workflow.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from runjournal.journal.codec import encode_line
from runjournal.journal.testing import journal_lines, make_progress, make_started, write_journal

from .figures import record
from .helpers import dead_identity, run_cli

pytest.importorskip("runjournal.cli.commands.run")

RUN_ID = "20260101T000000000000Z-da3a"
DAMAGES: dict[str, Callable[[list[bytes]], list[bytes]]] = {}


def _events() -> list:  # type: ignore[type-arg]
    started = make_started(RUN_ID, workflow="deploy", steps=["build", "test", "ship"], writer=dead_identity())
    return [started, make_progress(1, "build", run_id=RUN_ID), make_progress(2, "build", "succeeded", run_id=RUN_ID),
            make_progress(3, "test", run_id=RUN_ID), make_progress(4, "test", "succeeded", run_id=RUN_ID)]


def _corrupt_middle(lines: list[bytes]) -> list[bytes]:
    return [*lines[:3], lines[3].replace(b'"test"', b'"tEst"'), *lines[4:]]


def _second_writer(lines: list[bytes]) -> list[bytes]:
    # A writer that ignored the lock read the run up to seq 2 and appended its own seq 3 after seq 4.
    events = _events()
    _, prev = encode_line(events[0], "0" * 64)
    for event in events[1:3]:
        _, prev = encode_line(event, prev)
    rogue, _ = encode_line(make_progress(3, "ship", run_id=RUN_ID), prev)
    return [*lines, rogue]


DAMAGES = {"corrupt-middle-line": _corrupt_middle, "duplicate-seq-from-a-second-writer": _second_writer}
FIRST_BAD = {"corrupt-middle-line": 4, "duplicate-seq-from-a-second-writer": 6}


def _build(root: Path, damage: str) -> Path:
    lines = DAMAGES[damage](journal_lines(_events()))
    return write_journal(root, _events(), data=b"".join(lines))


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_run_shows_its_verified_prefix(tmp_path: Path, damage: str) -> None:
    """history, show and replay show the state before the first bad line as damaged, and say where."""
    root = tmp_path / "root"
    path = _build(root, damage)
    before = path.read_bytes()
    bad = FIRST_BAD[damage]
    history = run_cli(root, "history", "--json")
    assert history.code == 3, history.describe()
    (row,) = history.json()  # type: ignore[misc]
    assert row["status"] == "damaged" and row["workflow"] == "deploy"
    assert row["steps_done"] == (1 if bad == 4 else 2) and f"{path}:{bad} (byte " in row["reason"]
    show = run_cli(root, "show", RUN_ID, "--json")
    assert show.code == 3 and show.stderr.count("runjournal: error:") == 1, show.describe()
    detail = show.json()
    assert detail["status"] == "damaged" and detail["damage"]["line"] == bad  # type: ignore[index]
    assert detail["damage"]["offset"] == sum(len(line) for line in before.splitlines(keepends=True)[: bad - 1])  # type: ignore[index]
    assert detail["events"] == bad - 1  # type: ignore[index]
    text = run_cli(root, "show", RUN_ID)
    assert "damaged" in text.stdout and "build" in text.stdout and f":{bad} (byte" in text.stderr, text.describe()
    replay = run_cli(root, "replay", RUN_ID, "--jsonl")
    assert replay.code == 3, replay.describe()
    assert [int(line.split('"seq":')[1].split(",")[0]) for line in replay.stdout.splitlines()] == list(range(bad - 1))
    reconcile = run_cli(root, "reconcile")
    assert reconcile.code == 3 and " damaged " in reconcile.stdout, reconcile.describe()
    assert path.read_bytes() == before, "reconcile must not append after a bad line"
    verify = run_cli(root, "verify", "--json")
    assert verify.code == 1 and verify.json()["runs"][0]["problems"][0]["line"] == bad  # type: ignore[index]
    record(8, f"damaged run: {damage}", 0, events_shown=bad - 1, bytes_changed=0)


def _hold_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


@pytest.mark.parametrize("kind", ["damaged", "unreadable"])
def test_a_locked_damaged_or_unreadable_run_still_blocks_its_workflow(tmp_path: Path, kind: str) -> None:
    """A run that cannot be read to its end, whose lock is held, counts as live for the one-run guard."""
    root = tmp_path / "root"
    path = _build(root, "corrupt-middle-line")
    if kind == "unreadable":
        path.write_bytes(b"not json\n" + path.read_bytes())
    wf = tmp_path / "wf.toml"
    wf.write_text('name = "deploy"\n[[steps]]\nname = "s"\nrun = "true"\n')
    fd = _hold_lock(path)
    try:
        refused = run_cli(root, "run", str(wf))
        assert refused.code == 3 and f"{kind} run whose lock is held" in refused.stderr, refused.describe()
    finally:
        os.close(fd)
    allowed = run_cli(root, "run", str(wf))
    assert allowed.code == 0, allowed.describe()
    record(8, f"guard counts a locked {kind} run", 0, refused=1, allowed_after_release=1)
