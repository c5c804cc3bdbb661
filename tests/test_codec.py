"""The line codec: the hash chain, strict I-JSON decoding and the upcasting hook."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from runjournal.journal import codec
from runjournal.journal.codec import MAX_LINE_BYTES, chain_hash, decode_line, encode_line
from runjournal.journal.errors import CorruptLineError, IntegrityError, UnsupportedVersionError
from runjournal.journal.events import SCHEMA_VERSIONS, Heartbeat
from runjournal.journal.records import GENESIS_HASH
from runjournal.journal.testing import journal_lines, make_heartbeat, make_stream

HEARTBEAT = {"v": 1, "run_id": "r1", "seq": 1, "ts": "2026-01-01T00:00:00.000000Z", "type": "heartbeat"}


def hashed(body: bytes, prev: str = GENESIS_HASH) -> bytes:
    """A line (without newline) whose ``h`` is correct for ``body`` after ``prev``."""
    return body + b',"h":"' + chain_hash(prev, body).encode() + b'"}'


def obj_line(obj: dict[str, Any], prev: str = GENESIS_HASH) -> bytes:
    """``obj`` as a canonical line with a correct hash."""
    return hashed(orjson.dumps(obj)[:-1], prev)


def decode(raw: bytes, prev: str = GENESIS_HASH) -> Any:
    """Decode ``raw`` as line 7 at byte 1234 of journal.jsonl."""
    return decode_line(raw, prev, path="journal.jsonl", line_no=7, offset=1234)[0]


def test_hash_is_sha256_of_previous_hash_then_body() -> None:
    """h = hex(sha256(prev_h as ASCII + every byte before ,"h":")), as docs/format.md says."""
    event = make_heartbeat(1, run_id="r1")
    prev = "ab" * 32
    line, digest = encode_line(event, prev)
    body = line[: line.rindex(b',"h":"')]
    assert digest == hashlib.sha256(prev.encode() + body).hexdigest()
    assert line == body + b',"h":"' + digest.encode() + b'"}\n'


def test_our_lines_are_orjson_compact_output() -> None:
    """The body is exactly orjson's compact dump of the event, fields in model order."""
    event = make_heartbeat(1, run_id="r1")
    line, _ = encode_line(event, GENESIS_HASH)
    assert line.startswith(orjson.dumps(event.model_dump(mode="json"))[:-1] + b',"h":"')
    assert line.startswith(b'{"v":1,"run_id":"r1","seq":1,"ts":"2026-01-01T00:00:01.000000Z","type":"heartbeat"')


def test_each_line_chains_to_the_previous_one() -> None:
    """Line n's hash covers line n-1's hash, starting from the genesis hash."""
    lines = journal_lines(make_stream())
    prev = GENESIS_HASH
    for line in lines:
        body, digest = line[:-73], line[-67:-3].decode()
        assert line[-73:-67] == b',"h":"' and digest == chain_hash(prev, body)
        prev = digest


def test_a_line_from_another_writer_is_accepted_if_it_is_valid_i_json() -> None:
    """Whitespace, other key order and \\u escapes take the slow strict path and still decode."""
    body = b'{ "type" : "heartbeat", "seq": 1, "run_id": "\\u0072\\u0031", "ts": "2026-01-01T00:00:00.000000Z", "v": 1'
    assert decode(hashed(body)) == Heartbeat(run_id="r1", seq=1, ts=HEARTBEAT["ts"])


def test_a_hash_over_other_bytes_is_an_integrity_error() -> None:
    """Changing one digit of a valid line breaks its hash even though the JSON still parses."""
    line = obj_line(HEARTBEAT)
    with pytest.raises(IntegrityError, match="hash chain mismatch") as info:
        decode(line.replace(b'"seq":1', b'"seq":2'))
    assert (info.value.path, info.value.line, info.value.offset) == ("journal.jsonl", 7, 1234)


def test_a_line_chained_to_another_previous_hash_is_an_integrity_error() -> None:
    """A valid line moved after a different line (reordered, or one removed) fails the chain."""
    with pytest.raises(IntegrityError):
        decode(obj_line(HEARTBEAT), prev="1" * 64)


HEAD = b'{"v":1,"run_id":"r1","seq":1,"ts":"2026-01-01T00:00:00.000000Z","type":"heartbeat"'

MALFORMED = {
    "truncated JSON": (b'{"v":1,"run_id":"r1"', "invalid JSON"),
    "NaN": (hashed(HEAD + b',"x":NaN'), "invalid JSON"),
    "Infinity": (hashed(HEAD + b',"x":Infinity'), "invalid JSON"),
    "-Infinity": (hashed(HEAD + b',"x":-Infinity'), "invalid JSON"),
    "duplicate key": (hashed(HEAD + b',"seq":1'), "duplicate key 'seq'"),
    "invalid UTF-8": (hashed(HEAD[:-1] + b'\xff"'), "UTF-8"),
    "overlong UTF-8": (hashed(HEAD[:-1] + b'\xc0\xaf"'), "UTF-8"),
    "lone surrogate": (hashed(HEAD[:-1] + b'\\ud800"'), "surrogate"),
    "not an object": (b'[1,2,3]', "not a JSON object"),
    "trailing garbage": (hashed(HEAD) + b"x", "invalid JSON"),
    "no hash field": (HEAD + b"}", "does not end with the hash field"),
    "hash not last": (b'{"h":"' + b"0" * 64 + b'",' + HEAD[1:] + b"}", "does not end with the hash field"),
    "uppercase hash": (HEAD + b',"h":"' + b"A" * 64 + b'"}', "64 lowercase hex"),
    "v zero": (obj_line(HEARTBEAT | {"v": 0}), "field 'v' must be a positive integer"),
    "v string": (obj_line(HEARTBEAT | {"v": "1"}), "field 'v' must be a positive integer"),
    "v boolean": (obj_line(HEARTBEAT | {"v": True}), "field 'v' must be a positive integer"),
    "unknown type": (obj_line(HEARTBEAT | {"type": "exploded"}), "unknown event type 'exploded'"),
    "bad field": (obj_line(HEARTBEAT | {"seq": -1}), "invalid 'heartbeat' event: seq"),
    "extra field": (obj_line(HEARTBEAT | {"colour": "red"}), "invalid 'heartbeat' event: colour"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_lines_are_refused_with_their_location(case: str) -> None:
    """Each malformed line raises CorruptLineError naming file, line, byte offset and the reason."""
    raw, reason = MALFORMED[case]
    with pytest.raises(CorruptLineError) as info:
        decode(raw)
    error = info.value
    assert reason in error.reason
    assert str(error).startswith("journal.jsonl:7 (byte 1234): ")


def test_lines_over_the_size_cap_are_refused() -> None:
    """A line longer than MAX_LINE_BYTES (newline included) is corrupt, even if otherwise valid."""
    pad = b"x" * (MAX_LINE_BYTES - len(HEAD) - 100)
    fits = hashed(HEAD[:-len(b',"type":"heartbeat"')] + b',"type":"succeeded","message":"' + pad + b'"')
    assert len(fits) + 1 <= MAX_LINE_BYTES
    assert decode(fits).message == pad.decode()
    over = fits[:-72] + b"x" * (MAX_LINE_BYTES - len(fits)) + fits[-72:]
    with pytest.raises(CorruptLineError, match="over the 1048576-byte cap"):
        decode(over)


def test_a_future_schema_version_is_refused_with_advice() -> None:
    """A line written by a newer runjournal says so and asks for an upgrade."""
    with pytest.raises(UnsupportedVersionError, match="newer than this runjournal understands.*upgrade"):
        decode(obj_line(HEARTBEAT | {"v": 2}))


def test_upcasters_bring_old_lines_up_to_the_current_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """An old line is passed through the (type, v) upcaster chain and reads as today's model."""
    monkeypatch.setitem(codec.SCHEMA_VERSIONS, "heartbeat", 3)
    seen: list[tuple[str, int]] = []

    def step(target: int) -> Any:
        def upcast(obj: dict[str, Any]) -> dict[str, Any]:
            seen.append((obj["type"], obj["v"]))
            return obj | {"v": target}
        return upcast

    monkeypatch.setitem(codec.UPCASTERS, ("heartbeat", 1), step(2))
    monkeypatch.setitem(codec.UPCASTERS, ("heartbeat", 2), step(3))
    event = decode(obj_line(HEARTBEAT))
    assert seen == [("heartbeat", 1), ("heartbeat", 2)]
    assert event.v == 3 and event.seq == 1


def test_a_missing_upcaster_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """An old version with no registered upcaster is refused, not misread."""
    monkeypatch.setitem(codec.SCHEMA_VERSIONS, "heartbeat", 2)
    with pytest.raises(CorruptLineError, match="no upcaster for 'heartbeat' version 1"):
        decode(obj_line(HEARTBEAT))


def test_bumping_one_event_type_upcasts_only_that_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """Versions are per event type: a bumped ``step-progress`` upcasts its old lines, other types read as they are."""
    monkeypatch.setitem(codec.SCHEMA_VERSIONS, "step-progress", 2)
    renamed: list[int] = []

    def v1_to_v2(obj: dict[str, Any]) -> dict[str, Any]:
        # The kind of change a bump is for: v1 called the field "msg".
        renamed.append(obj["seq"])
        return {k: v for k, v in obj.items() if k != "msg"} | {"message": obj.get("msg"), "v": 2}

    monkeypatch.setitem(codec.UPCASTERS, ("step-progress", 1), v1_to_v2)
    progress = decode(obj_line(HEARTBEAT | {"type": "step-progress", "step": "build", "state": "started", "msg": "hi"}))
    assert (progress.type, progress.v, progress.message, renamed) == ("step-progress", 2, "hi", [1])
    heartbeat = decode(obj_line(HEARTBEAT))
    assert (heartbeat.type, heartbeat.v, renamed) == ("heartbeat", 1, [1])
    with pytest.raises(UnsupportedVersionError, match="'heartbeat' version 2 is newer"):
        decode(obj_line(HEARTBEAT | {"v": 2}))


def test_unknown_reason_code_in_a_line_reads_as_unknown() -> None:
    """An ``abandoned`` line from a newer tool with a new reason code decodes, reason ``unknown``."""
    obj = HEARTBEAT | {"type": "abandoned", "reason": "cosmic-ray", "evidence": {}, "last_seq": 0,
                       "checker": {"host": "h", "pid": 1, "user": "u"}, "tail_quarantined": None}
    assert decode(obj_line(obj)).reason.value == "unknown"


def test_step_progress_v1_reads_without_a_process() -> None:
    """A v1 step-progress line (before ``process`` existed) reads as v2 with ``process`` null."""
    obj = HEARTBEAT | {"type": "step-progress", "step": "build", "state": "started"}
    event = decode(obj_line(obj))
    assert (event.v, event.step, event.process) == (2, "build", None)


def test_a_v1_line_cannot_smuggle_a_v2_field() -> None:
    """A v1 line that carries the v2 field is refused as v1 would refuse it, not read as v2."""
    obj = HEARTBEAT | {"type": "cancelled", "by": "u", "evidence": {"x": 1}}
    with pytest.raises(CorruptLineError, match="evidence"):
        decode(obj_line(obj))
    assert decode(obj_line(HEARTBEAT | {"type": "cancelled", "by": "u", "v": 2, "evidence": {"x": 1}})).evidence == {
        "x": 1}


def test_started_v1_reads_with_an_unknown_pid_namespace() -> None:
    """A v1 ``started`` (before ``writer.pid_ns``) reads as v2 with ``pid_ns`` null; a v1 writer carrying it is refused."""
    writer = {"host": "h", "boot_id": "b", "pid": 1, "start_ticks": 2, "argv": [], "user": "u", "tool_version": "t"}
    obj = HEARTBEAT | {"seq": 0, "type": "started", "workflow": "w", "steps": [], "writer": writer,
                       "heartbeat_interval": 1.0}
    event = decode(obj_line(obj))
    assert (event.v, event.writer.pid_ns) == (SCHEMA_VERSIONS["started"], None)
    with pytest.raises(CorruptLineError, match="pid_ns"):
        decode(obj_line(obj | {"writer": writer | {"pid_ns": 7}}))


def test_started_v2_reads_without_an_item_count() -> None:
    """A v2 ``started`` (before ``item_count``) reads as v3 with ``item_count`` null; a v2 step carrying it is refused."""
    writer = {"host": "h", "boot_id": "b", "pid": 1, "start_ticks": 2, "pid_ns": None, "argv": [], "user": "u",
              "tool_version": "t"}
    obj = HEARTBEAT | {"v": 2, "seq": 0, "type": "started", "workflow": "w", "steps": [{"name": "f", "items": ["a"]}],
                       "writer": writer, "heartbeat_interval": 1.0}
    event = decode(obj_line(obj))
    assert (event.v, event.steps[0].items, event.steps[0].item_count) == (3, ["a"], None)
    with pytest.raises(CorruptLineError, match="item_count"):
        decode(obj_line(obj | {"steps": [{"name": "f", "items": [], "item_count": 5}]}))
