"""The event schema: every type round-trips through a journal line, reason codes degrade to ``unknown``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from runjournal.journal.codec import decode_line, encode_line
from runjournal.journal.events import (
    EVENT_ADAPTER,
    EVENT_TYPES,
    SYNCED_TYPES,
    AbandonReason,
    FailReason,
    Heartbeat,
    Started,
)
from runjournal.journal.records import GENESIS_HASH
from runjournal.journal.status import TERMINAL_TYPES
from runjournal.journal.testing import EVENT_STRATEGIES, events, make_identity, make_started

ALL_TYPES = sorted(EVENT_TYPES)


def test_strategies_cover_every_event_type() -> None:
    """journal.testing has a strategy for every event type in the union."""
    assert sorted(EVENT_STRATEGIES) == ALL_TYPES


@pytest.mark.parametrize("event_type", ALL_TYPES)
@given(data=st.data())
def test_every_event_type_round_trips_through_a_line(event_type: str, data: st.DataObject) -> None:
    """model -> line -> model gives back an equal event of the same type."""
    event = data.draw(EVENT_STRATEGIES[event_type]())
    line, digest = encode_line(event, GENESIS_HASH)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    decoded, decoded_digest = decode_line(line[:-1], GENESIS_HASH)
    assert decoded == event
    assert type(decoded) is type(event)
    assert decoded_digest == digest


@given(events())
def test_every_field_is_written_defaults_included(event: object) -> None:
    """A line carries every model field (never exclude_defaults) and ends with ``h``."""
    line, _ = encode_line(event, GENESIS_HASH)  # type: ignore[arg-type]
    keys = list(orjson.loads(line))
    assert keys[-1] == "h"
    assert set(keys[:-1]) == set(type(event).model_fields)  # type: ignore[attr-defined]


@given(events())
def test_json_dump_validates_back(event: object) -> None:
    """The JSON-mode dump validates back through the module-level adapter unchanged."""
    dumped = event.model_dump(mode="json")  # type: ignore[attr-defined]
    assert EVENT_ADAPTER.validate_python(dumped) == event


@pytest.mark.parametrize("enum_cls", [AbandonReason, FailReason])
@pytest.mark.parametrize("code", ["reason-from-the-future", "", "STEP-FAILED", "unknown"])
def test_unknown_reason_code_reads_as_unknown(enum_cls: type, code: str) -> None:
    """A reason code this reader does not know becomes ``unknown`` instead of failing."""
    assert enum_cls(code) is enum_cls.UNKNOWN


def test_unknown_reason_in_an_event_reads_as_unknown() -> None:
    """A ``failed`` object with a new reason code validates, with reason ``unknown``."""
    obj = {"v": 1, "run_id": "r1", "seq": 3, "ts": "2026-01-01T00:00:00.000000Z", "type": "failed",
           "reason": "out-of-coffee", "step": None, "exit_code": None, "message": None}
    assert EVENT_ADAPTER.validate_python(obj).reason is FailReason.UNKNOWN


def test_timestamps_are_written_in_utc_with_microseconds() -> None:
    """A non-UTC aware time is converted to UTC and written as YYYY-MM-DDTHH:MM:SS.ffffffZ."""
    plus_two = timezone(timedelta(hours=2))
    event = Heartbeat(run_id="r1", seq=1, ts=datetime(2026, 3, 1, 2, 0, 0, 5, tzinfo=plus_two))
    assert event.model_dump(mode="json")["ts"] == "2026-03-01T00:00:00.000005Z"


def test_timestamps_before_year_1000_are_zero_padded() -> None:
    """Early years keep four digits, so the line reads back (strftime does not pad them)."""
    event = Heartbeat(run_id="r1", seq=1, ts=datetime(999, 1, 2, tzinfo=UTC))
    assert event.model_dump(mode="json")["ts"] == "0999-01-02T00:00:00.000000Z"


@pytest.mark.parametrize(
    "ts", [datetime(2026, 1, 1), "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.000000+00:00", 1767225600]
)
def test_ambiguous_or_short_timestamps_are_refused(ts: object) -> None:
    """Naive datetimes, missing microseconds, offsets instead of Z and numbers are refused."""
    with pytest.raises(ValidationError):
        Heartbeat(run_id="r1", seq=1, ts=ts)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_are_refused_when_building_events(bad: float) -> None:
    """NaN/infinity would be written as null by orjson, so models refuse them anywhere."""
    with pytest.raises(ValidationError):
        make_started(heartbeat_interval=bad)
    with pytest.raises(ValidationError):
        make_started(inputs={"deep": [{"x": bad}]})


def test_unknown_fields_are_refused() -> None:
    """A typo in a field name is an error, not silently dropped data."""
    fields = make_started().model_dump()
    with pytest.raises(ValidationError):
        Started(**fields, workflwo="typo")


def test_unknown_event_type_is_refused_by_the_union() -> None:
    """The discriminated union rejects a ``type`` tag it does not know."""
    with pytest.raises(ValidationError, match="union_tag_invalid|does not match any of the expected tags"):
        EVENT_ADAPTER.validate_python({"v": 1, "run_id": "r1", "seq": 0, "ts": "2026-01-01T00:00:00.000000Z",
                                       "type": "exploded"})


@pytest.mark.parametrize("run_id", ["../x", "", "a/b", "-lead", "a" * 129, "nul\x00"])
def test_events_refuse_unsafe_run_ids(run_id: str) -> None:
    """An event cannot carry a run id that would be unsafe as a file name."""
    with pytest.raises(ValidationError):
        Heartbeat(run_id=run_id, seq=1, ts=datetime(2026, 1, 1, tzinfo=UTC))


def test_type_sets_are_consistent() -> None:
    """Terminals are the four ending types; everything but heartbeats is synced by default."""
    assert TERMINAL_TYPES == {"succeeded", "failed", "cancelled", "abandoned"}
    assert TERMINAL_TYPES <= set(EVENT_TYPES)
    assert SYNCED_TYPES == set(EVENT_TYPES) - {"heartbeat"}


def test_events_are_immutable() -> None:
    """Events are frozen: a fold can share them without copying."""
    identity = make_identity()
    with pytest.raises(ValidationError):
        identity.pid = 1  # type: ignore[misc]
