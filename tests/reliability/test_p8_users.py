"""Promise 8 (part 3): reading another user's journal never changes what that user can do.

Root reads (and reconciles) a journal owned by an unprivileged user: it saves no history
index there, the ``abandoned`` line it appends keeps the run file the user's, and the
quarantine file it makes for a torn tail is given to the user. Afterwards the user can
append to the run, create the index and remove what root left.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runjournal.journal.testing import make_progress, make_started, write_journal

from .figures import record
from .helpers import dead_identity, run_cli

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")

USER = 4242
RUN_ID = "20260101T000000000000Z-05e5"


@pytest.fixture
def user_root() -> Iterator[Path]:
    """A journal root owned by uid 4242, in a directory that user can reach."""
    base = Path(tempfile.mkdtemp(prefix="rj-users-", dir="/tmp"))
    os.chmod(base, 0o755)
    root = base / "journal"
    try:
        write_journal(root, [make_started(RUN_ID, workflow="w", steps=["s"], writer=dead_identity()),
                             make_progress(1, "s", run_id=RUN_ID)], fragment=b'{"v":1,"run_id":"torn')
        for path in (base, *base.rglob("*")):
            os.chown(path, USER, USER)
        yield root
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _as_user(*argv: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    def become() -> None:
        os.setgroups([])
        os.setgid(USER)
        os.setuid(USER)

    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "NO_COLOR": "1"}
    return subprocess.run(list(argv), cwd=cwd, env=env, preexec_fn=become, capture_output=True, timeout=30)


def test_root_reading_a_users_journal_leaves_it_usable(user_root: Path) -> None:
    """After root's history (which reconciles an orphan with a torn tail) the user owns every file and can use them."""
    result = run_cli(user_root, "history", "--json")
    assert result.code == 0 and result.json()[0]["status"] == "abandoned", result.describe()  # type: ignore[index]
    assert not (user_root / "index").exists(), "root saved a history index in the user's journal"
    files = [p for p in user_root.rglob("*")]
    foreign = [str(p) for p in files if p.lstat().st_uid != USER]
    assert not foreign, foreign
    (quarantine,) = (user_root / "runs").glob("*.torn-*")
    run_file = user_root / "runs" / f"{RUN_ID}.jsonl"
    # The interpreter lives where the user cannot reach, so the user's side is checked with the shell:
    # append to the run file, create the index directory, remove the quarantine file.
    for command in (f"printf '' >> {run_file}", f"mkdir {user_root / 'index'}", f"rm {quarantine}"):
        done = _as_user("/bin/sh", "-c", command, cwd=user_root.parent)
        assert done.returncode == 0, (command, done.stderr)
    assert not quarantine.exists()
    record(8, "root reads a user's journal", len(foreign), files_checked=len(files), user_actions_ok=3)


def test_root_logs_of_a_users_run(user_root: Path) -> None:
    """root can read the step output kept in a user's journal (the user's directories are not 'planted')."""
    log = user_root / "logs" / RUN_ID / "s.log"
    log.parent.mkdir(parents=True, mode=0o700)
    log.write_text("output of s\n")
    for path in (user_root / "logs", log.parent, log):
        os.chown(path, USER, USER)
    result = run_cli(user_root, "logs", RUN_ID, "--step", "s")
    assert result.code == 0 and "output of s" in result.stdout, result.describe()
