"""Shared fixtures and the Hypothesis profiles.

Profiles: ``ci`` (default: modest example counts, no deadline, since CI machines stall),
``dev`` (fewer examples, for quick edits) and ``full`` (many examples, for a thorough run).
Choose one with ``RUNJOURNAL_HYPOTHESIS_PROFILE=full pytest``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

PROFILE_ENV = "RUNJOURNAL_HYPOTHESIS_PROFILE"

settings.register_profile("ci", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=10, deadline=None)
settings.register_profile("full", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get(PROFILE_ENV, "ci"))


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    """An empty journal root (mode 0700) for one test, under pytest's ``tmp_path``."""
    root = tmp_path / "journal"
    root.mkdir(mode=0o700)
    return root
