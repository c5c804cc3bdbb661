"""A corpus of malformed journals (systemd's corrupted-journal corpus, LevelDB's log tests), built on
the fly: nothing here is committed as a file, and the 100 MB lines are written into a temp dir.

Each :class:`Case` builds one root holding one run (``runs/<RUN_ID>.jsonl``) and says what a
strict reader and ``verify`` must make of it:

``read``   ``ok``: reads (oddities are fold anomalies or late events, the documented lenient
           result); ``torn``: reads, with a torn tail that is never parsed; ``error``: a strict
           read fails naming file, line and byte offset; ``refused``: the file is not opened
           at all (not a regular file, a symlink).
``verify`` the kind of the first problem ``verify`` reports (``clean`` for none).

Lines are hash-chained by :func:`chain` unless a case breaks the chain on purpose, so each case
exercises the check it is named after and not merely the hash check.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from runjournal.journal.codec import chain_hash
from runjournal.journal.events import Failed, Heartbeat, PlannedStep, Started, StepProgress, Succeeded
from runjournal.journal.records import GENESIS_HASH

from .helpers import dead_identity

RUN_ID = "20260101T000000000000Z-c0de"
OTHER_RUN_ID = "20260101T000000000000Z-0the"
HUGE = 100 * 1024 * 1024
"""The "100 MB line" of the corpus."""

Obj = dict[str, Any]
Build = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    """One malformed journal and what must be made of it."""

    name: str
    read: str
    verify: str
    build: Build
    note: str = ""

    @property
    def started(self) -> bool:
        """Whether the file holds a whole ``started`` line (so there is a writer to judge)."""
        return self.name not in NO_STARTED


NO_STARTED = {"empty-file", "torn-first-line", "only-nul-bytes"}
"""Cases whose file holds no whole line at all."""


def _ts(second: int) -> datetime:
    return datetime(2026, 1, 1, 0, 0, second, 123456, tzinfo=UTC)


def base_events(run_id: str = RUN_ID) -> list[Obj]:
    """A valid, unfinished run by a dead writer: started, step progress, heartbeats, an item in flight."""
    envelope = {"run_id": run_id}
    events = [
        Started(**envelope, seq=0, ts=_ts(0), workflow="corpus",
                steps=[PlannedStep(name="build"), PlannedStep(name="fan", items=["a", "b"])],
                writer=dead_identity(), heartbeat_interval=30.0),
        StepProgress(**envelope, seq=1, ts=_ts(1), step="build", state="started"),
        Heartbeat(**envelope, seq=2, ts=_ts(2)),
        StepProgress(**envelope, seq=3, ts=_ts(3), step="build", state="succeeded", exit_code=0,
                     message="ok é€😀"),
        StepProgress(**envelope, seq=4, ts=_ts(4), step="fan", state="started", item="a", item_state="started",
                     done=0, total=2),
        Heartbeat(**envelope, seq=5, ts=_ts(5)),
    ]
    return [e.model_dump(mode="json") for e in events]


def encode(obj: Obj, prev: str) -> tuple[bytes, str]:
    """``obj`` as a line (newline excluded) with a valid chain hash after ``prev``."""
    body = orjson.dumps(obj)[:-1]
    digest = chain_hash(prev, body)
    return body + b',"h":"' + digest.encode() + b'"}', digest


def chain(objs: list[Obj]) -> list[bytes]:
    """Lines (newlines excluded) for ``objs`` with a valid hash chain, whatever the objects say."""
    prev, lines = GENESIS_HASH, []
    for obj in objs:
        line, prev = encode(obj, prev)
        lines.append(line)
    return lines


def rehash_raw(bodies: list[bytes]) -> list[bytes]:
    """Like :func:`chain` but for raw JSON bodies (without their closing brace), e.g. with duplicate keys."""
    prev, lines = GENESIS_HASH, []
    for body in bodies:
        prev = chain_hash(prev, body)
        lines.append(body + b',"h":"' + prev.encode() + b'"}')
    return lines


def run_file(root: Path, run_id: str = RUN_ID) -> Path:
    """Where the run file goes (the runs dir is created 0700)."""
    runs = root / "runs"
    runs.mkdir(mode=0o700, parents=True, exist_ok=True)
    return runs / f"{run_id}.jsonl"


def lines_case(make: Callable[[], list[bytes]], end: bytes = b"\n", tail: bytes = b"", head: bytes = b"") -> Build:
    """A build writing ``head``, then ``make()`` with each line terminated by ``end``, then ``tail``."""

    def build(root: Path) -> None:
        run_file(root).write_bytes(head + b"".join(line + end for line in make()) + tail)

    return build


def objs_case(edit: Callable[[list[Obj]], list[Obj]], tail: bytes = b"") -> Build:
    """A build chaining the base events after ``edit`` (valid hashes, so other checks must catch it)."""
    return lines_case(lambda: chain(edit(base_events())), tail=tail)


def raw_edit_case(index: int, edit: Callable[[bytes], bytes], rehash: bool = True) -> Build:
    """A build where line ``index`` of the base run is edited as bytes (then re-chained unless ``rehash`` is off)."""

    def make() -> list[bytes]:
        lines = chain(base_events())
        if not rehash:
            lines[index] = edit(lines[index])
            return lines
        bodies = [line[: line.rindex(b',"h":"')] for line in lines]
        bodies[index] = edit(bodies[index])
        return rehash_raw(bodies)

    return lines_case(make)


def _set(index: int, **fields: Any) -> Callable[[list[Obj]], list[Obj]]:
    def edit(objs: list[Obj]) -> list[Obj]:
        objs[index].update(fields)
        return objs

    return edit


def _append(*extra: Obj) -> Callable[[list[Obj]], list[Obj]]:
    def edit(objs: list[Obj]) -> list[Obj]:
        return objs + [dict(e, seq=len(objs) + i) for i, e in enumerate(extra)]

    return edit


def _terminal(kind: str, seq: int, second: int) -> Obj:
    event = (Succeeded(run_id=RUN_ID, seq=seq, ts=_ts(second)) if kind == "succeeded" else
             Failed(run_id=RUN_ID, seq=seq, ts=_ts(second), reason="step-failed", step="fan", exit_code=2))
    return event.model_dump(mode="json")


def _heartbeat(second: int) -> Obj:
    return Heartbeat(run_id=RUN_ID, seq=0, ts=_ts(second)).model_dump(mode="json")


def _nested(depth: int) -> Build:
    """``inputs`` nested ``depth`` arrays deep (as raw bytes: no encoder goes that deep)."""
    deep = b'"inputs":{"deep":' + b"[" * depth + b'"bottom"' + b"]" * depth + b"}"
    return raw_edit_case(0, lambda b: b.replace(b'"inputs":{}', deep))


def _write_huge(root: Path, with_newline: bool) -> None:
    """Two good lines, then a 100 MB line (terminated or not), written in chunks."""
    good = b"".join(line + b"\n" for line in chain(base_events())[:2])
    block = b"x" * (8 << 20)
    with open(run_file(root), "wb") as f:
        f.write(good + b'{"v":1,"message":"')
        written = 0
        while written < HUGE:
            f.write(block)
            written += len(block)
        f.write(b'"}\n' if with_newline else b"")


def _directory(root: Path) -> None:
    run_file(root).mkdir(mode=0o700)


def _fifo(root: Path) -> None:
    os.mkfifo(run_file(root), 0o600)


def _symlink_to(target: str) -> Build:
    def build(root: Path) -> None:
        os.symlink(target, run_file(root))

    return build


def _symlink_to_other_run(root: Path) -> None:
    other = run_file(root, OTHER_RUN_ID)
    other.write_bytes(b"".join(line + b"\n" for line in chain(base_events(OTHER_RUN_ID))))
    os.symlink(other.name, run_file(root))


def _copied_run(root: Path) -> None:
    run_file(root).write_bytes(b"".join(line + b"\n" for line in chain(base_events(OTHER_RUN_ID))))


def _mid_utf8(line: bytes) -> bytes:
    cut = line.index("€".encode()) + 1
    return line[:cut]


INTERVAL = b'"heartbeat_interval":30.0'
GOOD = lambda: chain(base_events())  # noqa: E731 - a tiny factory reads best inline


CORPUS: list[Case] = [
    # Empty and torn
    Case("empty-file", "ok", "empty", lines_case(lambda: [])),
    Case("only-a-newline", "error", "corrupt", lines_case(lambda: [b""])),
    Case("torn-first-line", "torn", "torn-tail", lines_case(lambda: [], tail=GOOD()[0][:57])),
    Case("torn-tail", "torn", "torn-tail", lines_case(GOOD, tail=GOOD()[1][:40])),
    Case("torn-mid-utf8", "torn", "torn-tail", lines_case(lambda: GOOD()[:3], tail=_mid_utf8(GOOD()[3]))),
    Case("truncated-mid-utf8-then-newline", "error", "corrupt",
         lines_case(lambda: [*GOOD()[:3], _mid_utf8(GOOD()[3]), *GOOD()[4:]])),
    Case("nul-tail", "torn", "torn-tail", lines_case(GOOD, tail=b"\0" * 4096)),
    Case("nul-line", "error", "corrupt", lines_case(lambda: [*GOOD()[:2], b"\0" * 512, *GOOD()[2:]])),
    Case("nul-inside-a-string", "error", "corrupt", raw_edit_case(3, lambda b: b.replace(b"ok ", b"o\0k "))),
    Case("only-nul-bytes", "torn", "torn-tail", lines_case(lambda: [], tail=b"\0" * 8192)),
    # JSON that Python's json would accept
    Case("duplicate-keys", "error", "corrupt", raw_edit_case(2, lambda b: b + b',"seq":2')),
    Case("nan", "error", "corrupt", raw_edit_case(0, lambda b: b.replace(INTERVAL, b'"heartbeat_interval":NaN'))),
    Case("infinity", "error", "corrupt",
         raw_edit_case(0, lambda b: b.replace(INTERVAL, b'"heartbeat_interval":Infinity'))),
    Case("huge-integer", "error", "corrupt",
         raw_edit_case(3, lambda b: b.replace(b'"exit_code":0', b'"exit_code":' + b"9" * 5000))),
    Case("lone-surrogate", "error", "corrupt", raw_edit_case(3, lambda b: b.replace(b'"ok ', b'"\\ud800 '))),
    Case("invalid-utf8-byte", "error", "corrupt", raw_edit_case(3, lambda b: b.replace(b"ok ", b"o\xffk "))),
    Case("overlong-utf8", "error", "corrupt", raw_edit_case(3, lambda b: b.replace(b"ok ", b"o\xc0\xafk "))),
    Case("deep-nesting-100k", "error", "corrupt", _nested(100_000)),
    Case("deep-nesting-2k", "error", "corrupt", _nested(2_000)),
    Case("not-an-object", "error", "corrupt", lines_case(lambda: [b"[1,2,3]", *GOOD()[1:]])),
    Case("bare-string-line", "error", "corrupt", lines_case(lambda: [*GOOD()[:2], b'"hello"', *GOOD()[2:]])),
    # Size cap
    Case("line-over-cap", "error", "corrupt", raw_edit_case(3, lambda b: b.replace(b'"ok ', b'"' + b"z" * (2 << 20)))),
    Case("line-100MB", "error", "corrupt", lambda root: _write_huge(root, True), "generated on the fly"),
    Case("torn-tail-100MB", "torn", "torn-tail", lambda root: _write_huge(root, False), "generated on the fly"),
    # Framing and integrity
    Case("wrong-hash", "error", "integrity",
         raw_edit_case(2, lambda b: b[:-5] + (b"0" if b[-5:-4] != b"0" else b"1") + b[-4:], rehash=False)),
    Case("flipped-digit", "error", "integrity",
         raw_edit_case(4, lambda b: b.replace(b'"total":2', b'"total":3'), rehash=False)),
    Case("swapped-lines", "error", "integrity", lines_case(lambda: [GOOD()[0], GOOD()[2], GOOD()[1], *GOOD()[3:]])),
    Case("missing-hash", "error", "corrupt",
         lines_case(lambda: [*GOOD()[:2], orjson.dumps(base_events()[2]), *GOOD()[3:]])),
    Case("uppercase-hash", "error", "corrupt",
         raw_edit_case(1, lambda b: b[:-66] + b[-66:-2].upper() + b[-2:], rehash=False)),
    Case("crlf", "error", "corrupt", lines_case(GOOD, end=b"\r\n")),
    Case("bom", "error", "corrupt", lines_case(GOOD, head=b"\xef\xbb\xbf")),
    Case("blank-line-in-middle", "error", "corrupt", lines_case(lambda: [*GOOD()[:3], b"", *GOOD()[3:]])),
    Case("whitespace-after-line", "error", "corrupt",
         lines_case(lambda: [*GOOD()[:3], GOOD()[3] + b"  ", *GOOD()[4:]])),
    # Sequence
    Case("seq-gap", "error", "sequence", objs_case(_set(3, seq=7))),
    Case("seq-duplicate", "error", "sequence", objs_case(_set(3, seq=2))),
    Case("seq-negative", "error", "corrupt", objs_case(_set(2, seq=-1))),
    Case("wrong-run-id", "error", "sequence", objs_case(_set(2, run_id=OTHER_RUN_ID))),
    Case("copied-under-another-id", "error", "sequence", _copied_run),
    Case("first-event-not-started", "error", "sequence", objs_case(lambda objs: [dict(objs[2], seq=0), *objs[1:]])),
    # Schema
    Case("unknown-type", "error", "corrupt", objs_case(_set(2, type="exploded"))),
    Case("future-version", "error", "version", objs_case(_set(2, v=2))),
    Case("version-zero", "error", "corrupt", objs_case(_set(2, v=0))),
    Case("version-string", "error", "corrupt", objs_case(_set(2, v="1"))),
    Case("unknown-field", "error", "corrupt", objs_case(_set(2, color="red"))),
    Case("timestamp-not-utc", "error", "corrupt", objs_case(_set(2, ts="2026-01-01T00:00:02.123456+01:00"))),
    Case("negative-done", "error", "corrupt", objs_case(_set(4, done=-3))),
    Case("type-not-a-string", "error", "corrupt", objs_case(_set(2, type=["heartbeat"]))),
    # Valid chain, odd stream: the documented lenient result (fold anomalies, late events)
    Case("two-started", "ok", "clean", objs_case(_append(base_events()[0]))),
    Case("event-after-terminal", "ok", "clean", objs_case(_append(_terminal("succeeded", 0, 6), _heartbeat(7)))),
    Case("two-terminals", "ok", "clean", objs_case(_append(_terminal("succeeded", 0, 6), _terminal("failed", 0, 7)))),
    Case("unknown-fail-reason", "ok", "clean", objs_case(_append(dict(
        _terminal("failed", 0, 6), reason="meteor-strike")))),
    Case("item-of-unplanned-step", "ok", "clean", objs_case(_append(dict(base_events()[4], step="ghost", item="z")))),
    Case("time-goes-backwards", "ok", "clean", objs_case(_set(5, ts="2020-01-01T00:00:00.000000Z"))),
    # Not a regular file
    Case("directory-instead-of-file", "refused", "unreadable", _directory),
    Case("fifo-instead-of-file", "refused", "unreadable", _fifo),
    Case("symlink-to-etc-passwd", "refused", "unreadable", _symlink_to("/etc/passwd")),
    Case("symlink-to-another-run", "refused", "unreadable", _symlink_to_other_run),
    Case("dangling-symlink", "refused", "unreadable", _symlink_to("/nonexistent/run.jsonl")),
]
"""Every malformed journal, in a stable order."""


def build(case: Case, root: Path) -> Path:
    """Build ``case`` under ``root`` (created 0700); return the run file's path."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    case.build(root)
    return run_file(root)
