"""A workflow file that is a named FIFO: runjournal says it waits for a writer, then runs what it is given."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

WORKFLOW = b'name = "piped"\n[[steps]]\nname = "a"\nrun = "true"\n'


def test_a_fifo_workflow_says_it_waits_then_runs(tmp_path: Path) -> None:
    """The first stderr line names the FIFO before the open blocks; once written to, the run succeeds."""
    fifo = tmp_path / "wf.toml"
    os.mkfifo(fifo)
    script = Path(sys.executable).parent / "runjournal"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "runjournal"]
    proc = subprocess.Popen([*argv, "--root", str(tmp_path / "journal"), "run", str(fifo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, NO_COLOR="1"))
    guard = threading.Timer(30, proc.kill)  # without the notice, readline would wait for ever: end it, and fail
    guard.start()
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline().decode()  # written before the open that blocks
        assert first == f"runjournal: waiting for a writer on the FIFO {fifo} (Ctrl-C to stop)\n"
        with open(fifo, "wb") as writer:
            writer.write(WORKFLOW)
        out, err = proc.communicate(timeout=60)
    finally:
        guard.cancel()
        proc.kill()
    assert proc.returncode == 0, err.decode()
    assert b"piped" in subprocess.run([*argv, "--root", str(tmp_path / "journal"), "history"], capture_output=True,
                                      check=True).stdout
