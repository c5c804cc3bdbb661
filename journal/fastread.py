"""A faster :func:`journal.codec.decode_line` for the read path: same answers, less pydantic.

Validating a line with the pydantic ``TypeAdapter`` costs ~18 us, three quarters of
decoding it. A line our own writer produced has one exact shape (compact canonical JSON,
every field present with its exact JSON type), which plain Python checks cover in a few
microseconds; the model is then built with ``model_construct`` (no second validation).

Anything off that happy path (non-canonical JSON, a broken hash chain, an old or future
version, an unknown type, a missing or extra field, a value pydantic would coerce such as
``"3"`` for an int, an unknown reason code) is handed to :func:`journal.codec.decode_line`,
which accepts it or raises exactly as it always does. So :func:`decode_line` accepts and
rejects the same lines as the codec, with the same errors, and returns equal events
(``tests/test_fastread.py`` checks this with Hypothesis).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from journal import codec
from journal.events import (
    SCHEMA_VERSION,
    Abandoned,
    AbandonReason,
    Cancelled,
    CheckerIdentity,
    Event,
    Failed,
    FailReason,
    Heartbeat,
    PlannedStep,
    QuarantinedTail,
    Started,
    StepProgress,
    Succeeded,
    WriterIdentity,
)
from journal.ids import RUN_ID_PATTERN

_HASH_PREFIX = b',"h":"'
_SUFFIX_LEN = len(_HASH_PREFIX) + 64 + 2
_HEX = frozenset("0123456789abcdef")
_DIGITS = frozenset("0123456789")
_STEP_STATES = frozenset({"started", "succeeded", "failed", "skipped"})
_FAIL_REASONS = {member.value: member for member in FailReason}
_ABANDON_REASONS = {member.value: member for member in AbandonReason}
_ENVELOPE = ("v", "run_id", "seq", "ts", "type")


def _constructor(model: type[Any]) -> Callable[[dict[str, Any]], Any]:
    """A function building ``model`` from already-checked values (every field, in field order).

    What ``model_construct`` ends with, without its per-field alias and default lookups
    (half the cost of decoding a line). Only for models where that is all it does: no
    aliases, no ``extra="allow"``, no private attributes or ``model_post_init``;
    anything else gets ``model_construct`` itself.
    """
    plain = (
        not model.__pydantic_root_model__
        and not model.__pydantic_post_init__
        and not model.__private_attributes__
        and model.model_config.get("extra") != "allow"
        and all(f.alias is None and f.validation_alias is None for f in model.model_fields.values())
    )
    if not plain:
        return lambda values: model.model_construct(**values)
    new, setattr_ = object.__new__, object.__setattr__

    def construct(values: dict[str, Any]) -> Any:
        instance = new(model)
        setattr_(instance, "__dict__", values)
        setattr_(instance, "__pydantic_fields_set__", set(values))
        setattr_(instance, "__pydantic_extra__", None)
        setattr_(instance, "__pydantic_private__", None)
        return instance

    return construct


class OffPath(Exception):
    """The line is not in the exact shape the fast path handles; the codec must decide."""


def decode_line(
    raw: bytes, prev_hash: str, *, path: str = "<journal>", line_no: int = 0, offset: int = 0
) -> tuple[Event, str]:
    """Decode one line exactly as :func:`journal.codec.decode_line` does (same signature, result and errors)."""
    try:
        return _fast(raw, prev_hash)
    except (OffPath, orjson.JSONDecodeError, KeyError, ValueError, TypeError, OverflowError):
        return codec.decode_line(raw, prev_hash, path=path, line_no=line_no, offset=offset)


def _fast(raw: bytes, prev_hash: str) -> tuple[Event, str]:
    if len(raw) + 1 > codec.MAX_LINE_BYTES or len(raw) <= _SUFFIX_LEN:
        raise OffPath
    obj = orjson.loads(raw)
    if type(obj) is not dict or orjson.dumps(obj) != raw:
        raise OffPath  # not canonical: the codec's stricter parser decides (duplicate keys, big ints ...)
    if raw[-_SUFFIX_LEN : -_SUFFIX_LEN + len(_HASH_PREFIX)] != _HASH_PREFIX or raw[-2:] != b'"}':
        raise OffPath
    digest = raw[-66:-2].decode("ascii")  # UnicodeDecodeError is a ValueError: off the path
    if obj.pop("h", None) != digest or not _HEX.issuperset(digest):
        raise OffPath
    if codec.chain_hash(prev_hash, raw[:-_SUFFIX_LEN]) != digest:
        raise OffPath
    build = _BUILDERS.get(obj.get("type"))  # type: ignore[arg-type]
    if build is None or obj.get("v") != SCHEMA_VERSION or type(obj["v"]) is not int:
        raise OffPath
    return build(obj), digest


# ---- field checks: each returns the value as the model holds it, or raises OffPath -------------


def _str(value: Any) -> str:
    if type(value) is not str:
        raise OffPath
    return value


def _opt_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _int(value: Any, minimum: int | None = None) -> int:
    if type(value) is not int or (minimum is not None and value < minimum):
        raise OffPath
    return value


def _opt_int(value: Any, minimum: int | None = None) -> int | None:
    return None if value is None else _int(value, minimum)


def _run_id(value: Any) -> str:
    if type(value) is not str or RUN_ID_PATTERN.fullmatch(value) is None:
        raise OffPath
    return value


def _timestamp(value: Any) -> datetime:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in ASCII digits, as the codec's strptime would read it."""
    if type(value) is not str or len(value) != 27 or value[26] != "Z" or value[19] != ".":
        raise OffPath
    if value[4] != "-" or value[7] != "-" or value[10] != "T" or value[13] != ":" or value[16] != ":":
        raise OffPath
    digits = value[0:4] + value[5:7] + value[8:10] + value[11:13] + value[14:16] + value[17:19] + value[20:26]
    if not _DIGITS.issuperset(digits):
        raise OffPath
    # datetime() raises ValueError for what strptime would reject (month 13, second 60 ...)
    return datetime(int(value[0:4]), int(value[5:7]), int(value[8:10]), int(value[11:13]), int(value[14:16]),
                    int(value[17:19]), int(value[20:26]), tzinfo=UTC)


def _fields(obj: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """The envelope, converted; ``obj`` must have exactly the model's fields (no defaults, no extras)."""
    if obj.keys() != names:
        raise OffPath
    return {"v": obj["v"], "run_id": _run_id(obj["run_id"]), "seq": _int(obj["seq"], 0), "ts": _timestamp(obj["ts"]),
            "type": obj["type"]}


def _exact(obj: Any, names: frozenset[str]) -> dict[str, Any]:
    if type(obj) is not dict or obj.keys() != names:
        raise OffPath
    return obj


# ---- one builder per event type ------------------------------------------------------------------


def _names(model: type) -> frozenset[str]:
    return frozenset(model.model_fields)  # type: ignore[attr-defined]


_new_writer = _constructor(WriterIdentity)
_new_planned = _constructor(PlannedStep)
_new_checker = _constructor(CheckerIdentity)
_new_quarantined = _constructor(QuarantinedTail)
_new_started = _constructor(Started)
_new_progress = _constructor(StepProgress)
_new_heartbeat = _constructor(Heartbeat)
_new_succeeded = _constructor(Succeeded)
_new_failed = _constructor(Failed)
_new_cancelled = _constructor(Cancelled)
_new_abandoned = _constructor(Abandoned)

_WRITER = _names(WriterIdentity)
_PLANNED = _names(PlannedStep)
_CHECKER = _names(CheckerIdentity)
_QUARANTINED = _names(QuarantinedTail)


def _started(obj: dict[str, Any]) -> Started:
    fields = _fields(obj, _names(Started))
    w = _exact(obj["writer"], _WRITER)
    writer = _new_writer({
        "host": _str(w["host"]), "boot_id": _str(w["boot_id"]), "pid": _int(w["pid"]),
        "start_ticks": _int(w["start_ticks"]), "argv": _str_list(w["argv"]), "user": _str(w["user"]),
        "tool_version": _str(w["tool_version"])})
    interval = obj["heartbeat_interval"]
    if type(interval) is not float or not interval > 0 or type(obj["inputs"]) is not dict:
        raise OffPath
    if type(obj["steps"]) is not list:
        raise OffPath
    steps = [_planned(step) for step in obj["steps"]]
    rerun_of = None if obj["rerun_of"] is None else _run_id(obj["rerun_of"])
    return _new_started(fields | {
        "workflow": _str(obj["workflow"]), "steps": steps, "inputs": obj["inputs"], "writer": writer,
        "heartbeat_interval": interval, "workflow_file": _opt_str(obj["workflow_file"]),
        "workflow_digest": _opt_str(obj["workflow_digest"]), "rerun_of": rerun_of})


def _planned(step: Any) -> PlannedStep:
    s = _exact(step, _PLANNED)
    items = None if s["items"] is None else _str_list(s["items"])
    return _new_planned({"name": _str(s["name"]), "items": items})


def _str_list(value: Any) -> list[str]:
    if type(value) is not list or any(type(item) is not str for item in value):
        raise OffPath
    return value


def _step_state(value: Any, optional: bool = False) -> Any:
    if (value is None and optional) or (type(value) is str and value in _STEP_STATES):
        return value
    raise OffPath


def _progress(obj: dict[str, Any]) -> StepProgress:
    fields = _fields(obj, _PROGRESS)
    return _new_progress(fields | {
        "step": _str(obj["step"]), "state": _step_state(obj["state"]), "done": _opt_int(obj["done"], 0),
        "total": _opt_int(obj["total"], 0), "item": _opt_str(obj["item"]),
        "item_state": _step_state(obj["item_state"], True), "exit_code": _opt_int(obj["exit_code"]),
        "message": _opt_str(obj["message"])})


def _heartbeat(obj: dict[str, Any]) -> Heartbeat:
    return _new_heartbeat(_fields(obj, _HEARTBEAT))


def _succeeded(obj: dict[str, Any]) -> Succeeded:
    return _new_succeeded(_fields(obj, _SUCCEEDED) | {"message": _opt_str(obj["message"])})


def _failed(obj: dict[str, Any]) -> Failed:
    fields = _fields(obj, _FAILED)
    return _new_failed(fields | {
        "reason": _FAIL_REASONS[obj["reason"]], "step": _opt_str(obj["step"]),
        "exit_code": _opt_int(obj["exit_code"]), "message": _opt_str(obj["message"])})


def _cancelled(obj: dict[str, Any]) -> Cancelled:
    fields = _fields(obj, _CANCELLED)
    return _new_cancelled(fields | {"by": _str(obj["by"]), "reason": _opt_str(obj["reason"])})


def _abandoned(obj: dict[str, Any]) -> Abandoned:
    fields = _fields(obj, _ABANDONED)
    c = _exact(obj["checker"], _CHECKER)
    checker = _new_checker({"host": _str(c["host"]), "pid": _int(c["pid"]), "user": _str(c["user"])})
    tail = None
    if obj["tail_quarantined"] is not None:
        t = _exact(obj["tail_quarantined"], _QUARANTINED)
        tail = _new_quarantined({"file": _str(t["file"]), "offset": _int(t["offset"], 0),
                                 "length": _int(t["length"], 0)})
    if type(obj["evidence"]) is not dict:
        raise OffPath
    return _new_abandoned(fields | {
        "reason": _ABANDON_REASONS[obj["reason"]], "evidence": obj["evidence"], "checker": checker,
        "last_seq": _int(obj["last_seq"], -1), "tail_quarantined": tail})


_PROGRESS = _names(StepProgress)
_HEARTBEAT = _names(Heartbeat)
_SUCCEEDED = _names(Succeeded)
_FAILED = _names(Failed)
_CANCELLED = _names(Cancelled)
_ABANDONED = _names(Abandoned)

_BUILDERS: dict[str, Callable[[dict[str, Any]], Event]] = {
    "started": _started,
    "step-progress": _progress,
    "heartbeat": _heartbeat,
    "succeeded": _succeeded,
    "failed": _failed,
    "cancelled": _cancelled,
    "abandoned": _abandoned,
}
