"""runjournal as an outsider installs it: a wheel in a fresh venv, used from a project full of look-alike names.

Builds the wheel, installs it (not editable) with pip into a new venv, and from a directory
holding ``journal/``, ``cli/__init__.py``, ``projections.py`` and ``runjournal.py`` (each
one raising if imported) runs a detached two-step workflow to success, ``history``, the
README's Python API example, an import of the shipped testing helpers, and ``mypy
--strict`` on a user file. The installed RECORD names one top-level import name.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BOOBY_TRAP = "raise ImportError('the project next door was imported instead of runjournal')\n"
WORKFLOW = """name = "install-check"

[[steps]]
name = "first"
run = "echo one"

[[steps]]
name = "second"
run = "echo two"
"""
USER_FILE = '''from pathlib import Path

from runjournal import MemoryStore, RunState, Store, fold, open_store, start_run


def record(root: Path) -> str:
    store: Store = open_store(root)
    with start_run("deploy", steps=["build"], store=store) as run:
        run.step_started("build")
        run.step_succeeded("build", exit_code=0)
    state: RunState = fold(store.read(run.run_id).events())
    return str(state.status)


def in_memory() -> int:
    store = MemoryStore()
    with start_run("t", store=store) as run:
        run.heartbeat()
    return len(list(store.run_ids()))
'''

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with the wheel built from this checkout installed, with its ``testing`` extra, and mypy."""
    base = tmp_path_factory.mktemp("install")
    dist = base / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)], cwd=base)
    wheels = list(dist.glob("runjournal-*.whl"))
    assert len(wheels) == 1, wheels
    _run([sys.executable, "-m", "venv", str(base / "venv")], cwd=base)
    pip = base / "venv" / "bin" / "pip"
    _run([str(pip), "install", "-q", f"{wheels[0]}[testing]", "mypy"], cwd=base)
    yield base / "venv"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory full of names a generic install would collide with, each a booby trap."""
    (tmp_path / "journal").mkdir()
    (tmp_path / "journal" / "__init__.py").write_text(BOOBY_TRAP)
    (tmp_path / "journal" / "NOTES.md").write_text("our own journal\n")
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "__init__.py").write_text(BOOBY_TRAP)
    (tmp_path / "projections.py").write_text(BOOBY_TRAP)
    (tmp_path / "runjournal.py").write_text(BOOBY_TRAP)
    (tmp_path / "wf.toml").write_text(WORKFLOW)
    return tmp_path


def _run(argv: list[str], cwd: Path, timeout: float = 600, **kwargs: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc  # type: ignore[no-any-return]


def test_the_record_has_exactly_one_top_level_import_name(venv: Path) -> None:
    """The installed RECORD lists files under runjournal/ (and the console script), nothing else at the top level."""
    record = next(venv.glob("lib/python*/site-packages/runjournal-*.dist-info/RECORD"))
    tops = {line.split(",")[0].split("/")[0] for line in record.read_text().splitlines() if line}
    tops = {top for top in tops if not top.endswith(".dist-info") and top != ".."}
    assert tops == {"runjournal"}
    files = record.read_text()
    assert "runjournal/py.typed," in files and "runjournal/journal/testing/contract.py," in files


def test_a_detached_run_and_history_work_from_a_project_with_look_alike_folders(venv: Path, project: Path) -> None:
    """From a directory holding journal/, cli/, projections.py and runjournal.py, a detached run succeeds and shows in history."""
    runjournal = str(venv / "bin" / "runjournal")
    run_id = _run([runjournal, "run", "--detach", "wf.toml"], cwd=project).stdout.strip()
    deadline = time.monotonic() + 60
    while True:
        rows = json.loads(_run([runjournal, "history", "--json"], cwd=project).stdout)
        if rows and rows[0]["status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [(row["run_id"], row["status"], row["steps_done"]) for row in rows] == [(run_id, "succeeded", 2)]
    text = _run([runjournal, "history"], cwd=project).stdout
    assert run_id in text and "succeeded" in text


def test_the_readme_python_example_runs_as_written(venv: Path, project: Path) -> None:
    """The README's Python API example, run with the project as the current directory, journals a succeeded run."""
    readme = (REPO / "README.md").read_text()
    code = re.search(r"## Python API\s+```python\n(.*?)```", readme, re.S)
    assert code is not None, "README.md has no Python API example"
    example = project.parent / f"{project.name}-example.py"
    example.write_text(code.group(1))
    _run([str(venv / "bin" / "python"), str(example)], cwd=project)
    listed = json.loads(_run([str(venv / "bin" / "runjournal"), "history", "--json"], cwd=project).stdout)
    assert [(row["workflow"], row["status"]) for row in listed] == [("deploy", "succeeded")]


def test_the_testing_helpers_and_python_dash_m_work_in_a_regular_install(venv: Path, tmp_path: Path) -> None:
    """The shipped testing helpers (strategies, builders, the store contract) import, and ``python -m runjournal`` runs."""
    code = ("from runjournal.journal.testing import event_streams, make_stream\n"
            "from runjournal.journal.testing.contract import StoreContract\n"
            "print(len(make_stream('r1')))\n")
    assert _run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path).stdout.strip().isdigit()
    version = _run([str(venv / "bin" / "python"), "-m", "runjournal", "--version"], cwd=tmp_path).stdout
    assert version.startswith("runjournal, version ")


def test_mypy_strict_accepts_a_user_file_of_the_public_api(venv: Path, tmp_path: Path) -> None:
    """``mypy --strict`` on a user file that uses the public API finds the package typed (py.typed) and no error."""
    user = tmp_path / "user.py"
    user.write_text(USER_FILE)
    proc = _run([str(venv / "bin" / "mypy"), "--strict", "--no-incremental", str(user)], cwd=tmp_path)
    assert "Success" in proc.stdout


def test_the_shipped_examples_print_and_run_from_a_regular_install(venv: Path, tmp_path: Path) -> None:
    """`runjournal example fanout` works from the installed wheel, and its output runs as a workflow."""
    runjournal = str(venv / "bin" / "runjournal")
    names = _run([runjournal, "example"], cwd=tmp_path).stdout.split()
    assert names == ["fanout", "hello"]
    (tmp_path / "hello.toml").write_text(_run([runjournal, "example", "hello"], cwd=tmp_path).stdout)
    _run([runjournal, "run", "hello.toml"], cwd=tmp_path)
    rows = json.loads(_run([runjournal, "history", "--json"], cwd=tmp_path).stdout)
    assert [(row["workflow"], row["status"]) for row in rows] == [("hello", "succeeded")]
