"""Builders of events and journal files with deterministic defaults, for example-based tests."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runjournal.journal.codec import encode_line
from runjournal.journal.events import (
    Abandoned,
    AbandonReason,
    Cancelled,
    CheckerIdentity,
    Event,
    Failed,
    FailReason,
    Heartbeat,
    ItemsPlanned,
    PlannedStep,
    Started,
    StepProgress,
    StepState,
    Succeeded,
    WriterIdentity,
)
from runjournal.journal.fsio import ensure_private_dir
from runjournal.journal.jsonl.layout import RUN_SUFFIX
from runjournal.journal.records import GENESIS_HASH

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
"""The default ``ts`` of builder events: ``BASE_TIME + seq`` seconds."""

DEFAULT_RUN_ID = "20260101T000000000000Z-0001"
"""The run id builders use when none is given."""



# --------------------------------------------------------------------------- builders


def _ts(seq: int, ts: datetime | None) -> datetime:
    return ts if ts is not None else BASE_TIME + timedelta(seconds=seq)


def make_identity(**overrides: Any) -> WriterIdentity:
    """A fixed, fake writer identity (host ``test-host``, pid 4242); override any field."""
    fields: dict[str, Any] = {
        "host": "test-host",
        "boot_id": "00000000-0000-4000-8000-000000000000",
        "pid": 4242,
        "start_ticks": 1000,
        "argv": ["runjournal", "run", "wf.toml"],
        "user": "tester",
        "tool_version": "0.0.0-test",
    }
    return WriterIdentity(**(fields | overrides))


def make_checker(**overrides: Any) -> CheckerIdentity:
    """A fixed, fake reconciler identity; override any field."""
    return CheckerIdentity(**({"host": "test-host", "pid": 4343, "user": "tester"} | overrides))


def make_started(
    run_id: str = DEFAULT_RUN_ID,
    *,
    steps: Iterable[str | PlannedStep] = ("build", "test"),
    workflow: str = "wf",
    ts: datetime | None = None,
    writer: WriterIdentity | None = None,
    heartbeat_interval: float = 30.0,
    **fields: Any,
) -> Started:
    """A ``started`` event (seq 0) planning ``steps``; extra ``fields`` go to the model."""
    planned = [s if isinstance(s, PlannedStep) else PlannedStep(name=s) for s in steps]
    return Started(
        run_id=run_id,
        seq=0,
        ts=_ts(0, ts),
        workflow=workflow,
        steps=planned,
        writer=writer or make_identity(),
        heartbeat_interval=heartbeat_interval,
        **fields,
    )


def make_progress(
    seq: int,
    step: str,
    state: StepState = "started",
    *,
    run_id: str = DEFAULT_RUN_ID,
    ts: datetime | None = None,
    **fields: Any,
) -> StepProgress:
    """A ``step-progress`` event; ``fields`` are ``done``, ``total``, ``item``, ``item_state``, ..."""
    return StepProgress(run_id=run_id, seq=seq, ts=_ts(seq, ts), step=step, state=state, **fields)


def make_items_planned(
    seq: int, step: str, items: list[str], *, run_id: str = DEFAULT_RUN_ID, ts: datetime | None = None
) -> ItemsPlanned:
    """An ``items-planned`` event."""
    return ItemsPlanned(run_id=run_id, seq=seq, ts=_ts(seq, ts), step=step, items=items)


def make_heartbeat(seq: int, *, run_id: str = DEFAULT_RUN_ID, ts: datetime | None = None) -> Heartbeat:
    """A ``heartbeat`` event."""
    return Heartbeat(run_id=run_id, seq=seq, ts=_ts(seq, ts))


def make_succeeded(seq: int, *, run_id: str = DEFAULT_RUN_ID, ts: datetime | None = None, **fields: Any) -> Succeeded:
    """A ``succeeded`` terminal event."""
    return Succeeded(run_id=run_id, seq=seq, ts=_ts(seq, ts), **fields)


def make_failed(
    seq: int,
    reason: FailReason | str = FailReason.STEP_FAILED,
    *,
    run_id: str = DEFAULT_RUN_ID,
    ts: datetime | None = None,
    **fields: Any,
) -> Failed:
    """A ``failed`` terminal event (``step``, ``exit_code``, ``message`` as ``fields``)."""
    return Failed(run_id=run_id, seq=seq, ts=_ts(seq, ts), reason=reason, **fields)


def make_cancelled(
    seq: int, by: str = "user:tester", *, run_id: str = DEFAULT_RUN_ID, ts: datetime | None = None, **fields: Any
) -> Cancelled:
    """A ``cancelled`` terminal event."""
    return Cancelled(run_id=run_id, seq=seq, ts=_ts(seq, ts), by=by, **fields)


def make_abandoned(
    seq: int,
    reason: AbandonReason | str = AbandonReason.ORIGINATING_PROCESS_NOT_ALIVE,
    *,
    run_id: str = DEFAULT_RUN_ID,
    ts: datetime | None = None,
    evidence: dict[str, Any] | None = None,
    checker: CheckerIdentity | None = None,
    last_seq: int | None = None,
    **fields: Any,
) -> Abandoned:
    """An ``abandoned`` terminal event; ``last_seq`` defaults to ``seq - 1``."""
    return Abandoned(
        run_id=run_id,
        seq=seq,
        ts=_ts(seq, ts),
        reason=reason,
        evidence=evidence if evidence is not None else {"pid_alive": False},
        checker=checker or make_checker(),
        last_seq=seq - 1 if last_seq is None else last_seq,
        **fields,
    )


def make_stream(
    run_id: str = DEFAULT_RUN_ID, steps: Sequence[str] = ("build", "test"), terminal: str | None = "succeeded"
) -> list[Event]:
    """A small complete run: ``started``, each step started and succeeded, then ``terminal``.

    ``terminal`` is an event type (``"succeeded"``, ``"failed"``, ``"cancelled"``,
    ``"abandoned"``) or None for a run still going.
    """
    stream: list[Event] = [make_started(run_id, steps=steps)]
    for step in steps:
        stream.append(make_progress(len(stream), step, "started", run_id=run_id))
        stream.append(make_progress(len(stream), step, "succeeded", run_id=run_id, exit_code=0))
    if terminal is not None:
        builders = {
            "succeeded": make_succeeded,
            "failed": make_failed,
            "cancelled": make_cancelled,
            "abandoned": make_abandoned,
        }
        stream.append(builders[terminal](len(stream), run_id=run_id))
    return stream


# ------------------------------------------------------------------ journal files


def journal_lines(stream: Iterable[Event], prev_hash: str = GENESIS_HASH) -> list[bytes]:
    """Encode events as journal lines, chaining each ``h`` to the previous line's.

    The events are not checked for sequence, so this also builds journals with a wrong
    ``seq`` or ``run_id`` (for tests of the reader's errors).
    """
    lines = []
    for event in stream:
        line, prev_hash = encode_line(event, prev_hash)
        lines.append(line)
    return lines


def journal_bytes(stream: Iterable[Event]) -> bytes:
    """The whole journal file for ``stream``."""
    return b"".join(journal_lines(stream))


def write_journal(
    root: Path | str, stream: Sequence[Event], *, fragment: bytes = b"", data: bytes | None = None
) -> Path:
    """Write ``stream`` as ``root/runs/<run_id>.jsonl`` (0600, directories 0700); return the path.

    ``fragment`` is appended after the last whole line (a torn tail); ``data`` replaces the
    encoded bytes entirely (for hand-made corruption). An existing file is replaced. The
    run id is taken from the first event.
    """
    runs = ensure_private_dir(Path(root) / "runs")
    path = runs / (stream[0].run_id + RUN_SUFFIX)
    content = (journal_bytes(stream) if data is None else data) + fragment
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    return path


@dataclass(frozen=True, slots=True)
class TornStream:
    """A run whose last line was cut by a crash.

    ``events`` are the events whose lines are whole; ``torn`` is the event whose line was
    being written; ``fragment`` is the part of its line that reached the file (never its
    newline, never empty).
    """

    events: list[Event]
    torn: Event
    fragment: bytes

    @property
    def data(self) -> bytes:
        """The journal file's bytes: the whole lines, then the fragment."""
        return journal_bytes(self.events) + self.fragment

    @property
    def whole_length(self) -> int:
        """Bytes of whole lines, i.e. the offset where the torn tail starts."""
        return len(journal_bytes(self.events))


def foreign_lines(stream: Sequence[Event], foreign: Iterable[int], prev_hash: str = GENESIS_HASH) -> list[bytes]:
    """Journal lines where the events at indexes ``foreign`` are written as another (valid) writer might.

    Such a line has spaces after its separators and leaves out the optional fields that are
    null: valid for every reader (``docs/format.md`` section 11), but not in the canonical
    form. The chain is computed over the bytes as written, so the whole journal verifies.
    """
    chosen = set(foreign)
    lines = []
    for index, event in enumerate(stream):
        if index not in chosen:
            line, prev_hash = encode_line(event, prev_hash)
        else:
            line, prev_hash = _foreign_line(event, prev_hash)
        lines.append(line)
    return lines


def _foreign_line(event: Event, prev_hash: str) -> tuple[bytes, str]:
    import json

    from runjournal.journal.codec import chain_hash

    required = {name for name, f in type(event).model_fields.items() if f.is_required()} | {"v", "type"}
    obj = {k: v for k, v in event.model_dump(mode="json").items() if v is not None or k in required}
    body = json.dumps(obj, separators=(", ", ": "), ensure_ascii=False)[:-1].encode()
    digest = chain_hash(prev_hash, body)
    return body + b',"h":"' + digest.encode("ascii") + b'"}\n', digest


@dataclass(frozen=True, slots=True)
class JournalFile:
    """The bytes a run's file holds, made from ``events``: whole, torn, foreign in form, or damaged.

    ``damage`` says what was done: ``clean``, ``torn`` (a fragment after the last line),
    ``foreign`` (some lines valid but not canonical), ``flipped`` (one byte of a line
    changed), ``dropped`` (a line removed), ``duplicated`` (a line written twice).
    """

    events: list[Event]
    data: bytes
    damage: str

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.events[0].run_id


def ticking_clock(start: datetime = BASE_TIME, seconds: float = 1.0) -> Any:
    """A deterministic writer clock (a ``Callable[[], datetime]``): ``start``, then ``seconds`` more per reading."""
    readings = [0]

    def clock() -> datetime:
        readings[0] += 1
        return start + timedelta(seconds=seconds * (readings[0] - 1))

    return clock


def exited_writer_identity() -> WriterIdentity:
    """This host's writer identity, but with the pid and start ticks of a child that has exited and been reaped.

    Same-host liveness checks find that process gone (or its pid reused by another start).
    """
    import subprocess
    import sys

    from runjournal.journal.identity import writer_identity
    from runjournal.journal.procfacts import process_info

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    info = process_info(child.pid)
    child.wait()
    if info is None:
        raise RuntimeError(f"could not read the start ticks of child pid {child.pid}")
    return writer_identity().model_copy(update={"pid": child.pid, "start_ticks": info.start_ticks})


def raw_stream_lines(stream: Iterable[Event]) -> list[bytes]:
    """A stream's journal lines without their newlines, as a store's ``raw_lines`` gives them."""
    return [line[:-1] for line in journal_lines(stream)]
