"""Promise 4: faults give clear errors and leave no partial line.

Disk full (ENOSPC, injected through the writer's FileOps seam, before and after a partial
write), a real short write (RLIMIT_FSIZE in a child), fsync EIO (never append again),
a read-only journal (reads still work and show the derived status), permission denied, and
the run file deleted or replaced under a live writer.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runjournal.journal.errors import (
    FsyncFailedError,
    JournalWriteError,
    ShortWriteError,
    WriterClosedError,
)
from runjournal.journal.events import StepProgress
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.jsonl.writer import FileOps
from runjournal.journal.run import Run, start_run
from runjournal.journal.verify import verify_file

from .figures import record
from .helpers import (
    assert_clean_failure,
    bind_file_modes,
    can_bind_file_modes,
    dead_identity,
    python_child,
    read_chain,
    run_cli,
    write_orphan,
)

reconcile = pytest.importorskip("runjournal.projections.reconcile")

FAULTS: dict[str, int] = {}
"""Fault cases tried per kind (recorded as figures once the module's tests have run)."""


@pytest.fixture(scope="module", autouse=True)
def _fault_figures() -> Iterator[None]:
    yield
    if FAULTS:
        record(4, "fault injection", 0, cases=sum(FAULTS.values()), **{k: v for k, v in sorted(FAULTS.items())})


def _count(kind: str) -> None:
    FAULTS[kind] = FAULTS.get(kind, 0) + 1


class FailingWrite(FileOps):
    """``write`` puts ``partial`` bytes of the line in the file (or returns short), then fails."""

    def __init__(self, err: int | None, partial: int, short: bool = False) -> None:
        self.err, self.partial, self.short = err, partial, short

    def write(self, fd: int, data: bytes) -> int:  # type: ignore[override]
        written = os.write(fd, data[: self.partial]) if self.partial else 0
        if self.short:
            return written
        raise OSError(self.err, os.strerror(self.err or errno.EIO))


class FailingSync(FileOps):
    """``sync`` fails with EIO, as after a writeback error (fsyncgate)."""

    @staticmethod
    def sync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))


def _orphan_run(store: JsonlStore, run_id: str = "fault-run") -> Run:
    run = start_run("faults", steps=["work"], store=store, run_id=run_id, identity=dead_identity())
    run.step_started("work")
    return run


def _assert_whole_lines(store: JsonlStore, run_id: str, size_before: int) -> None:
    path = store.path(run_id)
    assert path.stat().st_size == size_before, "a partial line was left behind"
    chain = read_chain(path, run_id)
    assert chain.torn is None
    assert not list(verify_file(path, run_id))


@pytest.mark.parametrize(
    ("err", "partial", "short", "expected"),
    [
        (errno.ENOSPC, 0, False, JournalWriteError),
        (errno.ENOSPC, 100, False, JournalWriteError),
        (errno.EDQUOT, 37, False, JournalWriteError),
        (errno.EIO, 5, False, JournalWriteError),
        (None, 100, True, ShortWriteError),
        (None, 0, True, ShortWriteError),
    ],
    ids=["enospc", "enospc-after-100-bytes", "edquot-after-37-bytes", "eio-after-5-bytes", "short-100", "short-0"],
)
def test_a_failed_write_is_a_clear_error_and_leaves_no_partial_line(
    store: JsonlStore, err: int | None, partial: int, short: bool, expected: type[Exception]
) -> None:
    """A write that fails or comes up short raises a one-line error and the file is cut back to whole lines;
    once space is back the writer appends again."""
    run = _orphan_run(store)
    size = store.path(run.run_id).stat().st_size
    run.writer.ops = FailingWrite(err, partial, short)
    with pytest.raises(expected) as caught:
        run.step_succeeded("work", message="x" * 300)
    message = str(caught.value)
    assert "\n" not in message and str(store.path(run.run_id)) in message
    if err == errno.ENOSPC:
        assert caught.value.errno == errno.ENOSPC and "No space left" in message
    _assert_whole_lines(store, run.run_id, size)
    run.writer.ops = FileOps()
    run.step_succeeded("work")
    run.writer.close()
    assert read_chain(store.path(run.run_id), run.run_id).types[-1] == "step-progress"
    _count("write_error_or_short_write_injected")


def _fsize_child(root: Path, room: int, big: int) -> list[str]:
    proc = python_child(
        "fsize", str(root), "fsize-run", "--room", str(room), "--big", str(big),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode().splitlines()


def test_a_real_file_size_limit_gives_a_short_write_and_no_partial_line(tmp_path: Path) -> None:
    """Under a real RLIMIT_FSIZE the kernel writes part of a big line: the writer reports it, cuts the
    partial line off, and a later line that fits is appended whole."""
    root = tmp_path / "root"
    lines = _fsize_child(root, room=1000, big=5000)
    assert lines[0].startswith("ACK 0 ")
    assert lines[1].startswith("ERROR ShortWriteError ") and "short write to " in lines[1], lines
    assert "1000 of " in lines[1] and "the partial line was removed" in lines[1], lines
    assert lines[2].startswith("ACK 1 "), lines
    chain = read_chain(JsonlStore(root).path("fsize-run"), "fsize-run")
    assert chain.torn is None and [seq for seq, _, _ in chain.entries] == [0, 1]
    _count("short_write_rlimit_fsize")


def test_a_file_size_limit_at_the_end_of_the_file_is_a_clear_error(tmp_path: Path) -> None:
    """With no room at all the kernel refuses the write (EFBIG): a clear error, nothing appended."""
    root = tmp_path / "root"
    lines = _fsize_child(root, room=0, big=10)
    assert lines[0].startswith("ACK 0 ")
    assert lines[1].startswith("ERROR JournalWriteError ") and "cannot append to " in lines[1], lines
    assert "File too large" in lines[1], lines
    chain = read_chain(JsonlStore(root).path("fsize-run"), "fsize-run")
    assert chain.torn is None and len(chain.entries) == 1
    _count("efbig_rlimit_fsize")


def test_after_a_failed_fsync_the_writer_never_appends_again(store: JsonlStore) -> None:
    """fsync EIO raises FsyncFailedError; every later append is refused and the file does not grow."""
    run = _orphan_run(store)
    run.writer.ops = FailingSync()
    with pytest.raises(FsyncFailedError, match="fsync of .* failed: Input/output error"):
        run.step_succeeded("work")
    size = store.path(run.run_id).stat().st_size
    run.writer.ops = FileOps()  # even with a healthy disk again: the lost pages cannot be trusted
    for append in (run.heartbeat, lambda: run.writer.append(StepProgress, step="work", state="started"), run.succeed):
        with pytest.raises(WriterClosedError, match="an earlier fsync failed"):
            append()
    assert store.path(run.run_id).stat().st_size == size
    run.writer.close()
    current = reconcile.current_state(store, run.run_id)
    assert current.state.status == "abandoned" and not list(verify_file(store.path(run.run_id), run.run_id))
    _count("fsync_eio")


def test_a_deleted_run_file_stops_the_writer(store: JsonlStore) -> None:
    """Deleting the run file under a live writer makes its next durable append fail clearly, for good."""
    run = _orphan_run(store)
    os.unlink(store.path(run.run_id))
    with pytest.raises(JournalWriteError, match="was deleted under this writer"):
        run.step_succeeded("work")
    with pytest.raises(WriterClosedError, match="deleted"):
        run.succeed()
    assert not store.path(run.run_id).exists()
    run.writer.close()
    _count("run_file_deleted")


def test_a_replaced_run_file_stops_the_writer_and_is_left_alone(store: JsonlStore) -> None:
    """A run file renamed over by another file makes the writer refuse; the new file is not touched."""
    run = _orphan_run(store)
    path = store.path(run.run_id)
    replacement = path.with_name("replacement.tmp")
    shutil.copyfile(path, replacement)
    os.replace(replacement, path)
    before = path.read_bytes()
    with pytest.raises(JournalWriteError, match="replaced by another file"):
        run.step_succeeded("work")
    with pytest.raises(WriterClosedError):
        run.fail()
    assert path.read_bytes() == before
    run.writer.close()
    _count("run_file_replaced")


def _make_read_only(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o400)
        os.chmod(dirpath, 0o500)


needs_binding_modes = pytest.mark.skipif(
    not can_bind_file_modes(), reason="running as root without CAP_SETPCAP: file modes cannot be made to bind"
)


@needs_binding_modes
def test_a_read_only_journal_still_reads_and_shows_the_derived_status(tmp_path: Path) -> None:
    """On a read-only journal, history, show and verify work, an orphan shows as abandoned?, and no
    byte changes."""
    root = tmp_path / "root"
    store = JsonlStore(root)
    write_orphan(store, "ro-orphan", events=3)
    _make_read_only(root)
    before = store.path("ro-orphan").read_bytes()
    listed = run_cli(root, "history", "--json", modes_bind=True)
    assert listed.code == 0, listed.describe()
    [row] = listed.json()  # type: ignore[misc]
    assert row["status"] == "abandoned?", row
    text = run_cli(root, "history", modes_bind=True)
    assert text.code == 0 and "abandoned?" in text.stdout, text.describe()
    shown = run_cli(root, "show", "ro-orphan", modes_bind=True)
    assert shown.code in (0, 4) and "abandoned?" in shown.stdout, shown.describe()
    verified = run_cli(root, "verify", modes_bind=True)
    assert verified.code == 0, verified.describe()
    reconciled = run_cli(root, "reconcile", "--json", modes_bind=True)
    assert reconciled.code == 0, reconciled.describe()
    assert [r["action"] for r in reconciled.json()["runs"]] == ["read-only"]  # type: ignore[index]
    assert store.path("ro-orphan").read_bytes() == before
    assert sorted(p.name for p in store.runs_dir.iterdir()) == ["ro-orphan.jsonl"]
    _count("read_only_journal")


@needs_binding_modes
def test_permission_denied_is_a_clear_error(tmp_path: Path) -> None:
    """Starting a run in a directory the user may not write, or reading a run file the user may not
    read, fails with a one-line error naming the path, never a traceback."""
    root = tmp_path / "root"
    store = JsonlStore(root)
    write_orphan(store, "locked-away", events=2)
    store.path("locked-away").chmod(0o000)
    store.runs_dir.chmod(0o500)
    result = run_cli(root, "show", "locked-away", modes_bind=True)
    assert_clean_failure(result, codes=(3,))
    assert "ermission denied" in result.stderr and "locked-away" in result.stderr, result.describe()
    verified = run_cli(root, "verify", "locked-away", modes_bind=True)
    assert verified.code == 1 and "ermission denied" in verified.stdout, verified.describe()
    started = python_child(
        "start", str(root), "denied-run", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=bind_file_modes,
    )
    out, err = started.communicate(timeout=30)
    assert started.returncode == 0, err.decode()[-1500:]
    assert out.decode().startswith("ERROR JournalWriteError ") and "ermission denied" in out.decode(), out
    assert "denied-run" in out.decode()
    _count("permission_denied")

