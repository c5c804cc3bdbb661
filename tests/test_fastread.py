"""journal.fastread decodes exactly like journal.codec: same events, same errors, for any line."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from journal import codec, fastread
from journal.codec import GENESIS_HASH, chain_hash, encode_line
from journal.events import Event
from journal.testing import events, json_values, make_stream, texts

HASHES = st.sampled_from([GENESIS_HASH, "a" * 64, chain_hash(GENESIS_HASH, b"x")])

ODD_VALUES = st.one_of(
    json_values(4),
    st.sampled_from([True, False, 0, -1, 1, "1", "0", 1.0, 0.5, -0.0, 2**63, 2**64 + 1, -(2**63) - 1, [], {}, "", "unknown",
                     "started", "succeeded", "skipped", "step-failed", "operator", "heartbeat", "x" * 129,
                     "2026-01-01T00:00:00.000000Z", "2026-13-01T00:00:00.000000Z", "2026-02-30T00:00:00.000000Z",
                     "2026-01-01T24:00:00.000000Z", "2026-01-01T00:00:60.000000Z", "0000-01-01T00:00:00.000000Z",
                     "2026-01-01t00:00:00.000000Z", "2026-01-01T00:00:00.000000z", "2026-1-01T00:00:00.0000000Z",
                     "2026-01-01T00:00:00.000000+00:00", "\u0662\u0660\u0662\u0666-01-01T00:00:00.000000Z",
                     " 2026-01-01T00:00:00.00000Z", "2026-01-01T00:00:00.00000 Z", "../x", "a/b", "ok-id"]),
)


def outcome(decode: Any, raw: bytes, prev: str) -> tuple[Any, ...]:
    """What a decoder does with a line: the event (with its exact field types) and hash, or the error."""
    try:
        event, digest = decode(raw, prev, path="runs/r.jsonl", line_no=7, offset=1234)
    except Exception as exc:  # noqa: BLE001 - any difference in behaviour is what we look for
        return ("error", type(exc), str(exc))
    return ("event", type(event), event, _shape(event), event.__pydantic_fields_set__, digest)


def _shape(value: Any) -> Any:
    """A value with the type of every leaf, so 1 and 1.0 and True (which compare equal) differ."""
    if hasattr(value, "__pydantic_fields__"):
        return (type(value), {k: _shape(v) for k, v in value.__dict__.items()}, value.__pydantic_fields_set__)
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return (type(value), value, getattr(value, "tzinfo", None))


def assert_same(raw: bytes, prev: str) -> tuple[Any, ...]:
    """Both decoders behave identically on ``raw``."""
    fast, slow = outcome(fastread.decode_line, raw, prev), outcome(codec.decode_line, raw, prev)
    assert fast == slow
    return fast


def line_for(obj: Any, prev: str, *, canonical: bool = True) -> bytes:
    """A line whose hash is right for its body, so decoding gets past the chain to validation."""
    try:
        text = orjson.dumps(obj) if canonical else json.dumps(obj, ensure_ascii=False).encode()
    except TypeError:  # an int beyond 64 bits: orjson cannot write it, the stdlib can
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    body = text[:-1] if text.endswith(b"}") else text
    return body + b',"h":"' + chain_hash(prev, body).encode() + b'"}'


@given(events(), HASHES)
def test_every_valid_event_decodes_the_same(event: Event, prev: str) -> None:
    """A line the writer produced decodes to an equal event, field types and fields-set included."""
    line, _ = encode_line(event, prev)
    result = assert_same(line[:-1], prev)
    assert result[0] == "event" and result[2] == event


@settings(max_examples=400)
@given(events(), HASHES, st.data())
def test_a_changed_field_is_judged_the_same(event: Event, prev: str, data: st.DataObject) -> None:
    """Any field (or nested field) replaced, removed or added: accepted or rejected alike, same error."""
    obj = orjson.loads(encode_line(event, prev)[0])
    del obj["h"]
    target = obj
    nested = [k for k, v in obj.items() if isinstance(v, dict) and k in ("writer", "checker", "tail_quarantined")]
    if nested and data.draw(st.booleans(), label="nested"):
        target = obj[data.draw(st.sampled_from(nested), label="which")]
    key = data.draw(st.sampled_from([*target, "extra", "h", "v", "type"]), label="key")
    if data.draw(st.integers(0, 9), label="delete") == 0 and key in target:
        del target[key]
    else:
        target[key] = data.draw(odd_like(target.get(key)), label="value")
    assert_same(line_for(obj, prev, canonical=data.draw(st.integers(0, 4), label="canonical") > 0), prev)


NEAR_MISS_CHARS = "Zz tT:-.0159\u0661x/_"


def odd_like(value: Any) -> st.SearchStrategy[Any]:
    """Values close to ``value`` that pydantic may coerce, accept or reject: the edges of each field type."""
    if isinstance(value, (bool, int)):
        return st.sampled_from([True, False, 0, -1, -2, 1, "1", " 1", 1.0, 1.5, 2**63, 2**64, None]) | st.integers()
    if isinstance(value, str) and value:
        return st.builds(_swap_char, st.just(value), st.integers(0, len(value) - 1),
                         st.sampled_from(NEAR_MISS_CHARS)) | ODD_VALUES
    if isinstance(value, float):
        return st.sampled_from([0.0, -1.0, 1, 0, True, "30.0", 1e308, 5e-324]) | ODD_VALUES
    return ODD_VALUES


def _swap_char(text: str, at: int, char: str) -> str:
    return text[:at] + char + text[at + 1 :]


@given(events(), HASHES, st.data())
def test_damaged_bytes_are_judged_the_same(event: Event, prev: str, data: st.DataObject) -> None:
    """Flipped, cut or inserted bytes anywhere (hash left as is, or recomputed): same outcome."""
    line = bytearray(encode_line(event, prev)[0][:-1])
    at = data.draw(st.integers(0, len(line) - 1), label="at")
    action = data.draw(st.sampled_from(["flip", "cut", "insert"]), label="action")
    if action == "flip":
        line[at] ^= data.draw(st.integers(1, 255), label="mask")
    elif action == "cut":
        del line[at : at + data.draw(st.integers(1, 8), label="n")]
    else:
        line[at:at] = data.draw(st.binary(min_size=1, max_size=4), label="bytes")
    assert_same(bytes(line), prev)
    if data.draw(st.booleans(), label="rehash") and len(line) > 76:
        body = bytes(line[:-76])
        assert_same(body + bytes(line[-76:-66]) + chain_hash(prev, body).encode() + b'"}', prev)


@given(texts(40), HASHES)
@example('{"v":1,"a":1,"a":2}', GENESIS_HASH)
def test_arbitrary_text_is_judged_the_same(text: str, prev: str) -> None:
    """Whatever the bytes, the fast decoder raises the codec's error (or returns its event)."""
    assert_same(text.encode(), prev)
    body = text.encode()
    assert_same(body + b',"h":"' + chain_hash(prev, body).encode() + b'"}', prev)


def test_lines_off_the_fast_path_still_decode() -> None:
    """Valid but unusual lines (spaces, an int interval, an unknown reason code) decode as the codec does."""
    stream = make_stream("r1", terminal="failed")
    started = orjson.loads(encode_line(stream[0], GENESIS_HASH)[0])
    del started["h"]
    started["heartbeat_interval"] = 30
    line = line_for(started, GENESIS_HASH, canonical=False)
    assert assert_same(line, GENESIS_HASH)[0] == "event"
    failed = orjson.loads(encode_line(stream[-1], GENESIS_HASH)[0])
    del failed["h"]
    failed["reason"] = "a-reason-from-the-future"
    result = assert_same(line_for(failed, GENESIS_HASH), GENESIS_HASH)
    assert result[0] == "event" and result[2].reason.value == "unknown"


@pytest.mark.parametrize("seq", ["3", True, 3.0])
def test_coercions_pydantic_makes_are_made_too(seq: Any) -> None:
    """A seq of "3", true or 3.0 reads exactly as pydantic reads it (the fast path defers to the codec)."""
    event = make_stream("r1")[1]
    obj = orjson.loads(encode_line(event, GENESIS_HASH)[0])
    del obj["h"]
    obj["seq"] = seq
    assert_same(line_for(obj, GENESIS_HASH), GENESIS_HASH)


@given(events(), HASHES)
def test_writer_lines_take_the_fast_path(event: Event, prev: str) -> None:
    """Lines in the writer's own shape never reach the codec's pydantic validation (or the tests above prove little)."""
    line, digest = encode_line(event, prev)
    original = codec.decode_line
    codec.decode_line = _refuse  # type: ignore[assignment]
    try:
        assert fastread.decode_line(line[:-1], prev) == (event, digest)
    finally:
        codec.decode_line = original


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("fell back to journal.codec.decode_line")
