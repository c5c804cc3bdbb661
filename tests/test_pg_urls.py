"""A database URL's secrets never reach output: the password in ``user:pass@`` and in the query string alike."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from runjournal.cli.main import cli
from runjournal.journal.postgres.schema import redact


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://u:p4ss@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql://u@h/db?password=s3cret", "postgresql://u@h/db?password=***"),
    ("postgresql://h/db?sslmode=require&Password=x&sslpassword=y", "postgresql://h/db?sslmode=require&Password=***&sslpassword=***"),
    ("postgres://u:p@h/db?application_name=a&password=z", "postgres://u:***@h/db?application_name=a&password=***"),
    ("postgresql://h/db?application_name=a", "postgresql://h/db?application_name=a"),
])
def test_redact_hides_every_password(url: str, shown: str) -> None:
    """Passwords are replaced by *** wherever libpq would read them from; other parameters stay as written."""
    assert redact(url) == shown


def test_a_connection_error_does_not_print_the_query_password(tmp_path: Path) -> None:
    """history against a closed port says which database it could not reach, without the password given as ?password=."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres?password=s3cret-word&connect_timeout=2"
    out = CliRunner().invoke(cli, ["--root", str(tmp_path), "--store", url, "history"])
    assert out.exit_code == 3, out.stderr
    assert "s3cret-word" not in out.stderr + out.stdout and "password=***" in out.stderr
