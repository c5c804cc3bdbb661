"""The counts each reliability test tried and lost, collected for the summary and docs/reliability.md.

Each test calls :func:`record`; the conftest prints every figure at the end of the session
and writes them as JSON lines to ``<pytest basetemp>/reliability-figures.jsonl`` (and to
``$RUNJOURNAL_FIGURES`` if set), which is where docs/reliability.md gets its numbers from.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

FIGURES: list[dict[str, Any]] = []
_START = time.monotonic()


def record(promise: int, test: str, lost: int, **counts: Any) -> dict[str, Any]:
    """Record what ``test`` (backing ``promise``) tried (``counts``) and lost; print it at once."""
    row = {"promise": promise, "test": test, "lost": lost, **counts}
    FIGURES.append(row)
    print(f"\n[reliability] {format_row(row)}", file=sys.stderr)
    return row


def format_row(row: dict[str, Any]) -> str:
    """One figure as ``P<n> test: k=v ... lost=N``."""
    counts = " ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k not in ("promise", "test", "lost"))
    return f"P{row['promise']} {row['test']}: {counts} lost={row['lost']}"


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def write_summary(directory: Path) -> list[Path]:
    """Write every figure as JSON lines; return the files written."""
    if not FIGURES:
        return []
    targets = [directory / "reliability-figures.jsonl"]
    extra = os.environ.get("RUNJOURNAL_FIGURES")
    if extra:
        targets.append(Path(extra))
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a", encoding="utf-8") as f:
            for row in FIGURES:
                f.write(json.dumps(row, sort_keys=True) + "\n")
    return targets
