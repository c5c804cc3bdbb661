"""Promise 5 (part 3): a bounded fuzz run over the line reader, and single-byte mutations.

Whatever bytes a journal holds, ``iter_raw_lines`` + ``decode_line`` + the sequence check end
in events or a :class:`~journal.errors.CorruptLineError` (never another exception, never a
hang: each example has a deadline). And any single byte changed anywhere in a completed
journal is reported by ``verify`` (the hash chain: no silent misread).
"""

from __future__ import annotations

import os
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runjournal.journal.codec import chain_hash, decode_line
from runjournal.journal.errors import CorruptLineError
from runjournal.journal.lines import OverlongLine, RawLine, TornTail, iter_raw_lines
from runjournal.journal.records import GENESIS_HASH, check_sequence
from runjournal.journal.run import start_run
from runjournal.journal.testing import DEFAULT_RUN_ID, event_streams, journal_bytes, json_values
from runjournal.journal.verify import verify_file

from .figures import record
from .helpers import dead_identity, scale

EXAMPLES = scale(300, 5000)
MUTATIONS = scale(3000, 20000)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
COUNTS = {"byte_inputs": 0, "mutated_streams": 0, "json_objects": 0}


def read_all(data: bytes, max_line: int = 4096) -> str:
    """Read ``data`` as a journal the way the reader does; return how it ended."""
    fd = os.memfd_create("fuzz")
    try:
        os.write(fd, data)
        prev, seq = GENESIS_HASH, 0
        for item in iter_raw_lines(fd, max_line=max_line):
            if isinstance(item, TornTail):
                return "torn"
            if isinstance(item, OverlongLine):
                return "overlong"
            assert isinstance(item, RawLine)
            event, prev = decode_line(item.data, prev, path="fuzz", line_no=item.line_no, offset=item.offset)
            check_sequence(event, item, DEFAULT_RUN_ID, seq, "fuzz")
            seq += 1
        return "ok"
    except CorruptLineError as exc:
        assert exc.line >= 1 and exc.offset >= 0
        return "corrupt"
    finally:
        os.close(fd)


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_read_as_events_or_a_corrupt_line(data: bytes) -> None:
    """Random bytes never raise anything but CorruptLineError from the line reader and decoder."""
    COUNTS["byte_inputs"] += 1
    read_all(data)


_MUTATION = st.tuples(
    st.sampled_from(["flip", "set", "insert", "delete", "cut"]), st.integers(0, 1 << 20), st.integers(0, 255)
)


@FUZZ
@given(event_streams(run_id=DEFAULT_RUN_ID, max_steps=3, max_items=3), st.lists(_MUTATION, max_size=4))
def test_mutated_journals_read_as_events_or_a_corrupt_line(stream: list[Any], mutations: list[Any]) -> None:
    """Valid journals with bytes flipped, set, inserted, deleted or cut never raise anything but
    CorruptLineError, and the unmutated journal reads cleanly."""
    COUNTS["mutated_streams"] += 1
    data = bytearray(journal_bytes(stream))
    assert read_all(bytes(data), max_line=1 << 20) == "ok"
    for kind, where, value in mutations:
        at = where % (len(data) + 1)
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << (value % 8)
        elif kind == "set" and at < len(data):
            data[at] = value
        elif kind == "insert":
            data[at:at] = bytes([value])
        elif kind == "delete" and at < len(data):
            del data[at]
        elif kind == "cut":
            del data[at:]
    read_all(bytes(data), max_line=1 << 20)


def _hashed(obj: object, prev: str = GENESIS_HASH) -> bytes:
    body = orjson.dumps(obj)
    body = body[:-1] if body.endswith(b"}") and len(body) > 2 else body
    return body + b',"h":"' + chain_hash(prev, body).encode() + b'"}\n'


_ENVELOPE_KEYS = st.sampled_from(
    ["v", "run_id", "seq", "ts", "type", "h", "step", "state", "writer", "steps", "reason"]
)


@FUZZ
@given(st.dictionaries(_ENVELOPE_KEYS | st.text(max_size=5), json_values(), max_size=8))
def test_arbitrary_json_objects_with_valid_hashes_are_events_or_corrupt(obj: dict[str, Any]) -> None:
    """An arbitrary JSON object framed with a valid hash passes the chain and then must be a valid
    event or a CorruptLineError, whatever its fields hold."""
    COUNTS["json_objects"] += 1
    read_all(_hashed(obj), max_line=1 << 20)


def test_every_single_byte_change_is_reported_by_verify(tmp_path: Path) -> None:
    """Thousands of random single-byte changes to a completed 50-event journal: verify reports each."""
    rng = random.Random("mutations")
    run = start_run("mutations", steps=["build", "fan"], root=tmp_path / "root", run_id=DEFAULT_RUN_ID,
                    identity=dead_identity(), durability="none")
    for i in range(48):
        if i % 5 == 4:
            run.heartbeat()
        else:
            run.item_ended("fan", f"item-{i}", "succeeded", done=i, total=48, exit_code=0, message=f"ok {i} é")
    run.succeed()
    run.writer.close()
    path = Path(run.location)
    original = path.read_bytes()
    assert not list(verify_file(path, DEFAULT_RUN_ID))
    fd = os.open(path, os.O_WRONLY)
    silent = 0
    try:
        for _ in range(MUTATIONS):
            at = rng.randrange(len(original))
            new = bytes([rng.choice([b for b in range(256) if b != original[at]])])
            os.pwrite(fd, new, at)
            silent += not list(verify_file(path, DEFAULT_RUN_ID))
            os.pwrite(fd, original[at : at + 1], at)
    finally:
        os.close(fd)
    record(5, "single-byte mutations vs verify", silent, mutations=MUTATIONS, journal_bytes=len(original),
           events=50, silent_misreads=silent)
    assert silent == 0


def test_fuzz_figures() -> None:
    """The fuzz runs above ran their examples (figures for docs/reliability.md)."""
    if any(COUNTS.values()):
        record(5, "fuzz: line reader + decoder (hypothesis)", 0, examples_per_test=EXAMPLES, unexpected_exceptions=0,
               hangs=0, **COUNTS)
