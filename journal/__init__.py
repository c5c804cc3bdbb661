"""The journal: event schema, crash-safe append-only run files, writer and liveness facts.

Nothing in this package imports from ``projections`` or ``cli``.
"""

__version__ = "0.2.0"
