"""Shell completion: commands and options come from click; run ids from the journal.

``runjournal completion bash`` (or ``zsh``, ``fish``) prints the script to source; every
``RUN`` argument then completes to the ids (newest first) that start with what was typed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from runjournal.journal.root import ROOT_ENV, STORE_ENV

MAX_CANDIDATES = 200
"""At most this many run ids are offered (the newest)."""


def complete_run_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Run ids of the journal the command line names (``--store``/``--root``, their variables, or the default)."""
    try:
        ids = sorted((rid for rid in _store(ctx).run_ids() if rid.startswith(incomplete)), reverse=True)
    except Exception:  # noqa: BLE001 - completion must never print a traceback into the user's shell
        return []
    return [CompletionItem(rid) for rid in ids[:MAX_CANDIDATES]]


def _store(ctx: click.Context) -> Any:
    from runjournal.cli.target import Target
    from runjournal.journal.root import default_root

    # During completion the group's callback does not run, so ctx.obj is unset: read the options.
    params = ctx.find_root().params
    store = params.get("store") or os.environ.get(STORE_ENV)
    root = params.get("root") or os.environ.get(ROOT_ENV)
    return Target(Path(root) if root else default_root(), store).open()


SHELLS = ("bash", "zsh", "fish")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    Completes commands, options and run ids. Load it in the current shell, or add the line
    to your shell's start-up file:

    \b
      eval "$(runjournal completion bash)"          # ~/.bashrc
      eval "$(runjournal completion zsh)"           # ~/.zshrc
      runjournal completion fish | source           # ~/.config/fish/config.fish
    """
    from click.shell_completion import get_completion_class

    from runjournal.cli.main import cli

    cls = get_completion_class(shell)
    assert cls is not None  # the choice above lists only shells click supports
    click.echo(cls(cli, {}, "runjournal", "_RUNJOURNAL_COMPLETE").source())
