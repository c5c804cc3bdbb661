"""Every recipe in docs/forensics.md runs, and gives the same answer as `history` and `show`.

The journal has succeeded, failed, cancelled, SIGKILLed, torn, late-event, unknown-code and
damaged runs (``tests/forensic_journal.py``). jq recipes run in bash with the installed
``runjournal`` on PATH; DuckDB and pandas recipes run in this interpreter after their setup.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from forensic_journal import add_killed_run, build
from run_helpers import cli_argv

from runjournal.projections.eventtable import COLUMNS

DOC = (Path(__file__).resolve().parent.parent / "docs" / "forensics.md").read_text(encoding="utf-8")
RECIPE = re.compile(r"<!-- recipe: (?P<question>[\w-]+) (?P<tool>\w+)(?: (?P<var>\w+))? -->\n```\w+\n(?P<code>.*?)```",
                    re.DOTALL)
RECIPES = {(m["question"], m["tool"]): (m["var"], m["code"]) for m in RECIPE.finditer(DOC)}
QUESTIONS = ["abandoned", "in-flight", "mean-duration", "late", "failures"]
FIELDS = {
    "abandoned": ("run_id", "reason"),
    "in-flight": ("run_id", "step", "item"),
    "mean-duration": ("workflow", "step", "mean_seconds"),
    "late": ("run_id", "seq", "type"),
    "failures": ("step", "item", "failures"),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the forensic journal (as .runjournal) and the exported events files."""
    work = tmp_path_factory.mktemp("forensics-doc")
    build(work / ".runjournal")
    add_killed_run(work / ".runjournal")
    proc = shell(RECIPES[("export", "sh")][1], work)
    # exit 3: the damaged run is reported (once per export), its verified lines still exported
    assert proc.returncode == 3 and proc.stderr.count("runjournal: warning: run 20260301T180000000000Z-0008") == 2
    assert (work / "events.jsonl").stat().st_size > 0 and (work / "events.csv").stat().st_size > 0
    return work


def shell(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in bash in ``cwd`` with this installation's runjournal first on PATH."""
    if shutil.which("jq") is None:
        pytest.fail("the jq recipes need jq (apt-get install jq)")
    bin_dir = Path(cli_argv(cwd)[0]).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNJOURNAL_ROOT": str(cwd / ".runjournal")}
    return subprocess.run(["bash", "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def cli_json(cwd: Path, *args: str) -> Any:
    proc = subprocess.run(cli_argv(cwd / ".runjournal", *args), capture_output=True, text=True, timeout=120)
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def expected(workdir: Path) -> dict[str, Any]:
    """Each question's answer from `history --json` and `show --json` (runs `show` cannot read are left out)."""
    history = cli_json(workdir, "history", "--json")
    shows = [cli_json(workdir, "show", row["run_id"], "--json") for row in history if row["status"] != "unreadable"]
    durations: dict[tuple[str, str], list[float]] = {}
    failures: Counter[tuple[str, str]] = Counter()
    for show in shows:
        for step in show["steps"]:
            if step["started_at"] and step["ended_at"]:
                span = datetime.fromisoformat(step["ended_at"]) - datetime.fromisoformat(step["started_at"])
                durations.setdefault((show["workflow"], step["name"]), []).append(span.total_seconds())
            failures.update((step["name"], item["name"]) for item in step["items"] if item["status"] == "failed")
    return {
        "abandoned": {(r["run_id"], r["reason"]) for r in history if r["status"] in ("abandoned", "abandoned?")},
        "in-flight": {(s["run_id"], u["step"], u["item"]) for s in shows for u in s["in_flight"] if u["item"]},
        "mean-duration": {key: sum(v) / len(v) for key, v in durations.items()},
        "late": sorted((s["run_id"], e["seq"], e["type"]) for s in shows for e in s["late_events"]),
        "failures": sorted(((step, item, n) for (step, item), n in failures.items()), key=lambda t: (-t[2], t[:2])),
    }


def normalised(question: str, rows: list[tuple[Any, ...]]) -> Any:
    """A recipe's rows in the shape of :func:`expected`'s answer."""
    rows = [tuple(v.item() if hasattr(v, "item") else v for v in row) for row in rows]
    if question in ("abandoned", "in-flight"):
        assert len(set(rows)) == len(rows), rows
        return set(rows)
    if question == "mean-duration":
        return {(wf, step): mean for wf, step, mean in rows}
    if question == "late":
        return sorted(rows)
    return rows


def assert_same(question: str, got: Any, want: Any) -> None:
    assert want, f"the journal gives no answer to {question!r}: the test would prove nothing"
    if question == "mean-duration":
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], abs=1e-3), key
    else:
        assert got == want


def test_every_question_has_a_recipe_for_every_tool() -> None:
    """Five questions, three tools each, plus the export and the two setups."""
    assert {q for q, _ in RECIPES} == {*QUESTIONS, "export", "setup"}
    for question in QUESTIONS:
        assert {tool for q, tool in RECIPES if q == question} == {"jq", "duckdb", "pandas"}


def test_the_columns_are_documented_in_order() -> None:
    """The column table and the DuckDB column list name every column, in order, with its type."""
    table = DOC[DOC.index("<!-- columns -->"):].split("\n\n")[0]
    documented = re.findall(r"^\| `(\w+)` \| (\w+) \|", table, re.MULTILINE)
    assert documented == [(c.name, c.type) for c in COLUMNS]
    setup = RECIPES[("setup", "duckdb")][1]
    assert re.findall(r"(\w+): '", setup) == [c.name for c in COLUMNS]


@pytest.mark.parametrize("question", QUESTIONS)
def test_jq_recipe(workdir: Path, expected: dict[str, Any], question: str) -> None:
    """The jq recipe's answer is the CLI's."""
    proc = shell(RECIPES[(question, "jq")][1], workdir)
    assert proc.returncode == 0, proc.stderr
    objects = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all(tuple(o) == FIELDS[question] for o in objects), objects
    assert_same(question, normalised(question, [tuple(o.values()) for o in objects]), expected[question])


@pytest.mark.parametrize("tool", ["duckdb", "pandas"])
@pytest.mark.parametrize("question", QUESTIONS)
def test_python_recipe(workdir: Path, expected: dict[str, Any], question: str, tool: str,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The DuckDB and pandas recipes' answers are the CLI's."""
    monkeypatch.chdir(workdir)
    namespace: dict[str, Any] = {}
    exec(RECIPES[("setup", tool)][1], namespace)  # noqa: S102 - the documented code is what is tested
    variable, code = RECIPES[(question, tool)]
    exec(code, namespace)  # noqa: S102
    result = namespace[variable]
    if tool == "duckdb":
        assert tuple(result.columns) == FIELDS[question]
        rows = result.fetchall()
    else:
        assert tuple(result.columns) == FIELDS[question]
        rows = list(result.itertuples(index=False, name=None))
    assert_same(question, normalised(question, rows), expected[question])
    if tool == "duckdb":
        namespace["con"].close()
