"""Hypothesis strategies for events, valid runs, torn runs and scrambled runs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

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
    QuarantinedTail,
    Started,
    StepProgress,
    StepState,
    Succeeded,
    WriterIdentity,
)
from runjournal.journal.ids import RUN_ID_PATTERN
from runjournal.journal.status import TERMINAL_TYPES
from runjournal.journal.testing.builders import DEFAULT_RUN_ID, JournalFile, TornStream, foreign_lines, journal_lines

STEP_STATES: tuple[StepState, ...] = ("started", "succeeded", "failed", "skipped")
_INT64 = (-(2**63), 2**63 - 1)

# --------------------------------------------------------------- value strategies


def texts(max_size: int = 20) -> st.SearchStrategy[str]:
    """Any Unicode text JSON can carry (no lone surrogates), control characters included."""
    return st.text(st.characters(exclude_categories=("Cs",)), max_size=max_size)


def run_ids() -> st.SearchStrategy[str]:
    """Valid run ids: generated time-sortable ones and arbitrary ids in the safe charset."""
    generated = st.builds(
        lambda moment, tag: moment.strftime("%Y%m%dT%H%M%S%fZ") + "-" + tag,
        st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
        st.text("0123456789abcdef", min_size=4, max_size=4),
    )
    return st.one_of(generated, st.from_regex(RUN_ID_PATTERN, fullmatch=True))


def timestamps(min_year: int = 1, max_year: int = 9999) -> st.SearchStrategy[datetime]:
    """UTC instants with microseconds, the precision a line keeps."""
    return st.datetimes(
        min_value=datetime(min_year, 1, 1), max_value=datetime(max_year, 12, 31), timezones=st.just(UTC)
    )


def json_values(max_leaves: int = 10) -> st.SearchStrategy[Any]:
    """Values a free-form field (``inputs``, ``evidence``) can hold and read back unchanged."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(*_INT64),
        st.floats(allow_nan=False, allow_infinity=False),
        texts(),
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts(10), inner, max_size=4),
        max_leaves=max_leaves,
    )


def _json_objects() -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(texts(10), json_values(), max_size=4)


def writer_identities() -> st.SearchStrategy[WriterIdentity]:
    """Any writer identity."""
    return st.builds(
        WriterIdentity,
        host=texts(),
        boot_id=texts(36),
        pid=st.integers(1, 2**22),
        start_ticks=st.integers(0, 2**40),
        argv=st.lists(texts(), max_size=4),
        user=texts(),
        tool_version=texts(10),
    )


def checker_identities() -> st.SearchStrategy[CheckerIdentity]:
    """Any reconciler identity."""
    return st.builds(CheckerIdentity, host=texts(), pid=st.integers(1, 2**22), user=texts())


def planned_steps(max_steps: int = 4, max_items: int = 4, min_steps: int = 0) -> st.SearchStrategy[list[PlannedStep]]:
    """A plan: distinct step names, some steps fanned out over distinct item keys."""
    items = st.none() | st.lists(texts(8), min_size=1, max_size=max_items, unique=True)
    return st.lists(texts(12), min_size=min_steps, max_size=max_steps, unique=True).flatmap(
        lambda names: st.tuples(*(st.builds(PlannedStep, name=st.just(n), items=items) for n in names)).map(list)
    )


# --------------------------------------------------------------- event strategies


def _envelope(run_id: str | None, seq: int | None) -> dict[str, st.SearchStrategy[Any]]:
    return {
        "run_id": run_ids() if run_id is None else st.just(run_id),
        "seq": st.integers(0, 2**31) if seq is None else st.just(seq),
        "ts": timestamps(),
    }


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def started_events(run_id: str | None = None, seq: int | None = None) -> st.SearchStrategy[Started]:
    """Any ``started`` event (not necessarily at seq 0 unless ``seq=0`` is given)."""
    return st.builds(
        Started,
        **_envelope(run_id, seq),
        workflow=texts(),
        steps=planned_steps(),
        inputs=_json_objects(),
        writer=writer_identities(),
        heartbeat_interval=st.floats(min_value=0, exclude_min=True, allow_infinity=False),
        workflow_file=_optional(texts()),
        workflow_digest=_optional(st.text("0123456789abcdef", min_size=64, max_size=64)),
        rerun_of=_optional(run_ids()),
    )


def step_progress_events(run_id: str | None = None, seq: int | None = None) -> st.SearchStrategy[StepProgress]:
    """Any ``step-progress`` event (field combinations need not be plausible)."""
    return st.builds(
        StepProgress,
        **_envelope(run_id, seq),
        step=texts(),
        state=st.sampled_from(STEP_STATES),
        done=_optional(st.integers(0, 2**31)),
        total=_optional(st.integers(0, 2**31)),
        item=_optional(texts()),
        item_state=_optional(st.sampled_from(STEP_STATES)),
        exit_code=_optional(st.integers(-255, 255)),
        message=_optional(texts(200)),
    )


def items_planned_events(run_id: str | None = None, seq: int | None = None) -> st.SearchStrategy[ItemsPlanned]:
    """Any ``items-planned`` event."""
    return st.builds(ItemsPlanned, **_envelope(run_id, seq), step=texts(), items=st.lists(texts(), max_size=5))


def heartbeat_events(run_id: str | None = None, seq: int | None = None) -> st.SearchStrategy[Heartbeat]:
    """Any ``heartbeat`` event."""
    return st.builds(Heartbeat, **_envelope(run_id, seq))


def succeeded_events(run_id: str | None = None, seq: int | None = None) -> st.SearchStrategy[Succeeded]:
    """Any ``succeeded`` event."""
    return st.builds(Succeeded, **_envelope(run_id, seq), message=_optional(texts()))


def failed_events(run_id: str | None = None, seq: int | None = None) -> st.SearchStrategy[Failed]:
    """Any ``failed`` event."""
    return st.builds(
        Failed,
        **_envelope(run_id, seq),
        reason=st.sampled_from(FailReason),
        step=_optional(texts()),
        exit_code=_optional(st.integers(-255, 255)),
        message=_optional(texts()),
    )


def cancelled_events(run_id: str | None = None, seq: int | None = None) -> st.SearchStrategy[Cancelled]:
    """Any ``cancelled`` event."""
    return st.builds(Cancelled, **_envelope(run_id, seq), by=texts(), reason=_optional(texts()))


def abandoned_events(run_id: str | None = None, seq: int | None = None) -> st.SearchStrategy[Abandoned]:
    """Any ``abandoned`` event."""
    quarantined = st.builds(
        QuarantinedTail, file=texts(), offset=st.integers(0, 2**40), length=st.integers(0, 2**20)
    )
    return st.builds(
        Abandoned,
        **_envelope(run_id, seq),
        reason=st.sampled_from(AbandonReason),
        evidence=_json_objects(),
        checker=checker_identities(),
        last_seq=st.integers(-1, 2**31),
        tail_quarantined=_optional(quarantined),
    )


EVENT_STRATEGIES = {
    "started": started_events,
    "step-progress": step_progress_events,
    "heartbeat": heartbeat_events,
    "items-planned": items_planned_events,
    "succeeded": succeeded_events,
    "failed": failed_events,
    "cancelled": cancelled_events,
    "abandoned": abandoned_events,
}
"""Event type tag -> strategy factory ``(run_id=None, seq=None)``."""


def events(
    types: Iterable[str] | None = None, run_id: str | None = None, seq: int | None = None
) -> st.SearchStrategy[Event]:
    """Any single event, of one of ``types`` (every type by default)."""
    chosen = sorted(types) if types is not None else list(EVENT_STRATEGIES)
    return st.one_of(*(EVENT_STRATEGIES[name](run_id, seq) for name in chosen))


# ---------------------------------------------------------------- stream strategy


@dataclass(frozen=True, slots=True)
class _Draft:
    """An event before its place in the stream is known: model, and fields without envelope."""

    model: type[Any]
    fields: dict[str, Any]


def _draw_step_script(draw: st.DrawFn, step: PlannedStep, outcome: str) -> list[_Draft]:
    """The step-progress events of one step, ending in ``outcome``."""
    if outcome == "skipped":
        return [_Draft(StepProgress, {"step": step.name, "state": "skipped", "message": draw(_optional(texts()))})]
    if not step.items:
        code = 0 if outcome == "succeeded" else draw(st.integers(1, 255))
        return [
            _Draft(StepProgress, {"step": step.name, "state": "started"}),
            _Draft(StepProgress, {"step": step.name, "state": outcome, "exit_code": code}),
        ]
    return _draw_fanout_script(draw, step, outcome)


def _draw_fanout_script(draw: st.DrawFn, step: PlannedStep, outcome: str) -> list[_Draft]:
    """Items run with up to ``concurrency`` in flight; ``done`` counts items ended so far."""
    items = list(step.items or [])
    total = len(items)
    failing = set() if outcome == "succeeded" else set(draw(st.lists(st.sampled_from(items), min_size=1, unique=True)))
    concurrency = draw(st.integers(1, 3))
    script = [_Draft(StepProgress, {"step": step.name, "state": "started", "done": 0, "total": total})]
    pending, in_flight, done = list(items), [], 0
    while pending or in_flight:
        can_start = bool(pending) and len(in_flight) < concurrency
        if can_start and (not in_flight or draw(st.booleans())):
            item = pending.pop(0)
            in_flight.append(item)
            state, exit_code = "started", None
        else:
            item = in_flight.pop(draw(st.integers(0, len(in_flight) - 1)))
            done += 1
            state = "failed" if item in failing else "succeeded"
            exit_code = draw(st.integers(1, 255)) if item in failing else 0
        fields = {"step": step.name, "state": "started", "item": item, "item_state": state}
        script.append(_Draft(StepProgress, fields | {"done": done, "total": total, "exit_code": exit_code}))
    script.append(_Draft(StepProgress, {"step": step.name, "state": outcome, "done": total, "total": total}))
    return script


def _draw_plan_script(
    draw: st.DrawFn, plan: list[PlannedStep], must_succeed: bool
) -> tuple[list[_Draft], _Draft | None]:
    """Progress through the plan until a step fails; returns the script and the failure terminal."""
    script: list[_Draft] = []
    for step in plan:
        outcomes = ["succeeded", "skipped"] if must_succeed else ["succeeded", "skipped", "failed"]
        outcome = draw(st.sampled_from(outcomes))
        script += _draw_step_script(draw, step, outcome)
        if outcome == "failed":
            exit_code = script[-1].fields.get("exit_code")
            return script, _Draft(Failed, {"reason": FailReason.STEP_FAILED, "step": step.name, "exit_code": exit_code})
    return script, None


def _with_heartbeats(draw: st.DrawFn, script: list[_Draft], heartbeats: bool) -> list[_Draft]:
    if not heartbeats:
        return script
    out: list[_Draft] = []
    for draft in script:
        out += [_Draft(Heartbeat, {})] * draw(st.integers(0, 2))
        out.append(draft)
    return out


def _draw_terminal(draw: st.DrawFn, kind: str, failure: _Draft | None, last_seq: int) -> _Draft:
    """The terminal event of a run that ends with ``kind``."""
    if kind == "succeeded":
        return _Draft(Succeeded, {"message": draw(_optional(texts()))})
    if kind == "failed":
        if failure is not None:
            return failure
        reason = draw(st.sampled_from([FailReason.EXCEPTION, FailReason.TIMEOUT]))
        return _Draft(Failed, {"reason": reason, "message": draw(_optional(texts()))})
    if kind == "cancelled":
        return _Draft(Cancelled, {"by": draw(st.sampled_from(["user:tester", "signal:SIGINT", "signal:SIGTERM"]))})
    return _Draft(
        Abandoned,
        {
            "reason": draw(st.sampled_from(AbandonReason)),
            "evidence": draw(_json_objects()),
            "checker": draw(checker_identities()),
            "last_seq": last_seq,
        },
    )


def _stamp(drafts: list[_Draft], run_id: str, start_seq: int, start: datetime, gaps: list[int]) -> list[Event]:
    """Give each draft its envelope: consecutive seq, non-decreasing ts."""
    out: list[Event] = []
    moment = start
    for offset, (draft, gap) in enumerate(zip(drafts, gaps, strict=True)):
        moment += timedelta(microseconds=gap)
        out.append(draft.model(run_id=run_id, seq=start_seq + offset, ts=moment, **draft.fields))
    return out


@st.composite
def event_streams(
    draw: st.DrawFn,
    *,
    run_id: str | None = None,
    min_steps: int = 0,
    max_steps: int = 4,
    max_items: int = 4,
    terminal: bool | None = None,
    terminal_types: Iterable[str] = tuple(sorted(TERMINAL_TYPES)),
    late_events: bool | None = None,
    heartbeats: bool = True,
) -> list[Event]:
    """A valid run as written by one writer (and maybe a reconciler).

    ``started`` first (planning ``min_steps`` to ``max_steps`` steps, fan-out steps with up to
    ``max_items`` items), then step progress as a runner would record it: steps in plan
    order, each started then ended (or skipped); fan-out items started and ended with up to
    three in flight, ``done``/``total`` counting ended items. A run that had a failing step
    stops after it. Heartbeats are interleaved when ``heartbeats``. The run may stop
    anywhere (an in-flight step), then:

    * ``terminal``: None (maybe), True (always) or False (never) a terminal event of one
      of ``terminal_types``. ``succeeded`` follows a complete, successful plan; ``failed``
      names the failing step, or has reason ``exception``/``timeout`` anywhere;
      ``cancelled`` and ``abandoned`` (``last_seq`` = the seq before it) come anywhere.
    * ``late_events``: None (maybe), True (at least one) or False (none) events after the
      terminal, as written by a writer that was only stopped and came back: the rest of
      its progress, heartbeats, and possibly its own terminal. True implies a terminal.

    ``seq`` is 0, 1, 2 ...; ``ts`` never decreases; every event has the same ``run_id``.
    """
    rid = run_id if run_id is not None else draw(run_ids())
    kinds = sorted(set(terminal_types) & TERMINAL_TYPES)
    want_terminal = True if late_events else terminal
    if want_terminal is None:
        want_terminal = bool(kinds) and draw(st.booleans())
    if want_terminal and not kinds:
        raise ValueError("terminal=True (or late_events=True) needs at least one terminal type")
    kind = draw(st.sampled_from(kinds)) if want_terminal else None

    plan = draw(planned_steps(max_steps, max_items, min_steps))
    script, failure = _draw_plan_script(draw, plan, must_succeed=kind == "succeeded")
    if kind == "succeeded" or (kind == "failed" and failure is not None and draw(st.booleans())):
        cut = len(script)
    else:
        # Runs that got through their whole plan are the interesting ones: favour them.
        cut = draw(st.just(len(script)) | st.integers(0, len(script)))
        failure = failure if cut == len(script) else None
    body = _with_heartbeats(draw, script[:cut], heartbeats)
    drafts = [_Draft(Started, _started_fields(draw, plan)), *body]
    if kind is not None:
        drafts.append(_draw_terminal(draw, kind, failure, last_seq=len(drafts) - 1))
        drafts += _draw_late(draw, script[cut:], late_events)

    gaps = draw(st.lists(st.integers(0, 10**7), min_size=len(drafts), max_size=len(drafts)))
    start = draw(timestamps(2000, 2099))
    return _stamp(drafts, rid, 0, start, gaps)


def _started_fields(draw: st.DrawFn, plan: list[PlannedStep]) -> dict[str, Any]:
    return {
        "workflow": draw(texts()),
        "steps": plan,
        "inputs": draw(_json_objects()),
        "writer": draw(writer_identities()),
        "heartbeat_interval": draw(st.sampled_from([0.5, 5.0, 30.0])),
    }


def _draw_late(draw: st.DrawFn, rest: list[_Draft], late_events: bool | None) -> list[_Draft]:
    """What a writer that was only stopped writes after someone else ended its run."""
    if late_events is False or (late_events is None and not draw(st.booleans())):
        return []
    late = [_Draft(Heartbeat, {}), *rest[: draw(st.integers(0, len(rest)))]]
    if draw(st.booleans()):
        late.append(_Draft(Succeeded, {}) if not rest else _Draft(Failed, {"reason": FailReason.EXCEPTION}))
    return late


@st.composite
def torn_streams(draw: st.DrawFn, **stream_options: Any) -> TornStream:
    """A valid stream (see :func:`event_streams`, which takes the same options) with its last line torn.

    At least the ``started`` line is whole; the torn line is cut after 1 to ``len - 1`` bytes.
    """
    stream = draw(event_streams(**stream_options).filter(lambda s: len(s) >= 2))
    line = journal_lines(stream)[-1]
    cut = draw(st.integers(1, len(line) - 1))
    return TornStream(events=stream[:-1], torn=stream[-1], fragment=line[:cut])


@st.composite
def scrambled_streams(draw: st.DrawFn, *, run_id: str = DEFAULT_RUN_ID, **stream_options: Any) -> list[Event]:
    """A valid run (see :func:`event_streams`) shuffled, with duplicated events and arbitrary events of the same run mixed in.

    What a fold must survive without raising: for totality tests, not a stream any writer produces.
    """
    stream = draw(event_streams(run_id=run_id, **stream_options))
    extra = draw(st.lists(events(run_id=run_id), max_size=4))
    dups = draw(st.lists(st.sampled_from(stream), max_size=4))
    return draw(st.permutations(stream + extra + dups))


DAMAGES = ("clean", "torn", "foreign", "flipped", "dropped", "duplicated")
"""What :func:`journal_files` may do to a run's file (see :class:`~runjournal.journal.testing.builders.JournalFile`)."""


@st.composite
def journal_files(draw: st.DrawFn, *, damages: Iterable[str] = DAMAGES, **stream_options: Any) -> JournalFile:
    """A valid run (see :func:`event_streams`, same options) as file bytes, maybe torn, foreign or damaged.

    Readers must treat them all alike, whatever path they take: the same events from a whole
    or torn file, the same error (file, line, offset, reason) from a damaged one.
    """
    stream = draw(event_streams(**stream_options))
    damage = draw(st.sampled_from(sorted(damages)))
    lines = journal_lines(stream)
    if damage == "foreign":
        lines = foreign_lines(stream, draw(st.sets(st.integers(0, len(stream) - 1), min_size=1)))
    elif damage in ("flipped", "dropped", "duplicated") and len(lines) > 1:
        lines = _damaged(draw, lines, damage)
    data = b"".join(lines)
    if damage == "torn":
        last = lines[-1]
        data += last[: draw(st.integers(1, len(last) - 1))]
    return JournalFile(stream, data, damage)


def _damaged(draw: st.DrawFn, lines: list[bytes], damage: str) -> list[bytes]:
    at = draw(st.integers(1, len(lines) - 1))
    if damage == "dropped":
        return lines[:at] + lines[at + 1 :]
    if damage == "duplicated":
        return lines[: at + 1] + lines[at:]
    line = bytearray(lines[at])
    pos = draw(st.integers(0, len(line) - 2))  # never the newline
    line[pos] = draw(st.integers(0x20, 0x7E).filter(lambda b: b != line[pos] and b != 0x0A))
    return lines[:at] + [bytes(line)] + lines[at + 1 :]
