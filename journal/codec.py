"""One event <-> one line: framing, the hash chain, strict decoding and upcasting.

A line is the event as compact JSON with the field ``h`` last, then ``\\n``::

    {"v":1,"run_id":"...","seq":0,...,"h":"<64 hex>"}

``h = sha256(prev_h + body)`` in lowercase hex, where ``body`` is every byte of the line
before ``,"h":"`` and ``prev_h`` is the previous line's ``h`` as 64 ASCII characters
(:data:`~runjournal.journal.records.GENESIS_HASH` for the first line). The chain makes any changed, removed or
reordered byte in a completed journal detectable, which parsing alone cannot do.

Decoding is strict: invalid UTF-8, NaN/Infinity, duplicate keys, lone surrogates and lines
over :data:`MAX_LINE_BYTES` are rejected before the event model sees them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import ValidationError

from runjournal.journal.errors import CorruptLineError, IntegrityError, UnsupportedVersionError
from runjournal.journal.events import EVENT_ADAPTER, EVENT_TYPES, SCHEMA_VERSIONS, Event
from runjournal.journal.limits import EventTooLargeError
from runjournal.journal.lines import MAX_LINE_BYTES

_HASH_PREFIX = b',"h":"'
_HEX64 = re.compile(rb"[0-9a-f]{64}")
_HASH_SUFFIX_LEN = len(_HASH_PREFIX) + 64 + len(b'"}')

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def adding(version: int, **defaults: Any) -> Upcaster:
    """An upcaster to ``version`` for a change that only added fields (``defaults``: their old meaning).

    An old line that already carries one of the new fields is not made valid by it: the
    field is renamed so validation refuses it as unknown, as the old version would have.
    """

    def upcast(obj: dict[str, Any]) -> dict[str, Any]:
        out = {f"{k} (not in v{version - 1})" if k in defaults else k: v for k, v in obj.items()}
        return out | defaults | {"v": version}

    return upcast


def _started_v2(obj: dict[str, Any]) -> dict[str, Any]:
    """``started`` v2 added ``writer.pid_ns`` (a v1 writer is read with ``pid_ns`` null)."""
    writer = obj.get("writer")
    if isinstance(writer, dict) and "pid_ns" in writer:
        writer = {("pid_ns (not in v1)" if k == "pid_ns" else k): v for k, v in writer.items()}
    return obj | {"writer": writer, "v": 2}


def _started_v3(obj: dict[str, Any]) -> dict[str, Any]:
    """``started`` v3 added ``item_count`` to planned steps (a v2 step lists every item, ``item_count`` null)."""
    steps = obj.get("steps")
    if isinstance(steps, list):
        steps = [{("item_count (not in v2)" if k == "item_count" else k): v for k, v in step.items()}
                 if isinstance(step, dict) else step for step in steps]
    return obj | {"steps": steps, "v": 3}


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("started", 1): _started_v2,
    ("started", 2): _started_v3,
    ("step-progress", 1): adding(2, process=None),
    ("cancelled", 1): adding(2, evidence=None),
}
"""``(type, v) -> function`` turning a version-``v`` object into version ``v + 1``.

Old lines keep reading as today's model: each change to an event type registers here.
"""


def chain_hash(prev_hash: str, body: bytes) -> str:
    """Return the ``h`` of a line whose bytes before ``,"h":"`` are ``body``."""
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


def encode_line(event: Event, prev_hash: str) -> tuple[bytes, str]:
    """Return ``(line, h)``: the event as one newline-terminated line and its chain hash.

    Every field is written, defaults included (never ``exclude_defaults``), so the line
    reads back as the same model.

    Raises :class:`EventTooLargeError` (nothing is written) for an event no reader would
    accept: a line over :data:`MAX_LINE_BYTES`, or a value JSON cannot carry (a lone
    surrogate, an integer beyond 64 bits, nesting too deep).
    """
    try:
        body = orjson.dumps(event.model_dump(mode="json"))[:-1]
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise EventTooLargeError(f"cannot write a {event.type!r} event: {exc}") from None
    size = len(body) + _HASH_SUFFIX_LEN + 1
    if size > MAX_LINE_BYTES:
        raise EventTooLargeError(
            f"a {event.type!r} event of {size} bytes would exceed the {MAX_LINE_BYTES}-byte line cap; "
            "nothing was written (shorten the values it carries)"
        )
    digest = chain_hash(prev_hash, body)
    return body + _HASH_PREFIX + digest.encode("ascii") + b'"}\n', digest


def decode_line(
    raw: bytes,
    prev_hash: str,
    *,
    path: str = "<journal>",
    line_no: int = 0,
    offset: int = 0,
) -> tuple[Event, str]:
    """Decode one line (without its newline); return ``(event, h)`` or raise.

    Raises :class:`CorruptLineError` (or its subclasses :class:`IntegrityError`,
    :class:`UnsupportedVersionError`) naming ``path``, ``line_no`` and ``offset``.
    """
    decoded = _decode_common(raw, prev_hash)
    if decoded is not None:
        return decoded
    return _decode_checked(raw, prev_hash, path, line_no, offset)


def _decode_common(raw: bytes, prev_hash: str) -> tuple[Event, str] | None:
    """The line as our own writer writes it, decoded with the fewest steps; None for anything else.

    Every check of :func:`_decode_checked` holds when this returns an event (canonical
    JSON, so no duplicate keys or NaN; framing; chain; current version; the model), so only
    the error messages are left to the slow path, which runs for every line this refuses.
    """
    if len(raw) >= MAX_LINE_BYTES or not raw.endswith(b'"}') or raw[-_HASH_SUFFIX_LEN:][:6] != _HASH_PREFIX:
        return None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict:
        return None
    digest = chain_hash(prev_hash, raw[:-_HASH_SUFFIX_LEN])
    if raw[-66:-2] != digest.encode("ascii") or orjson.dumps(obj) != raw:
        return None
    del obj["h"]
    kind, version = obj.get("type"), obj.get("v")
    if type(kind) is not str or type(version) is not int or SCHEMA_VERSIONS.get(kind) != version:
        return None
    try:
        return EVENT_ADAPTER.validate_python(obj), digest
    except ValidationError:
        return None


def _decode_checked(raw: bytes, prev_hash: str, path: str, line_no: int, offset: int) -> tuple[Event, str]:
    """Decode one line with every check in order, so a bad line gets the precise reason."""

    def corrupt(reason: str, cls: type[CorruptLineError] = CorruptLineError) -> CorruptLineError:
        return cls(path, line_no, offset, reason)

    if len(raw) + 1 > MAX_LINE_BYTES:
        raise corrupt(f"line is {len(raw) + 1} bytes, over the {MAX_LINE_BYTES}-byte cap")
    obj = parse_strict_json(raw, corrupt)
    if not isinstance(obj, dict):
        raise corrupt("line is not a JSON object")
    body, digest = split_hash(raw, corrupt)
    if chain_hash(prev_hash, body) != digest:
        raise corrupt(
            "hash chain mismatch: the line (or one before it) was changed after it was written",
            IntegrityError,
        )
    del obj["h"]
    return validate_event(upcast(obj, corrupt), corrupt), digest


def parse_strict_json(raw: bytes, corrupt: Callable[..., CorruptLineError]) -> Any:
    """Parse ``raw`` as I-JSON: UTF-8, no NaN, no duplicate keys, no lone surrogates."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise corrupt(f"invalid JSON: {exc}") from None
    # Our own writer emits exactly orjson's canonical form, so re-encoding gives the same
    # bytes; anything else (another writer, a hand edit) takes the slow, stricter path
    # because orjson silently keeps the last of duplicate keys and rounds huge integers.
    try:
        if orjson.dumps(obj) == raw:
            return obj
    except (TypeError, orjson.JSONEncodeError):
        pass
    return _parse_with_stdlib(raw, corrupt)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {dup!r}")
    return result


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _parse_with_stdlib(raw: bytes, corrupt: Callable[..., CorruptLineError]) -> Any:
    try:
        return json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except UnicodeDecodeError as exc:
        raise corrupt(f"invalid UTF-8 at byte {exc.start} of the line") from None
    except RecursionError:
        raise corrupt("JSON nested too deeply") from None
    except ValueError as exc:
        raise corrupt(f"invalid JSON: {exc}") from None


def split_hash(raw: bytes, corrupt: Callable[..., CorruptLineError]) -> tuple[bytes, str]:
    """Split a line into its hashed body and its ``h`` value, checking the framing."""
    tail = raw[-_HASH_SUFFIX_LEN:]
    if len(raw) <= _HASH_SUFFIX_LEN or not tail.startswith(_HASH_PREFIX) or not tail.endswith(b'"}'):
        raise corrupt('line does not end with the hash field ,"h":"<64 hex>"}')
    digest = tail[len(_HASH_PREFIX) : -2]
    if _HEX64.fullmatch(digest) is None:
        raise corrupt("hash field is not 64 lowercase hex digits")
    return raw[:-_HASH_SUFFIX_LEN], digest.decode("ascii")


def upcast(obj: dict[str, Any], corrupt: Callable[..., CorruptLineError]) -> dict[str, Any]:
    """Bring an old-version event object up to the current schema version."""
    event_type, version = obj.get("type"), obj.get("v")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise corrupt(f"field 'v' must be a positive integer, got {version!r}")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise corrupt(f"unknown event type {event_type!r}")
    current = SCHEMA_VERSIONS[event_type]
    while version < current:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise corrupt(f"no upcaster for {event_type!r} version {version}")
        obj = step(obj)
        version = obj["v"]
    if version > current:
        raise corrupt(
            f"{event_type!r} version {version} is newer than this runjournal understands "
            f"(up to {current}); upgrade runjournal",
            UnsupportedVersionError,
        )
    return obj


def validate_event(obj: dict[str, Any], corrupt: Callable[..., CorruptLineError]) -> Event:
    """Validate a current-version object as an event model."""
    try:
        return EVENT_ADAPTER.validate_python(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "event"
        raise corrupt(f"invalid {obj.get('type')!r} event: {where}: {first['msg']}") from None
