"""docs/format.md is complete and true: its example is real codec output, and a writer built from it is accepted."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import BaseModel

from runjournal.journal.codec import MAX_LINE_BYTES, encode_line
from runjournal.journal.events import (
    EVENT_TYPES,
    AbandonReason,
    CheckerIdentity,
    FailReason,
    PlannedStep,
    QuarantinedTail,
    WriterIdentity,
)
from runjournal.journal.ids import RUN_ID_PATTERN
from runjournal.journal.jsonl.reader import JsonlRunReader
from runjournal.journal.records import GENESIS_HASH
from runjournal.journal.verify import verify_file

DOC = (Path(__file__).parent.parent / "docs" / "format.md").read_text(encoding="utf-8")
EXAMPLE_RUN = "20260301T120000000000Z-a1b2"


def example_lines() -> list[bytes]:
    """The worked example's lines, exactly as the doc shows them, with their newlines."""
    block = DOC.split("<!-- worked-example:start -->")[1].split("<!-- worked-example:end -->")[0]
    return [line.encode() + b"\n" for line in block.splitlines() if line.startswith("{")]


def section(heading: str) -> str:
    """The text of the doc from ``heading`` to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    start = DOC.index(heading + "\n")
    rest = DOC[start + len(heading):]
    ends = [m.start() for m in re.finditer(rf"^#{{1,{len(level)}}} ", rest, re.MULTILINE)]
    return rest[: ends[0]] if ends else rest


def test_the_worked_example_is_a_valid_journal(tmp_path: Path) -> None:
    """The example's four lines read back as a finished run and verify clean."""
    runs = tmp_path / "runs"
    runs.mkdir()
    path = runs / f"{EXAMPLE_RUN}.jsonl"
    path.write_bytes(b"".join(example_lines()))
    events = list(JsonlRunReader(path, EXAMPLE_RUN).events())
    assert [e.type for e in events] == ["started", "step-progress", "step-progress", "succeeded"]
    assert list(verify_file(path, EXAMPLE_RUN)) == []


def test_the_worked_example_hashes_follow_the_documented_formula() -> None:
    """Each h is sha256(previous h, or 64 zeros, then the bytes before ,"h":"), as section 4 says."""
    prev = "0" * 64
    assert prev == GENESIS_HASH
    for line in example_lines():
        body = line[:-73]
        assert line[-73:-67] == b',"h":"' and line.endswith(b'"}\n')
        digest = hashlib.sha256(prev.encode("ascii") + body).hexdigest()
        assert line[-67:-3].decode() == digest
        prev = digest
    lines = example_lines()
    assert len(lines[0]) == 544 and "first 471 bytes" in DOC


def test_the_worked_example_is_our_canonical_encoding(tmp_path: Path) -> None:
    """Decoding the example and encoding it again gives the doc's bytes: it is real writer output."""
    path = tmp_path / f"{EXAMPLE_RUN}.jsonl"
    path.write_bytes(b"".join(example_lines()))
    prev = GENESIS_HASH
    for event, line in zip(JsonlRunReader(path, EXAMPLE_RUN).events(), example_lines(), strict=True):
        encoded, prev = encode_line(event, prev)
        assert encoded == line


def field_names(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_field_of_every_event_type_is_documented(event_type: str) -> None:
    """Each type has its own section naming every one of its fields (envelope fields in section 5)."""
    text = section(f"### `{event_type}`")
    envelope = section("## 5. The envelope")
    for name in field_names(EVENT_TYPES[event_type]):
        assert f"`{name}`" in text or f"`{name}`" in envelope, f"{event_type}.{name} is not documented"


@pytest.mark.parametrize("model", [PlannedStep, WriterIdentity, CheckerIdentity, QuarantinedTail])
def test_every_nested_field_is_documented(model: type[BaseModel]) -> None:
    """The fields of the nested objects are documented too."""
    events = section("## 6. Event types")
    for name in field_names(model):
        assert f"`{name}`" in events, f"{model.__name__}.{name} is not documented"


def test_every_reason_code_and_limit_is_documented() -> None:
    """Reason codes, the run id pattern, the size cap and the genesis hash appear as the code has them."""
    codes = section("## 7. Reason codes")
    for code in [*FailReason, *AbandonReason]:
        assert f"`{code.value}`" in codes
    assert RUN_ID_PATTERN.pattern in DOC
    assert f"{MAX_LINE_BYTES:,}" in DOC
    assert GENESIS_HASH in DOC


NODE_WRITER = r"""
const fs = require("node:fs");
const { createHash } = require("node:crypto");
const [root, runId] = process.argv.slice(2);

function encodeLine(event, prevH) {
  const body = JSON.stringify(event).slice(0, -1);
  const h = createHash("sha256").update(prevH, "ascii").update(body, "utf8").digest("hex");
  return [Buffer.from(`${body},"h":"${h}"}\n`, "utf8"), h];
}
const ts = (ms) => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");

const runs = `${root}/runs`;
fs.mkdirSync(runs, { recursive: true, mode: 0o700 });
const tmp = `${runs}/.${runId}.creating-${process.pid}`;
const fd = fs.openSync(tmp, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL |
                            fs.constants.O_APPEND | fs.constants.O_NOFOLLOW, 0o600);
let prev = "0".repeat(64), seq = 0, line;
const t0 = Date.UTC(2026, 2, 1, 12);
const append = (type, fields) => {
  // key order differs from ours on purpose; optional fields are omitted
  [line, prev] = encodeLine({ type, seq, run_id: runId, v: 1, ts: ts(t0 + seq * 1000), ...fields }, prev);
  if (fs.writeSync(fd, line) !== line.length) throw new Error("short write");
  fs.fdatasyncSync(fd);
  seq += 1;
};
append("started", { workflow: "déploiement ✓", steps: [{ name: "ship", items: ["eu", "us"] }],
  writer: { host: "node-host", boot_id: "b", pid: process.pid, start_ticks: 1, argv: process.argv,
            user: "alice", tool_version: "node-writer 1.0" },
  heartbeat_interval: 30 });
fs.linkSync(tmp, `${runs}/${runId}.jsonl`);
fs.unlinkSync(tmp);
append("step-progress", { step: "ship", state: "started", done: 0, total: 2 });
append("step-progress", { step: "ship", state: "started", item: "eu", item_state: "started", done: 0, total: 2 });
append("heartbeat", {});
append("step-progress", { step: "ship", state: "started", item: "eu", item_state: "succeeded", done: 1, total: 2,
  exit_code: 0 });
append("failed", { reason: "a-code-from-the-future", step: "ship", message: "stopped at \"eu\"\n" });
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to act as a foreign writer")
def test_a_node_writer_following_the_doc_is_accepted(tmp_path: Path) -> None:
    """A JavaScript writer built from the doc alone (other key order, omitted optionals) reads and verifies."""
    script = tmp_path / "writer.js"
    script.write_text(NODE_WRITER)
    subprocess.run(["node", str(script), str(tmp_path / "root"), "node-run-1"], check=True, timeout=60)
    path = tmp_path / "root" / "runs" / "node-run-1.jsonl"
    events = list(JsonlRunReader(path, "node-run-1").events())
    assert [e.seq for e in events] == list(range(6))
    assert events[0].workflow == "déploiement ✓" and events[0].heartbeat_interval == 30.0
    assert events[-1].reason is FailReason.UNKNOWN and events[-1].message == 'stopped at "eu"\n'
    assert list(verify_file(path, "node-run-1")) == []
    assert [p.name for p in path.parent.iterdir()] == ["node-run-1.jsonl"]


def test_every_status_is_documented() -> None:
    """Section 13 lists every status a command can show, with the derived ones."""
    from typing import get_args

    from runjournal.journal.status import DisplayStatus

    text = section("## 13. What readers make of a run: statuses and order")
    for status in get_args(DisplayStatus):
        assert f"| `{status}` |" in text, status


def test_the_canonical_form_is_what_the_doc_says(tmp_path: Path) -> None:
    """heartbeat_interval is written 30.0 however it was given; a digest is sha256:<hex>; the doc says both."""
    from datetime import UTC, datetime

    from runjournal.cli.engine.workflow import file_digest
    from runjournal.journal.events import Started

    writer = WriterIdentity(host="h", boot_id="b", pid=1, start_ticks=1, argv=[], user="u", tool_version="t")
    started = Started(run_id="r-1", seq=0, ts=datetime(2026, 1, 1, tzinfo=UTC), workflow="w", steps=[],
                      writer=writer, heartbeat_interval=30)
    line, _ = encode_line(started, GENESIS_HASH)
    assert b'"heartbeat_interval":30.0,' in line and '`"heartbeat_interval":30.0`' in DOC
    digest = file_digest(b"name = 'w'\n")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest) and "`sha256:` followed by the 64 lowercase hex" in DOC
