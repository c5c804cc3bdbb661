"""docs/workflow.md is the workflow file reference: its key tables are the parser's keys, its examples parse,
and the shipped examples are in the package and in the doc (tests/test_install.py runs them from a wheel)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from runjournal.cli.commands.example import example_names, example_text
from runjournal.cli.engine import workflow
from runjournal.cli.main import cli

REPO = Path(__file__).resolve().parent.parent
DOC = (REPO / "docs" / "workflow.md").read_text(encoding="utf-8")


def keys_table(name: str) -> set[str]:
    """The keys (first column) of the table under ``<!-- keys: NAME -->``."""
    rest = DOC[DOC.index(f"<!-- keys: {name} -->"):].splitlines()[1:]
    keys = set()
    for line in rest:
        if not line.startswith("|"):
            break
        match = re.match(r"\|\s*`([a-z_]+)`", line)
        if match:
            keys.add(match.group(1))
    return keys


def test_the_key_tables_are_the_parsers_keys() -> None:
    """Every key the parser accepts is documented, and nothing else."""
    assert keys_table("workflow") == set(workflow._TOP_KEYS)
    assert keys_table("step") == set(workflow._STEP_KEYS)


def test_every_toml_example_in_the_doc_parses() -> None:
    """The TOML blocks on the page are valid workflows."""
    blocks = re.findall(r"```toml\n(.*?)```", DOC, re.DOTALL)
    assert blocks
    for block in blocks:
        parsed = workflow.parse_workflow(block.encode(), "docs/workflow.md")
        assert parsed.steps


@pytest.mark.parametrize("name", ["fanout", "hello"])
def test_shipped_examples_parse_and_are_documented(name: str) -> None:
    """`runjournal example NAME` prints a workflow that parses; the doc lists it."""
    assert name in example_names()
    result = CliRunner().invoke(cli, ["example", name])
    assert result.exit_code == 0 and result.stdout == example_text(name)
    workflow.parse_workflow(result.stdout.encode(), name)
    assert f"| `{name}` |" in DOC


def test_example_list_and_unknown_name() -> None:
    """Without a name the examples are listed; an unknown name is a one-line error."""
    assert CliRunner().invoke(cli, ["example"]).stdout.split() == example_names()
    bad = CliRunner().invoke(cli, ["example", "nope"])
    assert bad.exit_code == 2 and "no example 'nope' (examples: fanout, hello)" in bad.stderr

