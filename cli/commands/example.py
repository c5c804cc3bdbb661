"""``runjournal example``: print a workflow file that ships with runjournal, to start from."""

from __future__ import annotations

from importlib import resources

import click

from runjournal.cli.errors import UserError

PACKAGE = "runjournal.cli.examples"


def example_names() -> list[str]:
    """The names of the shipped examples (their file names without ``.toml``)."""
    files = resources.files(PACKAGE).iterdir()
    return sorted(f.name[: -len(".toml")] for f in files if f.name.endswith(".toml"))


def example_text(name: str) -> str:
    """The text of example ``name``."""
    if name not in example_names():
        raise UserError(f"no example {name!r} (examples: {', '.join(example_names())})")
    return resources.files(PACKAGE).joinpath(f"{name}.toml").read_text(encoding="utf-8")


@click.command()
@click.argument("name", required=False, shell_complete=lambda ctx, param, incomplete: [
    n for n in example_names() if n.startswith(incomplete)])
def example(name: str | None) -> None:
    """Print the example workflow NAME (TOML) to start from; without NAME, list them.

    The format is described in docs/workflow.md.

    \b
    Examples:
      runjournal example                         list the examples
      runjournal example fanout > fanout.toml    a fan-out over 12 hosts
      runjournal run fanout.toml
    """
    if name is None:
        for each in example_names():
            click.echo(each)
        return
    click.echo(example_text(name), nl=False)
