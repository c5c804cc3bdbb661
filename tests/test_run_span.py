"""The one duration rule of history and show (runjournal.cli.rendering.textfmt.run_span)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runjournal.cli.rendering.textfmt import run_span

START = datetime(2026, 1, 2, 14, 0, tzinfo=UTC)
LAST = START + timedelta(seconds=28)
LATER = START + timedelta(hours=5)


@pytest.mark.parametrize(("status", "ended", "expected"), [
    ("succeeded", START + timedelta(seconds=40), timedelta(seconds=40)),
    ("abandoned", START + timedelta(hours=1), timedelta(seconds=28)),  # to the last sign of life, not the verdict
    ("abandoned?", None, timedelta(seconds=28)),
    ("damaged", None, timedelta(seconds=28)),  # never ends: to its last line that reads, not until now
    ("damaged", START + timedelta(seconds=35), timedelta(seconds=35)),  # its prefix ended: to that end
    ("running", None, timedelta(hours=5)),
])
def test_duration_by_status(status: str, ended: datetime | None, expected: timedelta) -> None:
    """Each status measures to its documented end; only a live run grows with the clock."""
    assert run_span(status, START, ended, LAST, LATER) == expected
