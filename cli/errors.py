"""Exit codes and the translation of journal errors into one-line CLI errors."""

from __future__ import annotations

from typing import IO, Any

import click

from runjournal.cli.rendering.sanitize import sanitize
from runjournal.journal.errors import (
    AmbiguousRunIdError,
    InvalidRunIdError,
    JournalError,
    RunNotFoundError,
    SameStoreError,
)
from runjournal.journal.status import ExitCode

_USER_ERRORS = (InvalidRunIdError, RunNotFoundError, AmbiguousRunIdError, SameStoreError)


class JournalClickError(click.ClickException):
    """A :class:`JournalError` shown as one line on stderr, with a stable exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    @classmethod
    def from_error(cls, exc: JournalError) -> JournalClickError:
        """Wrap ``exc``: user mistakes exit 2, journal and I/O problems exit 3."""
        code = ExitCode.USAGE if isinstance(exc, _USER_ERRORS) else ExitCode.JOURNAL
        return cls(str(exc), code)

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"runjournal: error: {sanitize(self.format_message())}", err=True)


class UserError(JournalClickError):
    """A mistake in what the user asked for (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.USAGE)
