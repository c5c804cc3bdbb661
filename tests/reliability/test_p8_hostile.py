"""Promise 8 (part 4): hostile items, workflow files and environments, through every command.

Each input goes to ``runjournal run`` (or ``exec``) as a subprocess under the usual timeout
and memory limit. It must be refused with a one-line error, or accepted; an accepted run
must then read back through every read command (history, show, replay, verify, logs,
reconcile, export) with no traceback, no hang, and never as ``damaged`` or ``unreadable``.
``{item}`` never executes an item: a marker file an item tries to create must not appear.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .figures import record
from .helpers import CliResult, assert_clean_failure, run_cli

pytest.importorskip("runjournal.cli.commands.run")

MARK = "PWNED"
HOSTILE_ITEMS = [
    f"$(touch {MARK})", f"`touch {MARK}`", f"; touch {MARK}", f"a\"b$(touch {MARK})\"", "c'd", "\\", "*", "-n",
    "two words", "new\nline", "tab\there", "\x1b[31mred\x1b[0m", "\u202eevil", "..", "../../etc/passwd", "é€😀",
    " lead", "x" * 4000, f"' ; touch {MARK} ; '", f'" ; touch {MARK} ; "',
]
CONTEXTS = {
    "bare": "printf '%s' {item}",
    "double": 'printf "%s" "{item}"',
    "single": "printf '%s' '{item}'",
    "subst": 'printf "%s" "$(printf "%s" {item})"',
}


def _toml(text: str) -> str:
    """``text`` as a TOML basic string (control characters escaped, the rest as is)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _items_workflow() -> str:
    items = ", ".join(_toml(item) for item in HOSTILE_ITEMS)
    steps = "".join(f'\n[[steps]]\nname = "{name}"\nrun = {_toml(run)}\nforeach = [{items}]\nconcurrency = 4\n'
                    for name, run in CONTEXTS.items())
    return f'name = "hostile-items"\n{steps}'


def _workflow(text: str) -> str:
    return f'name = "w"\n[[steps]]\nname = "s"\nrun = "true"\n{text}'


HOSTILE_WORKFLOWS: dict[str, bytes] = {
    "not-utf8": b'name = "w\xff"\n[[steps]]\nname = "s"\nrun = "true"\n',
    "nul-byte": b'name = "w"\n[[steps]]\nname = "s"\nrun = "tr\x00ue"\n',
    "bom": b"\xef\xbb\xbf" + _workflow("").encode(),
    "deep-nesting": ('name = "w"\nx = ' + "[" * 5000 + "]" * 5000 + "\n").encode(),
    "huge-integer-timeout": _workflow("timeout = " + "9" * 5000).encode(),
    "timeout-1e300": _workflow("timeout = 1e300").encode(),
    "timeout-inf": _workflow("timeout = inf").encode(),
    "heartbeat-nan": b'name = "w"\nheartbeat_interval = nan\n[[steps]]\nname = "s"\nrun = "true"\n',
    "heartbeat-1e-9": b'name = "w"\nheartbeat_interval = 1e-9\n[[steps]]\nname = "s"\nrun = "true"\n',
    "item-over-limit": _workflow('foreach = ["' + "i" * 5000 + '"]').encode(),
    "duplicate-at-the-end": _workflow("foreach = [" + ", ".join(f'"i{n}"' for n in range(50_000)) + ', "i0"]').encode(),
    "items-not-strings": _workflow("foreach = [1, 2]").encode(),
    "empty-item": _workflow('foreach = [""]').encode(),
    "name-with-escapes": b'name = "\\u001b[2Jwf"\n[[steps]]\nname = "s"\nrun = "true"\n',
    "name-with-bidi": 'name = "\u202ewf\u2066"\n[[steps]]\nname = "\u200fs"\nrun = "true"\n'.encode(),
    "long-name": ('name = "' + "n" * 10_000 + '"\n[[steps]]\nname = "s"\nrun = "true"\n').encode(),
    "200-steps": ('name = "w"\n' + "".join(f'[[steps]]\nname = "s{n}"\nrun = "true"\n' for n in range(200))).encode(),
    "empty-file": b"",
    "only-a-table": b"[steps]\n",
}
ACCEPTED_WORKFLOWS = {"name-with-bidi", "200-steps"}
"""Workflow files that are valid (odd, not wrong): they must run and read back."""

HOSTILE_ENVIRONMENTS: dict[str, dict[str, str]] = {
    "ascii-locale-colour-forced": {"LANG": "C", "LC_ALL": "C", "FORCE_COLOR": "1", "CLICOLOR_FORCE": "1"},
    "no-home-empty-path": {"HOME": "/nonexistent", "PATH": ""},
    "dumb-terminal-bad-columns": {"TERM": "dumb", "COLUMNS": "abc", "LINES": "-5"},
    "crash-at-unknown-point": {"RUNJOURNAL_CRASH_AT": "nowhere:1"},
}


def _no_traceback(result: CliResult) -> None:
    assert "Traceback" not in result.stderr and result.code in (0, 1, 2, 3, 4, 5), result.describe()


def read_back(root: Path, run_id: str, every: bool = True) -> list[CliResult]:
    """Every read command (or, not ``every``, the three that read it whole) on an accepted run: none may fail
    on it, or call it damaged or unreadable."""
    commands: list[tuple[str, ...]] = [("history", "--json"), ("show", run_id, "--json"), ("verify", run_id)]
    if every:
        commands += [("show", run_id), ("replay", run_id, "--jsonl"), ("logs", run_id), ("reconcile", "--dry-run"),
                     ("export", str(root.parent / "export"))]
    results = [run_cli(root, *command, timeout=60) for command in commands]
    for result in results:
        _no_traceback(result)
        assert result.code == 0, result.describe()
        assert '"damaged"' not in result.stdout and '"unreadable"' not in result.stdout, result.describe()
    return results


def test_hostile_items_never_execute_and_read_back(tmp_path: Path) -> None:
    """Items with quotes, $(...), backticks, escapes and newlines run as data in every quoting context."""
    root, wf = tmp_path / "root", tmp_path / "items.toml"
    wf.write_text(_items_workflow())
    result = run_cli(root, "run", str(wf), timeout=120)
    assert result.code == 0, result.describe()
    run_id = result.stdout.strip()
    executed = [p for p in (tmp_path, Path.cwd(), root) if (p / MARK).exists()]
    assert not executed, executed
    from runjournal.cli.engine.runfiles import unit_log_path

    wrong = [(step, item) for step in CONTEXTS for item in HOSTILE_ITEMS
             if unit_log_path(root / "logs" / run_id, step, item).read_text() != item]
    assert not wrong, wrong[:3]
    reads = read_back(root, run_id)
    record(8, "hostile items x quoting contexts", len(executed) + len(wrong), items=len(HOSTILE_ITEMS),
           contexts=len(CONTEXTS), commands=len(reads) + 1, executed=len(executed))


def _one_workflow(base: Path, name: str) -> tuple[str, CliResult]:
    root, wf = base / name / "root", base / name / "wf.toml"
    wf.parent.mkdir(parents=True)
    wf.write_bytes(HOSTILE_WORKFLOWS[name])
    result = run_cli(root, "run", str(wf), timeout=60)
    if name in ACCEPTED_WORKFLOWS:
        assert result.code == 0, result.describe()
        read_back(root, result.stdout.strip(), every=False)
    else:
        assert_clean_failure(result, (2,))
        assert len(result.stderr.splitlines()) == 1, result.describe()
        assert not (root / "runs").exists() or not list((root / "runs").iterdir()), "a refused workflow left a run"
    return name, result


def test_hostile_workflow_files(tmp_path: Path) -> None:
    """Hostile workflow files are refused in one line (exit 2) or, if valid, run and read back."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda name: _one_workflow(tmp_path, name), sorted(HOSTILE_WORKFLOWS)))
    slowest = max(r.seconds for _, r in results)
    record(8, "hostile workflow files", 0, files=len(results), refused=len(results) - len(ACCEPTED_WORKFLOWS),
           accepted_and_read_back=len(ACCEPTED_WORKFLOWS), max_seconds=round(slowest, 2), tracebacks=0, hangs=0)


def _env_case(base: Path, name: str) -> int:
    root, wf = base / name / "root", base / name / "wf.toml"
    wf.parent.mkdir(parents=True)
    wf.write_text('name = "env"\n[[steps]]\nname = "s"\nrun = "/bin/echo é€ \\u001b[31m"\n')
    env = HOSTILE_ENVIRONMENTS[name]
    ran = run_cli(root, "run", str(wf), env=env)
    assert ran.code == 0, ran.describe()
    run_id = ran.stdout.strip()
    commands = [("history",), ("show", run_id), ("logs", run_id)]
    for command in commands:
        result = run_cli(root, *command, env=env)
        assert result.code == 0 and "Traceback" not in result.stderr, result.describe()
        assert "\x1b[31m" not in result.stdout, result.describe()
    return len(commands) + 1


def test_hostile_environments(tmp_path: Path) -> None:
    """Odd locales, terminals, HOME, PATH and colour settings: every command works and stays terminal-safe."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = list(pool.map(lambda name: _env_case(tmp_path, name), sorted(HOSTILE_ENVIRONMENTS)))
    record(8, "hostile environments", 0, environments=len(counts), command_runs=sum(counts), tracebacks=0)


def test_undecodable_argv_bytes_are_kept_readable(tmp_path: Path) -> None:
    """Command-line bytes that are not UTF-8 (in exec's argv and an input) are recorded escaped and read back."""
    root = tmp_path / "root"
    result = run_cli(root, "exec", "-w", "bytes", "--input", "k=\udcff", "--", "/bin/echo", "caf\udce9")
    assert result.code == 0, result.describe()
    (row,) = read_back(root, _only_run(root))[0].json()  # type: ignore[misc]
    assert row["status"] == "succeeded"


def _only_run(root: Path) -> str:
    (path,) = (root / "runs").glob("*.jsonl")
    return path.name[: -len(".jsonl")]


PLANTS: dict[str, Callable[[Path], None]] = {
    "fifo": lambda path: os.mkfifo(path, 0o600),
    "directory": lambda path: path.mkdir(mode=0o700),
}


@pytest.mark.parametrize("kind", sorted(PLANTS))
def test_logs_opens_only_regular_files(tmp_path: Path, kind: str) -> None:
    """A FIFO or a directory planted at a step's log path gives one error line, never a hang."""
    root, wf = tmp_path / "root", tmp_path / "wf.toml"
    wf.write_text('name = "p"\n[[steps]]\nname = "s"\nrun = "true"\n')
    run_id = run_cli(root, "run", str(wf)).stdout.strip()
    log = root / "logs" / run_id / "s.log"
    log.unlink()
    PLANTS[kind](log)
    result = run_cli(root, "logs", run_id)
    assert_clean_failure(result, (3,))
    assert "not a regular file" in result.stderr and len(result.stderr.splitlines()) == 1, result.describe()


@pytest.mark.parametrize("args", [("--root", "{missing}", "history"), ("--root", "{missing}", "show", "x"),
                                  ("--root", "{missing}", "verify"), ("--store", "{missing}", "history"),
                                  ("import", "{missing}"), ("--root", "{file}", "history")])
def test_a_missing_journal_directory_is_an_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    """Naming a journal directory (or an import source) that does not exist is exit 2 and one line, not "no runs"."""
    (tmp_path / "file").write_text("x")
    filled = [a.format(missing=tmp_path / "missing", file=tmp_path / "file") for a in args]
    import subprocess

    from .helpers import cli_command

    proc = subprocess.run([*cli_command(), *filled], capture_output=True, timeout=20, cwd=tmp_path,
                          env=dict(os.environ, NO_COLOR="1"))
    stderr = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in stderr, stderr
    assert not (tmp_path / "missing").exists()
