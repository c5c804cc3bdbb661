"""Events as plain JSON objects: the fast path's currency, and what it may trust without a model.

A *plain event* is an event's JSON object exactly as the event model dumps it
(``model_dump(mode="json")``: every field, defaults included, the current schema version,
``ts`` as the journal's string) and without the line's ``h``. A line written in the canonical
form (``docs/format.md`` section 11) parses to exactly that object, so a reader that has
verified a line once can hand it out again with one ``orjson.loads``.

Two event types carry (almost) nothing but scalars and are by far the most frequent
(``heartbeat``, ``step-progress``; the latter's ``process`` is taken plain only when null).
For them this module has :data:`PLAIN_SHAPES`: the exact field list and the JSON types each
field may hold, so that

* :func:`is_exact` decides, without building a model, whether a parsed line is exactly what
  the model would dump (then it is also valid: every field passes the model's own checks);
* :func:`plain_event` gives the fold a light view of such an object (attributes, ``ts`` as a
  datetime) instead of a pydantic model.

Every other type (and any other schema version of these two) is turned into its model, as
the strict reader does. A new field or version of ``heartbeat``/``step-progress`` therefore
falls back to the model until its shape is added here; ``tests/test_plain.py`` checks the
shapes against the models.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from runjournal.journal.events import EVENT_ADAPTER, SCHEMA_VERSIONS, Event

_STATES = frozenset({"started", "succeeded", "failed", "skipped"})
_fromiso = datetime.fromisoformat


class PlainHeartbeat(NamedTuple):
    """A ``heartbeat`` as the fold reads it."""

    run_id: str
    seq: int
    ts: datetime
    type: str


class PlainProgress(NamedTuple):
    """A ``step-progress`` event as the fold reads it (the attributes of the model, ``ts`` parsed)."""

    run_id: str
    seq: int
    ts: datetime
    type: str
    step: str
    state: str
    done: int | None
    total: int | None
    item: str | None
    item_state: str | None
    exit_code: int | None
    message: str | None
    process: None = None
    """Always None here: an event that records a process group is read as its model."""


PlainView = PlainHeartbeat | PlainProgress


class Shape(NamedTuple):
    """The exact form of one event type's plain object at one schema version."""

    version: int
    keys: tuple[str, ...]
    """Every field in model order, ``h`` last (the line's own field order)."""
    fields_ok: Callable[[dict[str, Any]], bool]
    """Whether the fields after the envelope hold exactly what the model would dump."""
    view: Callable[[dict[str, Any]], PlainView]


def _heartbeat_view(o: dict[str, Any]) -> PlainView:
    return tuple.__new__(PlainHeartbeat, (o["run_id"], o["seq"], _fromiso(o["ts"]), "heartbeat"))


def _progress_view(o: dict[str, Any]) -> Any:
    if o["process"] is not None:
        return EVENT_ADAPTER.validate_python(o)  # a nested object: the model's business
    return tuple.__new__(PlainProgress, (
        o["run_id"], o["seq"], _fromiso(o["ts"]), "step-progress", o["step"], o["state"], o["done"], o["total"],
        o["item"], o["item_state"], o["exit_code"], o["message"], None,
    ))


def _no_fields(o: dict[str, Any]) -> bool:
    return True


def _progress_fields(o: dict[str, Any]) -> bool:
    # One expression, not a check per field: this runs for most lines of a run's first read.
    state, item_state, done, total = o["state"], o["item_state"], o["done"], o["total"]
    item, code, message = o["item"], o["exit_code"], o["message"]
    return o["process"] is None and (
        type(o["step"]) is str and type(state) is str and state in _STATES
        and (done is None or (type(done) is int and done >= 0)) and (total is None or (type(total) is int and total >= 0))
        and (item is None or type(item) is str) and (item_state is None or (type(item_state) is str
                                                                             and item_state in _STATES))
        and (code is None or type(code) is int) and (message is None or type(message) is str)
    )


_ENVELOPE = ("v", "run_id", "seq", "ts", "type")
_PROGRESS = ("step", "state", "done", "total", "item", "item_state", "exit_code", "message", "process")

PLAIN_SHAPES: dict[str, Shape] = {
    "heartbeat": Shape(1, (*_ENVELOPE, "h"), _no_fields, _heartbeat_view),
    "step-progress": Shape(2, (*_ENVELOPE, *_PROGRESS, "h"), _progress_fields, _progress_view),
}
"""Event type -> the shape whose objects are read without a model (only at that schema version).

A shape whose version is not the one the writer writes (:data:`SCHEMA_VERSIONS`) is left
out: objects of another version are models' business (upcasting).
"""
PLAIN_SHAPES = {kind: shape for kind, shape in PLAIN_SHAPES.items() if SCHEMA_VERSIONS.get(kind) == shape.version}


def is_exact(obj: dict[str, Any], run_id: str, seq: int) -> bool:
    """Whether ``obj`` (a parsed line, ``h`` still in it) is exactly the dump of a valid event ``seq`` of ``run_id``.

    True only for the types of :data:`PLAIN_SHAPES` at their schema version; the caller has
    already checked that re-encoding ``obj`` gives the line's bytes back (no duplicate keys,
    no escapes) and the hash. False means "ask the model", not "invalid". The timestamp
    passes the models' own check: the separators here, and ``fromisoformat``, which reads
    only ASCII digits where the shape has digits and rejects an impossible date or time.
    """
    kind = obj.get("type")
    shape = PLAIN_SHAPES.get(kind) if type(kind) is str else None  # a hostile line's type may be a list
    if shape is None or tuple(obj) != shape.keys:
        return False
    v, s, ts = obj["v"], obj["seq"], obj["ts"]
    if v != shape.version or type(v) is not int or s != seq or type(s) is not int or obj["run_id"] != run_id:
        return False
    if type(ts) is not str or len(ts) != 27 or ts[4:20:3] != "--T::." or ts[26] != "Z" or not ts.isascii():
        return False
    try:
        _fromiso(ts)
    except ValueError:
        return False
    return shape.fields_ok(obj)


def heartbeat_reader(run_id: str) -> Callable[[bytes, int], dict[str, Any] | None] | None:
    """Recognise the canonical line of a heartbeat of ``run_id`` by its bytes, without parsing it.

    The returned function gives the plain object (with an ``h`` key for the caller to drop)
    of a line that is, byte for byte, ``{"v":1,"run_id":"<run_id>","seq":<seq>,"ts":"<ts>",
    "type":"heartbeat"`` followed by the hash suffix, with a valid ``ts``; None for anything
    else. That is exactly the canonical form of a valid heartbeat: a run id needs no JSON
    escaping, and the rest is fixed. Heartbeats are most of a long run's lines.
    """
    if "heartbeat" not in PLAIN_SHAPES or PLAIN_SHAPES["heartbeat"].version != 1:
        return None
    head = b'{"v":1,"run_id":"' + run_id.encode("ascii") + b'","seq":'
    middle = b'","type":"heartbeat"'
    fixed = len(head) + len(b',"ts":"') + 27 + len(middle) + 72

    def read(raw: bytes, seq: int) -> dict[str, Any] | None:
        digits = b"%d" % seq
        at = len(head) + len(digits)
        if len(raw) != fixed + len(digits) or not raw.startswith(head) or raw[len(head):at] != digits:
            return None
        if raw[at : at + 7] != b',"ts":"' or raw[at + 34 : at + 34 + len(middle)] != middle:
            return None
        ts = raw[at + 7 : at + 34].decode("ascii", "replace")
        if ts[4:20:3] != "--T::." or ts[26] != "Z" or not ts.isascii():
            return None
        try:
            _fromiso(ts)
        except ValueError:
            return None
        return {"v": 1, "run_id": run_id, "seq": seq, "ts": ts, "type": "heartbeat", "h": None}

    return read


class PlainModel(dict):  # type: ignore[type-arg]
    """A plain object that also carries the model a strict read already built for it (no second validation)."""

    __slots__ = ("model",)


def plain_event(obj: dict[str, Any]) -> Event | PlainView:
    """What the fold reads for a plain event: a light view for the scalar types, else the model."""
    if type(obj) is PlainModel:
        return obj.model  # type: ignore[no-any-return]
    shape = PLAIN_SHAPES.get(obj["type"])
    if shape is not None and obj["v"] == shape.version:
        return shape.view(obj)
    return EVENT_ADAPTER.validate_python(obj)


def to_plain(event: Event) -> dict[str, Any]:
    """The plain object of a model (what a canonical line holds, without ``h``)."""
    return event.model_dump(mode="json")
