"""Labelled crash points for white-box crash tests (RocksDB's kill points, SQLite's crash loops).

Code calls :func:`crash_point` at the moments a crash matters (between write and fsync,
inside reconciliation, in the middle of an index write). Normally it does nothing. With
``RUNJOURNAL_CRASH_AT=<label>:<n>`` in the environment, the process dies with
``os._exit(137)`` the n-th time it reaches ``<label>`` (n defaults to 1), exactly as a
SIGKILL would leave things: no handlers, no flushing.
"""

from __future__ import annotations

import os

CRASH_ENV = "RUNJOURNAL_CRASH_AT"
CRASH_EXIT_CODE = 137

_spec = os.environ.get(CRASH_ENV, "")
_label, _, _count = _spec.partition(":")
_remaining = int(_count) if _count.isdigit() else 1


def crash_point(label: str) -> None:
    """Die here if ``RUNJOURNAL_CRASH_AT`` names ``label`` and its count is reached."""
    global _remaining
    if not _label or label != _label:
        return
    _remaining -= 1
    if _remaining <= 0:
        os._exit(CRASH_EXIT_CODE)
