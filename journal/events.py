"""The event schema: one frozen pydantic model per event type, joined on the ``type`` tag.

Every event shares the envelope ``v`` (schema version of its type), ``run_id``, ``seq``
(0, 1, 2 ... per run) and ``ts`` (UTC, microseconds). ``docs/format.md`` is the
language-neutral description of the same schema; ``runjournal schema`` prints it as JSON
Schema.

Reason codes are string enums with an ``unknown`` member: a line written by a newer tool
with a code this reader does not know still reads, as ``unknown``.
"""

from __future__ import annotations

import enum
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    WithJsonSchema,
)

from runjournal.journal.ids import RUN_ID_PATTERN

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_TIMESTAMP_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def _parse_utc(value: Any) -> datetime:
    if isinstance(value, str):
        if _TIMESTAMP_SHAPE.fullmatch(value) is None:
            raise ValueError("timestamp must be UTC as YYYY-MM-DDTHH:MM:SS.ffffffZ")
        # fromisoformat is ~10x faster than strptime; the shape check above keeps it strict.
        return datetime.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        return value.astimezone(UTC)
    raise ValueError("timestamp must be a string or datetime")


def _format_utc(moment: datetime) -> str:
    # %-formatting, not strftime: ~4x faster on the write path, and glibc's %Y would not
    # zero-pad years before 1000 (a timestamp the reader then rejects). ``moment`` is
    # already UTC: the validator converts every timestamp.
    m = moment
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (m.year, m.month, m.day, m.hour, m.minute, m.second, m.microsecond)


UtcTimestamp = Annotated[
    datetime,
    BeforeValidator(_parse_utc),
    PlainSerializer(_format_utc, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"}
    ),
]
"""A UTC instant, always written with six fractional digits and a ``Z``."""

RunId = Annotated[str, Field(pattern=f"^{RUN_ID_PATTERN.pattern}$")]


def _finite_json(value: Any) -> Any:
    # orjson writes NaN and infinities as null: refuse them rather than change the data.
    # Iterative, so a deeply nested value cannot hit the recursion limit.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and infinity cannot be written as JSON")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return value


JsonValue: TypeAlias = Annotated[Any, AfterValidator(_finite_json)]
NonNegative = Annotated[int, Field(ge=0)]


class _CodeEnum(str, enum.Enum):
    """A reason code: unknown values read as ``UNKNOWN`` instead of failing."""

    @classmethod
    def _missing_(cls, value: object) -> _CodeEnum:
        return cls("unknown")


class AbandonReason(_CodeEnum):
    """Why a reconciler decided the run's writer is gone."""

    ORIGINATING_PROCESS_NOT_ALIVE = "originating-process-not-alive"
    HOST_REBOOTED = "host-rebooted"
    HEARTBEAT_EXPIRED = "heartbeat-expired"
    WRITER_SESSION_ENDED = "writer-session-ended"
    OPERATOR = "operator"
    UNKNOWN = "unknown"


class FailReason(_CodeEnum):
    """Why a writer declared its run failed."""

    STEP_FAILED = "step-failed"
    TIMEOUT = "timeout"
    EXCEPTION = "exception"
    UNKNOWN = "unknown"


StepState = Literal["started", "succeeded", "failed", "skipped"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class WriterIdentity(_Model):
    """Who writes a run: enough to decide later, from the outside, whether it still lives."""

    host: str
    boot_id: str
    pid: int
    start_ticks: int = Field(description="process start time in clock ticks since boot (/proc/<pid>/stat field 22)")
    argv: list[str]
    user: str
    tool_version: str
    pid_ns: int | None = Field(default=None, description="inode of the writer's pid namespace (/proc/self/ns/pid)")


class PlannedStep(_Model):
    """A step as planned when the run started; ``items`` for a fan-out step.

    ``item_count`` (``started`` v3) is set when the items were too many for the ``started``
    line: ``items`` is then empty and the names follow in ``items-planned`` events.
    """

    name: str
    items: list[str] | None = None
    item_count: NonNegative | None = None


class CheckerIdentity(_Model):
    """Who reconciled a run."""

    host: str
    pid: int
    user: str


class QuarantinedTail(_Model):
    """A torn final fragment that reconciliation moved aside before appending."""

    file: str = Field(description="file name of the quarantine file, in the run's directory")
    offset: NonNegative = Field(description="byte offset where the fragment started")
    length: NonNegative


class _Envelope(_Model):
    v: Annotated[int, Field(ge=1)] = 1
    """The schema version of this event type: a model whose fields change overrides the
    default with its new version and registers an upcaster (see :mod:`runjournal.journal.codec`)."""
    run_id: RunId
    seq: NonNegative
    ts: UtcTimestamp


class Started(_Envelope):
    """The first event of every run: what runs, and who writes it.

    Version 2 added ``writer.pid_ns``, the writer's pid namespace; version 3 added ``item_count``
    to the planned steps.
    """

    v: Annotated[int, Field(ge=1)] = 3
    type: Literal["started"] = "started"
    workflow: str
    steps: list[PlannedStep]
    inputs: dict[str, JsonValue] = Field(default_factory=dict)
    writer: WriterIdentity
    heartbeat_interval: Annotated[float, Field(gt=0)]
    workflow_file: str | None = None
    workflow_digest: str | None = None
    rerun_of: RunId | None = None


class StepProcess(_Model):
    """The process group a step or item command runs in, recorded when the command starts.

    Enough to find (and stop) what the command left running after its runner died, and to
    tell it from a later process that reused the pid.
    """

    pid: int = Field(description="the command's pid as /proc numbers it on the writer's host")
    pgid: int = Field(description="its process group (the runner starts each command as a group leader)")
    start_ticks: int = Field(description="its start time in clock ticks since boot (/proc/<pid>/stat field 22)")
    boot_id: str = Field(description="the host's boot id when it started, lowercase, without whitespace")
    pid_ns: int | None = Field(default=None, description="inode of its pid namespace (/proc/<pid>/ns/pid)")


class StepProgress(_Envelope):
    """A step started or ended, or one item of a fan-out step started or ended.

    Version 2 added ``process``: the process group of the command a ``started`` event starts.
    """

    v: Annotated[int, Field(ge=1)] = 2
    type: Literal["step-progress"] = "step-progress"
    step: str
    state: StepState
    done: NonNegative | None = None
    total: NonNegative | None = None
    item: str | None = None
    item_state: StepState | None = None
    exit_code: int | None = None
    message: str | None = None
    process: StepProcess | None = None


class ItemsPlanned(_Envelope):
    """More planned items of a fan-out step whose items did not fit in the ``started`` line.

    Written by the run's writer right after ``started``, before any step runs; the step's
    ``item_count`` in ``started`` says how many items all of them list together.
    """

    type: Literal["items-planned"] = "items-planned"
    step: str
    items: list[str]


class Heartbeat(_Envelope):
    """The writer is still alive (not fsynced by default)."""

    type: Literal["heartbeat"] = "heartbeat"


class Succeeded(_Envelope):
    """Terminal: every step succeeded (or was skipped)."""

    type: Literal["succeeded"] = "succeeded"
    message: str | None = None


class Failed(_Envelope):
    """Terminal: the writer saw a step fail (or an exception)."""

    type: Literal["failed"] = "failed"
    reason: FailReason
    step: str | None = None
    exit_code: int | None = None
    message: str | None = None


class Cancelled(_Envelope):
    """Terminal: someone asked the run to stop, and its writer stopped it.

    When the writer was already gone, the canceller itself stops what the run left running
    and appends this event under the run's lock, with ``evidence`` of what it found and
    killed (version 2 added ``evidence``). Appended after another terminal event (an
    ``abandoned`` run whose leftovers still ran) it is a late event: it documents the kill
    and changes no status.
    """

    v: Annotated[int, Field(ge=1)] = 2
    type: Literal["cancelled"] = "cancelled"
    by: str
    reason: str | None = None
    evidence: dict[str, JsonValue] | None = None


class Abandoned(_Envelope):
    """Terminal, appended by a reconciler: the writer vanished without a terminal event."""

    type: Literal["abandoned"] = "abandoned"
    reason: AbandonReason
    evidence: dict[str, JsonValue]
    checker: CheckerIdentity
    last_seq: int = Field(ge=-1, description="seq of the last event the checker saw (-1: none)")
    tail_quarantined: QuarantinedTail | None = None


Event = Annotated[
    Started | ItemsPlanned | StepProgress | Heartbeat | Succeeded | Failed | Cancelled | Abandoned,
    Field(discriminator="type"),
]
"""Any journal event."""

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

EVENT_TYPES: dict[str, type[BaseModel]] = {
    model.model_fields["type"].default: model
    for model in (Started, ItemsPlanned, StepProgress, Heartbeat, Succeeded, Failed, Cancelled, Abandoned)
}
"""Event type tag -> model."""

SCHEMA_VERSIONS: dict[str, int] = {tag: model.model_fields["v"].default for tag, model in EVENT_TYPES.items()}
"""Event type tag -> the schema version this runjournal writes (and upcasts older lines to)."""

SYNCED_TYPES = frozenset(EVENT_TYPES) - {"heartbeat"}
"""Event types fdatasync'ed before ``append`` returns under the default durability."""


def event_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of one journal line (every event type), with the ``h`` field."""
    schema = EVENT_ADAPTER.json_schema(mode="serialization")
    schema["title"] = "runjournal event line"
    schema["description"] = (
        "One line of a runjournal JSONL journal. Every object also ends with the field "
        "'h': the hash chain value described in docs/format.md."
    )
    for definition in schema.get("$defs", {}).values():
        if "type" in definition.get("properties", {}) and "run_id" in definition["properties"]:
            definition["properties"]["h"] = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
            # The models default ``v`` and ``type``, but the reader needs both on every line.
            required = definition.get("required", [])
            definition["required"] = [*(n for n in ("v", "type") if n not in required), *required, "h"]
    return schema
