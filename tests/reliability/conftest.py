"""Fixtures and the end-of-session figures for the reliability suite (docs/reliability.md)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from runjournal.journal.jsonl.store import JsonlStore

from .figures import FIGURES, format_row, write_summary
from .helpers import FULL


@pytest.fixture
def store(tmp_path: Path) -> JsonlStore:
    """An empty store in a fresh directory."""
    return JsonlStore(tmp_path / "root")


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A random generator seeded from the test's name, so a failure replays exactly."""
    return random.Random(request.node.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print every figure recorded in this session and save them next to the temp dirs."""
    if not FIGURES:
        return
    mode = "full" if FULL else "default (RUNJOURNAL_FULL=1 for the full counts)"
    terminalreporter.section(f"reliability figures, {mode}")
    for row in FIGURES:
        terminalreporter.write_line(format_row(row))
    factory = getattr(terminalreporter.config, "_tmp_path_factory", None)
    if factory is not None:
        for path in write_summary(factory.getbasetemp()):
            terminalreporter.write_line(f"figures written to {path}")
