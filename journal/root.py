"""Where the journal root is. A leaf module, so the CLI can find it without importing pydantic."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_ROOT = ".runjournal"
ROOT_ENV = "RUNJOURNAL_ROOT"
STORE_ENV = "RUNJOURNAL_STORE"


def default_root() -> Path:
    """The root from ``RUNJOURNAL_ROOT``, else ``./.runjournal``."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)
