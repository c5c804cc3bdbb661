"""Importing a whole run into the PostgreSQL store (``runjournal import``, ``export`` to a database, ``prune --archive``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from runjournal.journal.ids import validate_run_id
from runjournal.journal.postgres.conn import translate_errors
from runjournal.journal.postgres.reader import PgRunReader
from runjournal.journal.status import EVENT_STATUS, TERMINAL_STATUSES

if TYPE_CHECKING:
    from runjournal.journal.events import Event
    from runjournal.journal.postgres.store import PgStore

INSERT_RUN = """
INSERT INTO rj_runs (run_id, head_seq, head_hash, head_offset, received_at, folded_seq, status, workflow, started_at,
                     summary)
VALUES (%(run_id)s, %(head_seq)s, %(head_hash)s, %(head_offset)s, clock_timestamp(), %(folded_seq)s, %(status)s,
        %(workflow)s, %(started_at)s, %(summary)s)
"""


def import_run(store: PgStore, run_id: str, lines: list[bytes]) -> None:
    """Check ``lines`` (chain, seqs, run id), then insert the run's row (its anchor: the last line) and its lines.

    One transaction: the run appears whole or not at all. Raises RunExistsError if the id is taken.
    """
    validate_run_id(run_id)
    if not lines:
        raise ValueError(f"run {run_id}: no lines to import")
    reader = PgRunReader(store, run_id, None)
    events = [reader.record(line).event for line in lines]  # the chain, seqs and run id, checked
    row = {"run_id": run_id, "head_seq": len(lines) - 1, "head_hash": reader.cursor.prev_hash,
           "head_offset": reader.cursor.offset,
           "status": recorded_status(events), "workflow": getattr(events[0], "workflow", None),
           "started_at": events[0].ts, "folded_seq": None, "summary": None}
    if store.projector is not None:
        state = store.projector.fold(events)
        row |= {"folded_seq": len(lines) - 1, "summary": orjson.dumps(store.projector.row(state)).decode()}
    conn = store.connection
    store.ensure_partition(run_id, conn)
    with translate_errors(store.where, exists=run_id), conn.transaction():
        conn.execute(INSERT_RUN, row)
        with conn.cursor().copy("COPY rj_events (run_id, seq, type, line) FROM STDIN") as copy:
            for seq, (line, event) in enumerate(zip(lines, events, strict=True)):
                copy.write_row((run_id, seq, event.type, line))


def recorded_status(events: list[Event]) -> str:
    """The run's status by the status table, as writers keep ``rj_runs.status``: ``running`` after
    ``started`` (always seq 0, the reader checked), then the first terminal event's."""
    status = "running"
    for event in events[1:]:
        after = EVENT_STATUS.get(event.type)
        if after is not None and status not in TERMINAL_STATUSES:
            status = after
    return status
