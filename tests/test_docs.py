"""``docs/cli.md`` cannot drift from the CLI: every command is documented with its current
``--help``, and the documented JSON field names are the ones the commands print.

The ``--help`` blocks in ``docs/cli.md`` are generated; after changing a command's options
or help text, regenerate them with ``python tests/test_docs.py --update``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from runjournal.cli.main import COMMANDS, cli
from runjournal.journal.events import PlannedStep
from runjournal.journal.run import start_run
from runjournal.journal.status import ExitCode

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
HELP_WIDTH = 100
END_OF_COMMANDS = "<!-- END OF COMMANDS -->"
GROUP = "runjournal"


def help_of(name: str) -> str:
    """The ``--help`` output of command ``name`` (``runjournal`` for the group itself)."""
    args = ["--help"] if name == GROUP else [name, "--help"]
    result = CliRunner().invoke(cli, args, terminal_width=HELP_WIDTH, prog_name="runjournal")
    assert result.exit_code == 0, result.output
    return result.stdout


def block_for(name: str) -> str:
    """The generated Markdown block holding ``runjournal NAME --help``."""
    command = "runjournal --help" if name == GROUP else f"runjournal {name} --help"
    return (f"<!-- BEGIN GENERATED: {name} -->\n```text\n$ {command}\n{help_of(name)}```\n"
            f"<!-- END GENERATED: {name} -->")


def block_pattern(name: str) -> re.Pattern[str]:
    """Matches the generated block of ``name`` in the document."""
    return re.compile(rf"<!-- BEGIN GENERATED: {re.escape(name)} -->.*?<!-- END GENERATED: {re.escape(name)} -->",
                      re.DOTALL)


def documented_block(text: str, name: str) -> str | None:
    """The generated block of ``name`` as it stands in the document, if there is one."""
    match = block_pattern(name).search(text)
    return match.group(0) if match else None


def update(text: str) -> str:
    """Regenerate every block; a command without one gets a new section before the end marker."""
    for name in [GROUP, *sorted(COMMANDS)]:
        if documented_block(text, name) is not None:
            text = block_pattern(name).sub(lambda _m, n=name: block_for(n), text)
        else:
            section = f"## runjournal {name}\n\n{block_for(name)}\n\n"
            text = text.replace(END_OF_COMMANDS, section + END_OF_COMMANDS)
    return text


def field_table(text: str, key: str) -> set[str]:
    """The field names (first column) of the table under ``<!-- fields: KEY -->``."""
    start = text.index(f"<!-- fields: {key} -->")
    names = set()
    for line in text[start:].splitlines()[1:]:
        if not line.startswith("|"):
            if names:
                break
            continue
        match = re.match(r"\|\s*`([a-z_]+)`", line)
        if match:
            names.add(match.group(1))
    return names


@pytest.fixture(scope="module")
def doc() -> str:
    """The text of docs/cli.md."""
    return DOC.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_has_help(name: str) -> None:
    """Every command has a help text and a one-line summary."""
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    assert command.help and command.help.strip()
    assert command.get_short_help_str().strip()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_has_a_section(doc: str, name: str) -> None:
    """Every command has its own section in docs/cli.md."""
    assert re.search(rf"^## runjournal {re.escape(name)}$", doc, re.MULTILINE), f"no section for {name}"


@pytest.mark.parametrize("name", [GROUP, *sorted(COMMANDS)])
def test_help_block_is_current(doc: str, name: str) -> None:
    """The --help block (usage, options, defaults) in docs/cli.md is exactly the current --help."""
    assert documented_block(doc, name) == block_for(name), (
        f"docs/cli.md is out of date for {name!r}: run `python tests/test_docs.py --update`"
    )


def test_every_global_option_and_exit_code_is_described(doc: str) -> None:
    """The exit code table lists every stable exit code."""
    table = doc[doc.index("<!-- exit codes -->"):]
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \|", table, re.MULTILINE), f"exit code {int(code)} undocumented"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The JSON of history, show, replay and reconcile on a small journal with a fan-out run."""
    root = tmp_path_factory.mktemp("docs") / "journal"
    with start_run("demo", ["a", PlannedStep(name="fan", items=["x", "y"])], root=root, durability="none") as run:
        run.step_started("a")
        run.step_succeeded("a", exit_code=0)
        run.step_started("fan", total=2)
        run.item_started("fan", "x", done=0, total=2)
        run.item_ended("fan", "x", "succeeded", done=1, total=2, exit_code=0)

    def out(*args: str) -> Any:
        result = CliRunner().invoke(cli, ["--root", str(root), *args])
        return json.loads(result.stdout)

    return {
        "history": out("history", "--json")[0],
        "show": out("show", run.run_id, "--json"),
        "event": out("replay", run.run_id, "--json")[0],
        "reconcile": out("reconcile", "--json"),
        "verify": out("verify", "--json"),
        "events": out("events", "--json")[0],
        "logs": out("logs", run.run_id, "--json"),
    }


def _keys(outputs: dict[str, Any], key: str) -> set[str]:
    show = outputs["show"]
    nested = {
        "history": outputs["history"],
        "show": {k: v for k, v in show.items() if k not in outputs["history"]},
        "show.steps": show["steps"][1],
        "show.items": show["steps"][1]["items"][0],
        "show.units": show["completed"][0],
        "event": outputs["event"],
        "reconcile": outputs["reconcile"],
        "reconcile.runs": outputs["reconcile"]["runs"][0],
        "verify": outputs["verify"],
        "verify.runs": outputs["verify"]["runs"][0],
        "events": outputs["events"],
        "logs": outputs["logs"],
        "logs.outputs": outputs["logs"]["outputs"][0],
    }
    return set(nested[key])


@pytest.mark.parametrize(
    "key", ["history", "show", "show.steps", "show.items", "show.units", "event", "reconcile", "reconcile.runs",
            "verify", "verify.runs", "events", "logs", "logs.outputs"],
)
def test_documented_json_fields_are_printed(doc: str, outputs: dict[str, Any], key: str) -> None:
    """The JSON fields docs/cli.md documents are exactly the ones the command prints."""
    assert field_table(doc, key) == _keys(outputs, key)


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/test_docs.py --update   (regenerates the --help blocks in docs/cli.md)")
    DOC.write_text(update(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"updated {DOC}")
