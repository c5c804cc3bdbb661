"""Detached runs: a supervisor process that owns the run, outside the terminal and session of the client.

``runjournal run --detach`` (the client) starts this module (see :mod:`runjournal.cli.engine.selfexec`) in a new session
with stdin from ``/dev/null`` and stdout/stderr going to ``logs/<run_id>/supervisor.out``.
That process forks once more and exits, so the supervisor is not a session leader (it can
never acquire a controlling terminal) and is nobody's child but init's: killing the client,
its shell or its process group, or closing its terminal, does not reach it.

The client hands the store's address (:meth:`~runjournal.journal.store.Store.address`, which
may hold a database password: a pipe, unlike argv or the environment the steps inherit,
shows it to nobody), its side-file directory and the launch spec over a pipe, and waits on
a second pipe for one reply
line: the run id once the supervisor has created the run file (so the id it prints names a
run that exists), or the error that refused the start. EOF without a reply means the
supervisor died; its output file says why.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from runjournal.cli.engine.launch import LaunchSpec, begin_run
from runjournal.cli.engine.runfiles import SUPERVISOR_OUTPUT, ensure_log_dir
from runjournal.cli.engine.runner import Runner, stop_signals
from runjournal.cli.engine.selfexec import module_argv
from runjournal.cli.errors import JournalClickError
from runjournal.cli.rendering.sanitize import sanitize
from runjournal.journal.errors import JournalError
from runjournal.journal.fsio import open_regular
from runjournal.journal.status import STATUS_EXIT_CODES, ExitCode
from runjournal.journal.store import Store
from runjournal.journal.stores import open_store
from runjournal.projections.summary import PROJECTOR

READY_TIMEOUT = 60.0
"""Seconds the client waits for the supervisor to create the run."""

MAX_REPLY = 65536


def spawn(store: Store, spec: LaunchSpec, *, timeout: float = READY_TIMEOUT) -> str:
    """Start a supervisor for ``spec`` and return the run id once the run exists; raise on refusal."""
    handover = orjson.dumps({
        "store": store.address(), "side_files": str(store.side_files.root.resolve()), "spec": orjson.Fragment(spec.to_json()),
    })
    output = ensure_log_dir(store.side_files, spec.run_id) / SUPERVISOR_OUTPUT
    out_fd = open_regular(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    spec_r, spec_w = os.pipe()
    ready_r, ready_w = os.pipe()
    try:
        argv = module_argv("runjournal.cli.engine.supervisor", *title_args(spec),
                           "--spec-fd", str(spec_r), "--ready-fd", str(ready_w))
        intermediate = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            argv, stdin=subprocess.DEVNULL, stdout=out_fd, stderr=out_fd,
            pass_fds=(spec_r, ready_w), start_new_session=True, close_fds=True,
        )
    finally:
        for fd in (spec_r, ready_w, out_fd):
            os.close(fd)
    try:
        _send(spec_w, handover)
        reply = _receive(ready_r, timeout)
    finally:
        os.close(ready_r)
        intermediate.wait()
    return _run_id_from(reply, output)


def title_args(spec: LaunchSpec) -> list[str]:
    """The arguments that make ``ps``/``pgrep -f`` show which run a supervisor owns (argparse ignores them).

    A process's command line is what ``ps`` shows; it is chosen here rather than rewritten
    later (which needs a C extension), so it names the run id and workflow from the start.
    """
    return ["--run", spec.run_id, f"--workflow={spec.workflow.name}"]


def set_process_name(name: str) -> None:
    """Set the kernel's short name of this process (``ps -o comm``, ``top``) on Linux; elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(15, name.encode()[:15], 0, 0, 0)  # 15: PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _send(fd: int, data: bytes) -> None:
    try:
        with open(fd, "wb", closefd=True) as pipe:
            pipe.write(data)
    except BrokenPipeError:
        pass  # the supervisor died before reading; the reply pipe's EOF reports it


def _receive(fd: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data and len(data) < MAX_REPLY:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise JournalClickError(f"the supervisor did not start the run within {timeout:g}s", ExitCode.JOURNAL)
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data


def _run_id_from(reply: bytes, output: Path) -> str:
    try:
        doc = orjson.loads(reply)
    except orjson.JSONDecodeError:
        last = _last_line(output)
        raise JournalClickError(f"the supervisor exited before starting the run{': ' + last if last else ''}; "
                                f"see {output}", ExitCode.JOURNAL) from None
    if "run_id" in doc:
        return str(doc["run_id"])
    _discard(output)
    raise JournalClickError(str(doc.get("error", "the supervisor refused to start the run")),
                            int(doc.get("exit_code", ExitCode.JOURNAL)))


def _last_line(output: Path) -> str:
    """The last line the supervisor wrote (its error, usually), shortened."""
    try:
        with open(output, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return sanitize(lines[-1], keep_newlines=False)[:300] if lines else ""


def _discard(output: Path) -> None:
    """Remove the log directory made for a run that never started (if nothing else is in it)."""
    try:
        output.unlink()
        output.parent.rmdir()
    except OSError:
        pass


def _reply(fd: int, doc: dict[str, object]) -> None:
    try:
        os.write(fd, orjson.dumps(doc) + b"\n")
    except OSError:
        pass  # the client is gone; the run goes on regardless
    finally:
        os.close(fd)


def supervise(store: Store, spec: LaunchSpec, ready_fd: int) -> int:
    """Be the writer of the run described by ``spec``: create it, report, run it; return the exit code."""
    runner = Runner(store, spec.workflow, skip=spec.skip, inputs=spec.inputs)
    with stop_signals(runner, (signal.SIGINT, signal.SIGTERM)):
        try:
            run = begin_run(store, spec)
        except JournalError as exc:
            _reply(ready_fd, {"error": str(exc), "exit_code": int(JournalClickError.from_error(exc).exit_code)})
            return ExitCode.JOURNAL
        _reply(ready_fd, {"run_id": run.run_id})
        print(f"supervisor pid {os.getpid()} runs {run.run_id} ({run.location})", flush=True)
        try:
            with run:
                outcome = runner.execute(run)
        except JournalError as exc:  # the store refused us for good (fenced, gone): the steps are stopped by now
            print(f"runjournal: error: {sanitize(str(exc))}", flush=True)
            return ExitCode.JOURNAL
    print(f"run {run.run_id} {outcome.status}", flush=True)
    return int(STATUS_EXIT_CODES[outcome.status])


def main(argv: list[str] | None = None) -> int:
    """Entry point of the supervisor process (started by :func:`spawn`, not by users)."""
    parser = argparse.ArgumentParser(prog="runjournal-supervisor")
    parser.add_argument("--spec-fd", type=int, required=True)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--run", help="the run id (for ps; the spec is authoritative)")
    parser.add_argument("--workflow", help="the workflow name (for ps)")
    args = parser.parse_args(argv)
    set_process_name("runjournal-sup")
    if os.fork() != 0:
        os._exit(0)  # the client reaps this parent at once; the child is reparented to init
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with open(args.spec_fd, "rb", closefd=True) as pipe:
        handover = orjson.loads(pipe.read())
    os.set_inheritable(args.ready_fd, False)
    store = open_store(handover["store"], local_root=Path(handover["side_files"]), projector=PROJECTOR)
    return supervise(store, LaunchSpec.from_json(orjson.dumps(handover["spec"])), args.ready_fd)


if __name__ == "__main__":
    sys.exit(main())
