"""``report -o``: a page goes into a new or regular file, never over a device, FIFO, symlink or directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from runjournal.cli.main import cli
from runjournal.journal.testing import make_stream, write_journal

RUN = "20260102T140000000000Z-aaaa"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A journal with one finished run."""
    write_journal(tmp_path / "journal", make_stream(RUN, terminal="succeeded"))
    return tmp_path / "journal"


def _report(root: Path, output: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--root", str(root), "report", RUN, "-o", output])
    return result.exit_code, result.stderr


def test_a_special_file_or_a_directory_is_left_alone(root: Path, tmp_path: Path) -> None:
    """A FIFO, a symlink, a directory (also named with a trailing slash or as '.') is refused in one line, unchanged."""
    fifo, link, directory = tmp_path / "fifo", tmp_path / "link", tmp_path / "dir"
    os.mkfifo(fifo)
    (tmp_path / "target.html").write_text("keep")
    link.symlink_to(tmp_path / "target.html")
    directory.mkdir()
    for output in (str(fifo), str(link), str(directory), f"{directory}/", ".", ""):
        code, stderr = _report(root, output)
        assert code == 2 and stderr.count("\n") == 1 and stderr.startswith("runjournal: error: -o "), (output, stderr)
    assert fifo.is_fifo() and link.is_symlink() and (tmp_path / "target.html").read_text() == "keep"
    assert directory.is_dir() and list(directory.iterdir()) == []
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_page_replaces_a_regular_file_and_a_missing_directory_is_one_line(root: Path, tmp_path: Path) -> None:
    """An existing regular file is replaced by the page; a path in a missing directory fails in one line, leaving nothing."""
    page = tmp_path / "run.html"
    page.write_text("old")
    assert _report(root, str(page))[0] == 0 and page.read_text().startswith("<!DOCTYPE html>")
    code, stderr = _report(root, str(tmp_path / "missing" / "run.html"))
    assert code == 2 and "cannot write the page" in stderr and stderr.count("\n") == 1
