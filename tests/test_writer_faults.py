"""Write faults: a short write is cut back to whole lines and raised; a failed fsync stops the writer for good."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from runjournal.journal.errors import FsyncFailedError, JournalWriteError, ShortWriteError, WriterClosedError
from runjournal.journal.events import Cancelled, Heartbeat, StepProgress, Succeeded
from runjournal.journal.jsonl import writer as writer_module
from runjournal.journal.jsonl.reader import JsonlRunReader
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.run import start_run
from runjournal.journal.testing import make_started
from runjournal.journal.verify import verify_file

CHILD = Path(__file__).with_name("journal_child.py")


def fail_sync(fd: int) -> None:
    raise OSError(errno.EIO, "Input/output error")


def patch_sync(monkeypatch: pytest.MonkeyPatch, sync: object) -> None:
    """Replace the writer's fdatasync (the FileOps seam) for the rest of the test."""
    monkeypatch.setattr(writer_module.FileOps, "sync", staticmethod(sync))


def test_a_failed_fsync_raises_and_every_later_append_is_refused(
    journal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an fdatasync EIO the writer never appends again, whatever the event or durability need."""
    writer = JsonlStore(journal_dir).create(make_started(), durability="state")
    patch_sync(monkeypatch, fail_sync)
    writer.append(Heartbeat)  # heartbeats are not synced under "state"
    with pytest.raises(FsyncFailedError, match="fsync of .* failed: Input/output error") as info:
        writer.append(StepProgress, step="build", state="started")
    assert info.value.errno == errno.EIO and isinstance(info.value, OSError)
    size = writer.path.stat().st_size
    patch_sync(monkeypatch, lambda fd: None)  # even once fsync "works" again
    for event_cls, fields in [(Heartbeat, {}), (StepProgress, {"step": "build", "state": "failed"}),
                              (Succeeded, {}), (Cancelled, {"by": "me"})]:
        with pytest.raises(WriterClosedError, match="an earlier fsync failed"):
            writer.append(event_cls, **fields)
    assert writer.path.stat().st_size == size
    writer.close()


def test_durability_all_syncs_heartbeats_and_none_syncs_nothing(
    journal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The durability mode decides which appends call fdatasync."""
    synced: list[str] = []
    store = JsonlStore(journal_dir)
    for mode in ("state", "all", "none"):
        writer = store.create(make_started(run_id=f"run-{mode}"), durability=mode)
        patch_sync(monkeypatch, lambda fd, mode=mode: synced.append(mode))
        writer.append(Heartbeat)
        writer.append(StepProgress, step="build", state="started")
        writer.close()
    assert synced == ["state", "all", "all"]


def test_the_context_manager_surfaces_a_failed_fsync(journal_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the Python API the producer sees the FsyncFailedError itself, not a follow-on refusal."""
    patch_sync(monkeypatch, fail_sync)
    with pytest.raises(FsyncFailedError), start_run("wf", ["a"], root=journal_dir) as run:
        run.step_started("a")
    assert [e.type for e in JsonlRunReader(Path(run.location), run.run_id).events()] == ["started", "step-progress"]


def test_a_ctrl_c_stays_a_ctrl_c_when_the_cancel_cannot_be_recorded(
    journal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the disk is full when ``cancelled`` is written, the KeyboardInterrupt still propagates."""

    def disk_full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(KeyboardInterrupt), start_run("wf", ["a"], root=journal_dir) as run:
        monkeypatch.setattr(writer_module.FileOps, "write", staticmethod(disk_full))
        raise KeyboardInterrupt
    assert [e.type for e in JsonlRunReader(Path(run.location), run.run_id).events()] == ["started"]


def run_short_write(root: Path, extra: int) -> dict[str, object]:
    """Run the RLIMIT_FSIZE child and return its report."""
    result = subprocess.run(
        [sys.executable, str(CHILD), "short-write", str(root), "fsize-run", str(extra)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_short_write_is_cut_back_to_the_last_whole_line(journal_dir: Path) -> None:
    """A size limit hit mid-line: ShortWriteError, the partial line removed, later small appends still work."""
    report = run_short_write(journal_dir, 300)
    big, small = report["results"]  # type: ignore[misc]
    assert big["error"] == ShortWriteError.__name__ and "short write" in big["message"]
    assert big["size"] == report["size_before"]
    assert small == {"label": "small", "seq": 1}
    path = Path(report["path"])  # type: ignore[arg-type]
    data = path.read_bytes()
    assert data.endswith(b"\n")
    reader = JsonlRunReader(path, "fsize-run")
    assert [e.type for e in reader.events()] == ["started", "heartbeat"] and reader.torn_tail is None
    assert list(verify_file(path, "fsize-run")) == []


def test_a_write_at_the_size_limit_fails_cleanly(journal_dir: Path) -> None:
    """With no room at all, write fails (EFBIG) as JournalWriteError and the file is unchanged."""
    report = run_short_write(journal_dir, 0)
    for result in report["results"]:  # type: ignore[attr-defined]
        assert result["error"] == JournalWriteError.__name__
        assert result["errno"] == errno.EFBIG
        assert result["size"] == report["size_before"]
    path = Path(report["path"])  # type: ignore[arg-type]
    assert list(verify_file(path, "fsize-run")) == []
