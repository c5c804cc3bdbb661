"""``history --json`` as a lean process could do it: index summaries to JSON, without pydantic.

Not a product command: it shows what the history read model costs on its own, start-up
included, so the gap to the CLI's figure is the CLI's own cost (imports, views). It
imports only click, orjson and the JSONL store up front, like the CLI does; a run that has
to be folded imports the fold on demand.

    python benchmarks/lean_history.py ROOT
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import click  # noqa: E402,F401  (the CLI pays for it; so does this)
import orjson  # noqa: E402

from runjournal.journal.jsonl.index import HistoryIndex  # noqa: E402
from runjournal.journal.jsonl.store import JsonlStore  # noqa: E402  (imports no event model until a run is folded)
from runjournal.projections.summary import PROJECTOR  # noqa: E402


def main() -> None:
    """Print every run's summary as one JSON array, newest first, streamed in chunks of 1,000."""
    store = JsonlStore(sys.argv[1])
    runs_dir = str(store.runs_dir) + os.sep
    out = sys.stdout.buffer
    chunk: list[dict[str, object]] = []
    first = True
    out.write(b"[")
    for summary in HistoryIndex(store, PROJECTOR).summaries():
        obj = summary.to_json()
        obj["path"] = runs_dir + summary.run_id + ".jsonl"
        chunk.append(obj)
        if len(chunk) == 1000:
            out.write((b"" if first else b",") + orjson.dumps(chunk)[1:-1])
            chunk.clear()
            first = False
    if chunk:
        out.write((b"" if first else b",") + orjson.dumps(chunk)[1:-1])
    out.write(b"]\n")


if __name__ == "__main__":
    main()
