"""The JSONL store: one append-only file per run, a ``flock`` per writer, an index for history."""

from runjournal.journal.jsonl.store import JsonlStore

__all__ = ["JsonlStore"]
