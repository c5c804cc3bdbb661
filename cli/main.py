"""The ``runjournal`` command group.

Commands are imported only when invoked (see :data:`COMMANDS`), so ``runjournal --version``
or ``runjournal history`` never pays for the workflow runner or watchfiles.

Exit codes (stable, documented in ``docs/cli.md``): 0 success; 1 a negative answer (verify
found problems, the run did not succeed); 2 a usage or user error (bad option, unknown run,
hostile id, bad workflow file); 3 a journal or I/O problem (corrupt line, locked run,
disk full); 4 the run was abandoned; 5 it was cancelled; 130 interrupted.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import click

from runjournal.cli.errors import JournalClickError
from runjournal.cli.target import Target
from runjournal.journal import __version__
from runjournal.journal.errors import JournalError
from runjournal.journal.root import ROOT_ENV, STORE_ENV, default_root
from runjournal.journal.status import ExitCode

COMMANDS: dict[str, str] = {
    "run": "runjournal.cli.commands.run:run",
    "exec": "runjournal.cli.commands.run:exec_command",
    "rerun": "runjournal.cli.commands.run:rerun",
    "cancel": "runjournal.cli.commands.cancel:cancel",
    "history": "runjournal.cli.commands.history:history",
    "show": "runjournal.cli.commands.show:show",
    "replay": "runjournal.cli.commands.replay:replay",
    "follow": "runjournal.cli.commands.follow:follow",
    "logs": "runjournal.cli.commands.logs:logs",
    "report": "runjournal.cli.commands.report:report",
    "events": "runjournal.cli.commands.events:events",
    "completion": "runjournal.cli.completion:completion",
    "example": "runjournal.cli.commands.example:example",
    "reconcile": "runjournal.cli.commands.reconcile:reconcile",
    "verify": "runjournal.cli.commands.verify:verify",
    "export": "runjournal.cli.commands.transfer:export",
    "import": "runjournal.cli.commands.transfer:import_",
    "prune": "runjournal.cli.commands.prune:prune_command",
    "upgrade-db": "runjournal.cli.commands.upgrade:upgrade_db",
    "schema": "runjournal.cli.commands.schema:schema",
}
"""Command name -> ``module:attribute`` of its click command."""

READ_COMMANDS = frozenset({"cancel", "export", "follow", "history", "logs", "reconcile", "replay", "show", "verify"})
"""Commands that only work on runs that exist: a journal directory named explicitly must exist for them."""


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command runs (or help lists it)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise one_line_usage_error(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise one_line_usage_error(exc) from None
        except JournalError as exc:
            raise JournalClickError.from_error(exc) from None
        except BrokenPipeError:
            raise
        except OSError as exc:
            # An unreadable file or a file where a directory belongs: one line, not a traceback.
            where = f"{exc.filename}: " if exc.filename else ""
            raise JournalClickError(f"{where}{exc.strerror or exc}", ExitCode.JOURNAL) from None
        except KeyboardInterrupt:
            raise click.exceptions.Exit(ExitCode.INTERRUPTED) from None
        except MemoryError:
            # A configured memory limit (ulimit -v, a cgroup) was hit: say so in one line.
            raise JournalClickError("out of memory (a memory limit was reached); nothing was lost, "
                                    "retry with more memory", ExitCode.JOURNAL) from None


def one_line_usage_error(exc: click.UsageError) -> click.ClickException:
    """Click's usage error (bad option value, missing option, extra argument) as one line, exit 2.

    Click would print the usage block and a hint over three lines; ours names the command
    whose ``--help`` explains it. The message may quote argv, so it goes through the
    terminal sanitiser like any other error (see :class:`JournalClickError`).
    """
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        return exc  # `runjournal` alone prints the help, as it should
    where = exc.ctx.command_path if exc.ctx is not None else "runjournal"
    return JournalClickError(f"{exc.format_message().rstrip('.')} (see '{where} --help')", ExitCode.USAGE)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="runjournal")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=ROOT_ENV,
    show_envvar=True,
    help="Journal directory.  [default: ./.runjournal]",
)
@click.option(
    "--store",
    metavar="URL|DIR",
    envvar=STORE_ENV,
    show_envvar=True,
    help="Where runs live: a postgresql:// URL (one history for many hosts) or a journal directory. "
    "With a URL, --root only holds this host's step logs.",
)
@click.pass_context
def cli(ctx: click.Context, root: Path | None, store: str | None) -> None:
    """runjournal: an append-only journal for workflow runs.

    Every run is a JSONL stream of events; the status you see is a fold over them. Runs
    whose process died are found when you read history and recorded as `abandoned`.

    \b
    Examples:
      runjournal example fanout > fanout.toml  an example workflow to start from
      runjournal run fanout.toml               run it, journaled
      runjournal history                       newest runs first
      runjournal show 2026                     one run by id or unique prefix
    """
    ctx.obj = Target(root if root is not None else default_root(), store)
    if (root is not None or store is not None) and ctx.invoked_subcommand in READ_COMMANDS:
        ctx.obj.require_existing()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        cli.main(args=argv, prog_name="runjournal")
    except BrokenPipeError:
        # The reader of our stdout went away (`runjournal history | head`): not an error.
        sys.stderr.close()
        sys.exit(0)
    except MemoryError:
        # Hit outside a command (importing one, say): still one line, never a traceback.
        sys.stderr.write("runjournal: error: out of memory (a memory limit was reached); nothing was lost\n")
        sys.exit(ExitCode.JOURNAL)


if __name__ == "__main__":
    main()
