"""Promise 6: the terminal is safe. Escape sequences (CSI, OSC 8 hyperlinks, OSC 52 clipboard
writes, window titles, 8-bit C1 controls) and bidi overrides (Trojan Source) in step output,
step and item names, and any event field never reach the terminal raw from a human-readable
output; with ``--raw`` they do (so the neutralising is what the test sees, not lost data).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runjournal.journal.events import PlannedStep
from runjournal.journal.jsonl.store import JsonlStore
from runjournal.journal.run import start_run

from .corpus import base_events, chain, run_file
from .figures import record
from .helpers import dead_identity, run_cli

pytest.importorskip("runjournal.cli.commands.history")
pytest.importorskip("runjournal.cli.commands.show")
pytest.importorskip("runjournal.cli.commands.replay")
pytest.importorskip("runjournal.cli.commands.follow")
runfiles = pytest.importorskip("runjournal.cli.engine.runfiles")
pytest.importorskip("runjournal.cli.commands.logs")

PAYLOADS = {
    "csi": "\x1b[31mRED\x1b[0m\x1b[2J",
    "osc8": "\x1b]8;;http://evil.example/\x1b\\click me\x1b]8;;\x1b\\",
    "osc52": "\x1b]52;c;ZWNobyBwd25lZA==\x07",
    "title": "\x1b]0;pwned\x07",
    "c1-csi": "\x9b31mC1",
    "bidi": "\u202eexe.txt\u202c \u2066iso\u2069 \u200f",
    "cr-overwrite": "safe\rEVIL",
    "backspace": "abc\x08\x08\x08XYZ",
}
EVIL = "".join(PAYLOADS.values())
FORBIDDEN = ("\x1b", "\x9b", "\x07", "\x08", "\r", "\u202e", "\u202c", "\u2066", "\u2069", "\u200f")
RUN_FAILED = "20260101T000000000000Z-0bad"
RUN_CANCELLED = "20260101T000000000001Z-0bad"
RUN_CORRUPT = "20260101T000000000002Z-0bad"


def _hostile_runs(store: JsonlStore) -> None:
    step, item = f"step {EVIL}", f"item {EVIL}"
    run = start_run(
        f"wf {EVIL}", steps=[PlannedStep(name=step, items=[item, "plain"])], store=store, run_id=RUN_FAILED,
        inputs={f"key {EVIL}": f"value {EVIL}"}, identity=dead_identity().model_copy(update={"argv": ["x", EVIL]}),
    )
    run.step_started(step, total=2, message=f"starting {EVIL}")
    run.item_started(step, item, done=0, total=2)
    run.item_ended(step, item, "failed", done=1, total=2, exit_code=3, message=f"item says {EVIL}")
    run.step_failed(step, exit_code=3, message=f"step says {EVIL}")
    run.fail(step=step, exit_code=3, message=f"run says {EVIL}")
    run.writer.close()
    log = runfiles.unit_log_path(store.side_files.log_dir(RUN_FAILED), step, item)
    log.parent.mkdir(mode=0o700, parents=True)
    log.write_bytes(f"output {EVIL}\n".encode())
    other = start_run(f"wf2 {EVIL}", steps=["s"], store=store, run_id=RUN_CANCELLED, identity=dead_identity())
    other.cancel(by=f"user {EVIL}", reason=f"because {EVIL}")
    other.writer.close()
    objs = base_events(RUN_CORRUPT)
    objs[2][f"field {EVIL}"] = 1  # an unknown field: its name ends up in the error message
    run_file(store.root, RUN_CORRUPT).write_bytes(b"".join(line + b"\n" for line in chain(objs)))


COMMANDS: list[tuple[str, ...]] = [
    ("history",),
    ("show", RUN_FAILED),
    ("show", RUN_CANCELLED),
    ("replay", RUN_FAILED),
    ("replay", RUN_CANCELLED),
    ("follow", RUN_FAILED),
    ("logs", RUN_FAILED),
    ("verify",),
    ("show", RUN_CORRUPT),
    ("replay", RUN_CORRUPT),
    ("reconcile",),
]


@pytest.fixture(scope="module")
def hostile_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root whose runs carry escape sequences in every text field, step output and an error."""
    store = JsonlStore(tmp_path_factory.mktemp("p6") / "root")
    _hostile_runs(store)
    return store.root


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c[:1]) + f"-{i}" for i, c in enumerate(COMMANDS)])
def test_escape_sequences_never_reach_the_terminal_raw(hostile_root: Path, command: tuple[str, ...]) -> None:
    """No ESC, C1, BEL, BS, CR or bidi control reaches stdout or stderr of a human-readable output,
    and the hostile text is still shown (visibly escaped, not dropped)."""
    result = run_cli(hostile_root, *command)
    assert "Traceback" not in result.stderr, result.describe()
    leaked = [repr(ch) for ch in FORBIDDEN if ch in result.stdout or ch in result.stderr]
    assert not leaked, f"{leaked} leaked\n{result.describe()}"
    shown = result.stdout + result.stderr
    assert "RED" in shown or "EVIL" in shown or "␛" in shown or "\\x1b" in shown, result.describe()
    CHECKED.append(command[0])


RAW_COMMANDS = [("show", RUN_FAILED), ("replay", RUN_FAILED), ("logs", RUN_FAILED), ("history",)]


@pytest.mark.parametrize("command", RAW_COMMANDS, ids=[c[0] for c in RAW_COMMANDS])
def test_raw_passes_the_bytes_through(hostile_root: Path, command: tuple[str, ...]) -> None:
    """With --raw the escape sequences are printed as they are: the neutralising is deliberate."""
    result = run_cli(hostile_root, *command, "--raw")
    assert "Traceback" not in result.stderr, result.describe()
    assert "\x1b[31mRED" in result.stdout, result.describe()
    CHECKED.append(f"{command[0]} --raw")


CHECKED: list[str] = []


def test_terminal_figures() -> None:
    """Figures: payload kinds times outputs checked, leaks 0."""
    if CHECKED:
        record(6, "escape sequences vs human-readable output", 0, payload_kinds=len(PAYLOADS),
               outputs_checked=len(CHECKED), leaks=0)
