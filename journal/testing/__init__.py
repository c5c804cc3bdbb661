"""Test support for runjournal users: event builders, Hypothesis strategies, journal files.

Import it from test code only: it needs ``hypothesis`` (in the ``test`` extra)::

    from hypothesis import given
    from runjournal.journal.testing import event_streams, write_journal

    @given(event_streams(terminal=True))
    def test_my_fold_ends(events):
        ...

Three groups of helpers:

* **Builders** (``make_started``, ``make_progress``, ``make_heartbeat``, ``make_succeeded``,
  ``make_failed``, ``make_cancelled``, ``make_abandoned``, ``make_stream``): plain functions
  with deterministic defaults (``ts`` is :data:`BASE_TIME` plus ``seq`` seconds), for
  example-based tests.
* **Strategies**: one per event type (``started_events`` ... ``abandoned_events``, and
  ``events`` for any type); :func:`event_streams` for whole valid runs; :func:`torn_streams`
  for runs whose last line was cut by a crash; :func:`journal_files` for a run's file
  bytes, clean, torn, written in a foreign (valid) form, or damaged.
* **Files**: :func:`journal_lines`, :func:`journal_bytes` and :func:`write_journal` encode
  events through the real codec (hash chain included) and put them where
  :class:`~journal.store.JsonlStore` looks for them.

Every event a strategy or builder returns is a valid model; a *stream* is additionally a
valid run: ``started`` first, ``seq`` 0, 1, 2 ... and one ``run_id``.
"""

try:
    import hypothesis  # noqa: F401  (the strategies below need it)
except ModuleNotFoundError as exc:  # a plain install: say which extra brings it
    raise ModuleNotFoundError(
        "runjournal.journal.testing needs hypothesis and pytest: pip install 'runjournal[testing]'", name=exc.name
    ) from None

from runjournal.journal.testing.builders import (
    BASE_TIME,
    DEFAULT_RUN_ID,
    JournalFile,
    TornStream,
    foreign_lines,
    journal_bytes,
    journal_lines,
    make_abandoned,
    make_cancelled,
    make_checker,
    make_failed,
    make_heartbeat,
    make_identity,
    make_items_planned,
    make_progress,
    make_started,
    make_stream,
    make_succeeded,
    write_journal,
)
from runjournal.journal.testing.strategies import (
    EVENT_STRATEGIES,
    abandoned_events,
    cancelled_events,
    checker_identities,
    event_streams,
    events,
    failed_events,
    heartbeat_events,
    items_planned_events,
    journal_files,
    json_values,
    planned_steps,
    run_ids,
    scrambled_streams,
    started_events,
    step_progress_events,
    succeeded_events,
    texts,
    timestamps,
    torn_streams,
    writer_identities,
)

__all__ = [
    "BASE_TIME",
    "DEFAULT_RUN_ID",
    "EVENT_STRATEGIES",
    "JournalFile",
    "TornStream",
    "abandoned_events",
    "cancelled_events",
    "checker_identities",
    "event_streams",
    "events",
    "failed_events",
    "foreign_lines",
    "heartbeat_events",
    "items_planned_events",
    "journal_bytes",
    "journal_files",
    "journal_lines",
    "json_values",
    "make_abandoned",
    "make_cancelled",
    "make_checker",
    "make_failed",
    "make_heartbeat",
    "make_items_planned",
    "make_identity",
    "make_progress",
    "make_started",
    "make_stream",
    "make_succeeded",
    "planned_steps",
    "run_ids",
    "scrambled_streams",
    "started_events",
    "step_progress_events",
    "succeeded_events",
    "texts",
    "timestamps",
    "torn_streams",
    "write_journal",
    "writer_identities",
]
