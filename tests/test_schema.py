"""``runjournal schema`` prints a JSON Schema that every line the writer produces validates against."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from click.testing import CliRunner
from hypothesis import given

from runjournal.cli.main import cli
from runjournal.journal.codec import chain_hash, decode_line
from runjournal.journal.events import (
    EVENT_TYPES,
    SCHEMA_VERSIONS,
    Abandoned,
    Event,
    Heartbeat,
    PlannedStep,
    StepProcess,
)
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.records import GENESIS_HASH
from runjournal.journal.run import start_run
from runjournal.journal.testing import event_streams, make_checker, make_stream


@cache
def validator() -> jsonschema.protocols.Validator:
    """A validator for the schema exactly as the command prints it."""
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0, result.output
    schema = orjson.loads(result.stdout)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def write_with_the_writer(root: Path, stream: list[Event]) -> list[bytes]:
    """Write ``stream`` through the store's real writer and return the file's lines."""
    store = JsonlStore(root)
    with store.create(stream[0], durability="none") as writer:
        for event in stream[1:]:
            writer.append_event(event)
    return store.path(stream[0].run_id).read_bytes().splitlines()


def assert_valid(line: bytes) -> dict[str, Any]:
    obj = orjson.loads(line)
    validator().validate(obj)
    return obj


def test_the_schema_is_a_valid_json_schema_naming_every_event_type() -> None:
    """The output is a JSON Schema document whose union covers every event type."""
    schema = validator().schema
    assert schema["title"] == "runjournal event line"
    tags = {d["properties"]["type"]["const"] for d in schema["$defs"].values() if "type" in d.get("properties", {})}
    assert tags == set(EVENT_TYPES)


@given(event_streams(late_events=None))
def test_every_line_the_writer_produces_validates(stream: list[Event]) -> None:
    """Lines written by RunWriter for any valid run validate against the printed schema."""
    with tempfile.TemporaryDirectory() as root:
        for line in write_with_the_writer(Path(root), stream):
            assert_valid(line)


def test_lines_of_every_type_from_the_python_api_validate(journal_dir: Path) -> None:
    """A run driven through start_run, then taken over and abandoned, covers every type and validates."""
    for end in ("succeed", "fail", "cancel"):
        with start_run("wf", ["a"], root=journal_dir, durability="none") as run:
            run.step_started("a", total=1)
            run.item_ended("a", "x", "succeeded", done=1, total=1, exit_code=0)
            run.heartbeat()
            getattr(run, end)(*(["user"] if end == "cancel" else []))
    plan = [PlannedStep(name="fan", items=[f"item-{n:05d}-{'x' * 40}" for n in range(20_000)])]
    with start_run("big", plan, root=journal_dir, durability="none") as run:
        assert run.planned, "a 20k-item plan is recorded in items-planned events"
    with start_run("wf", ["a"], root=journal_dir, durability="none") as run:
        run.writer.close()
        run.ended_with = "test: writer vanished"
    with JsonlStore(journal_dir).open_writer(run.run_id, durability="none") as writer:
        writer.append(Abandoned, reason="host-rebooted", evidence={"boot_id": "x"}, checker=make_checker(),
                      last_seq=0)
    seen = {assert_valid(line)["type"] for path in (journal_dir / "runs").iterdir() for line in path.open("rb")}
    assert seen == set(EVENT_TYPES)


@pytest.mark.parametrize(
    "change",
    [
        lambda o: {k: v for k, v in o.items() if k != "h"},
        lambda o: {k: v for k, v in o.items() if k != "v"},
        lambda o: {k: v for k, v in o.items() if k != "type"},
        lambda o: {k: v for k, v in o.items() if k != "step"},
        lambda o: o | {"colour": "red"},
        lambda o: o | {"seq": -1},
        lambda o: o | {"ts": "2026-01-01 00:00:00"},
        lambda o: o | {"run_id": "../etc"},
        lambda o: o | {"type": "exploded"},
        lambda o: o | {"h": "XYZ"},
    ],
    ids=["no-h", "no-v", "no-type", "no-step", "extra-field", "negative-seq", "bad-ts", "bad-run-id",
         "unknown-type", "bad-h"],
)
def test_the_schema_rejects_lines_we_would_not_read(change: Any, journal_dir: Path) -> None:
    """The schema is not vacuous: broken lines fail validation."""
    line = write_with_the_writer(journal_dir, make_stream())[1]
    obj = change(orjson.loads(line))
    assert not validator().is_valid(obj)


def test_version_2_fields_validate(journal_dir: Path) -> None:
    """A step-progress with its process and a canceller's cancelled with evidence validate (both at v2)."""
    process = StepProcess(pid=41, pgid=41, start_ticks=9000, boot_id="6f1c2a9e-0b7d", pid_ns=4026531836)
    with start_run("wf", ["a"], root=journal_dir, durability="none") as run:
        run.step_started("a", process=process)
        run.writer.close()
        run.ended_with = "test: writer vanished"
    with JsonlStore(journal_dir).locked_run(run.run_id) as locked:
        locked.append_cancelled("alice@h", "retired", {"work": [{"step": "a", "outcome": "killed"}]})
    objs = [assert_valid(line) for line in JsonlStore(journal_dir).path(run.run_id).open("rb")]
    assert (objs[1]["v"], objs[1]["process"]["pid_ns"]) == (2, 4026531836)
    assert (objs[2]["type"], objs[2]["v"], objs[2]["evidence"]["work"][0]["outcome"]) == ("cancelled", 2, "killed")
    assert SCHEMA_VERSIONS["step-progress"] == 2 and SCHEMA_VERSIONS["cancelled"] == 2


def test_a_heartbeat_needs_only_the_envelope_and_h() -> None:
    """The schema requires exactly the envelope, the type tag and ``h`` of a heartbeat."""
    schema = validator().schema["$defs"][Heartbeat.__name__]
    assert set(schema["required"]) == {"v", "type", "run_id", "seq", "ts", "h"}


def test_optional_fields_may_be_omitted_by_other_writers() -> None:
    """A line without its optional fields is valid for the schema and reads with their defaults."""
    body = (b'{"v":1,"run_id":"r1","seq":1,"ts":"2026-01-01T00:00:00.000000Z",'
            b'"type":"step-progress","step":"a","state":"started"')
    line = body + b',"h":"' + chain_hash(GENESIS_HASH, body).encode() + b'"}'
    assert_valid(line)
    event = decode_line(line, GENESIS_HASH)[0]
    assert (event.step, event.done, event.item, event.message) == ("a", None, None, None)
