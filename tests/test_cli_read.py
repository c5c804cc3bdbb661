"""The read commands (history, show, replay, follow on finished runs) through click's CliRunner.

Journals are built with the Python API (:func:`journal.run.start_run`) on a fixed clock and
with fixed writer identities, so most text output is compared exactly. The abandoned run is
recorded with the pid of a child that has already exited, so reconcile-on-read has a dead
writer to find.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from runjournal.cli.commands import replay as cmd_replay
from runjournal.cli.main import cli
from runjournal.cli.rendering import output
from runjournal.journal.events import Heartbeat, PlannedStep, WriterIdentity
from runjournal.journal.identity import writer_identity
from runjournal.journal.run import Run, start_run

T0 = datetime(2026, 1, 2, 14, 0, tzinfo=UTC)
OK_ID = "20260102T140000000000Z-aaaa"
FAILED_ID = "20260102T150000000000Z-bbbb"
ABANDONED_ID = "20260102T160000000000Z-cccc"
CANCELLED_ID = "20260102T170000000000Z-dddd"
HOSTS = [f"host{i:03d}" for i in range(1, 11)]
FIXED_WRITER = WriterIdentity(
    host="build-host", boot_id="boot-1", pid=4242, start_ticks=1, argv=["deploy.sh", "--all"],
    user="alice", tool_version="0.1.0",
)


def ticking(start: datetime, seconds: float) -> Callable[[], datetime]:
    """A clock that advances ``seconds`` at every reading."""
    counter = itertools.count()
    return lambda: start + timedelta(seconds=seconds * next(counter))


def new_run(root: Path, run_id: str, workflow: str, steps: list[str | PlannedStep], start: datetime,
            tick: float = 1.0, identity: WriterIdentity = FIXED_WRITER) -> Run:
    """Start a run on a ticking clock."""
    return start_run(workflow, steps, root=root, run_id=run_id, clock=ticking(start, tick), identity=identity,
                     durability="none")


def dead_writer() -> WriterIdentity:
    """This host's identity, but with the pid of a process that has exited."""
    child = subprocess.Popen(["true"])
    child.wait()
    return writer_identity().model_copy(update={"pid": child.pid})


def make_succeeded(root: Path) -> None:
    """A two-step run that succeeded in 5 s."""
    with new_run(root, OK_ID, "build", ["compile", "test"], T0) as run:
        for step in ("compile", "test"):
            run.step_started(step)
            run.step_succeeded(step, exit_code=0)


def make_failed(root: Path) -> None:
    """A run whose first step failed, with a terminal escape sequence in its step message."""
    run = new_run(root, FAILED_ID, "build", ["compile", "test"], T0 + timedelta(hours=1), tick=2.5)
    run.step_started("compile")
    run.step_failed("compile", exit_code=2, message="cc: error\x1b[31m red")
    run.fail(step="compile", exit_code=2, message="step compile exited 2")
    run.close()


def make_orphan(root: Path, identity: WriterIdentity | None = None) -> None:
    """A fan-out across 10 hosts whose writer vanished at 7 of 10 with host008 in flight."""
    planned: list[str | PlannedStep] = ["prepare", PlannedStep(name="deploy", items=HOSTS), "verify"]
    run = new_run(root, ABANDONED_ID, "fanout", planned, T0 + timedelta(hours=2), 3, identity or dead_writer())
    run.step_started("prepare")
    run.step_succeeded("prepare", exit_code=0)
    run.step_started("deploy", total=10)
    for done, host in enumerate(HOSTS[:7]):
        run.item_started("deploy", host, done=done, total=10)
        run.item_ended("deploy", host, "succeeded", done=done + 1, total=10, exit_code=0)
    run.item_started("deploy", HOSTS[7], done=7, total=10)
    run.close()


def make_cancelled(root: Path) -> None:
    """A run cancelled by an operator during its first step."""
    run = new_run(root, CANCELLED_ID, "build", ["compile", "test"], T0 + timedelta(hours=3), tick=30)
    run.step_started("compile")
    run.cancel("user:alice", "no longer needed")
    run.close()


@pytest.fixture(autouse=True)
def utc_local_time() -> Iterator[None]:
    """Local time is UTC during these tests, so text timestamps are exact."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()


@pytest.fixture
def root(journal_dir: Path) -> Path:
    """A journal with one run of each outcome (the orphan not yet reconciled)."""
    make_succeeded(journal_dir)
    make_failed(journal_dir)
    make_orphan(journal_dir)
    make_cancelled(journal_dir)
    return journal_dir


def invoke(root: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``runjournal --root ROOT ARGS``."""
    return CliRunner().invoke(cli, ["--root", str(root), *args], env=env)


def lines_of(path: Path) -> int:
    """How many lines a journal file has."""
    return path.read_bytes().count(b"\n")


def run_path(root: Path, run_id: str) -> Path:
    """The journal file of ``run_id``."""
    return root / "runs" / f"{run_id}.jsonl"


def assert_user_error(result: Result, fragment: str) -> None:
    """Exit 2, one line on stderr naming the problem, nothing on stdout, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("runjournal: error: ")
    assert fragment in result.stderr
    assert "Traceback" not in result.output


# ---- history --------------------------------------------------------------------------------

HISTORY_TEXT = """\
RUN                          WORKFLOW  STATUS     STARTED              DURATION  STEPS  REASON
20260102T170000000000Z-dddd  build     cancelled  2026-01-02 17:00:00  1m00s     0/2    no longer needed
20260102T160000000000Z-cccc  fanout    abandoned  2026-01-02 16:00:00  54s       1/3    originating-process-not-alive
20260102T150000000000Z-bbbb  build     failed     2026-01-02 15:00:00  7s        1/2    step-failed
20260102T140000000000Z-aaaa  build     succeeded  2026-01-02 14:00:00  5s        2/2
"""


class TestHistory:
    def test_text_newest_first_with_orphan_reconciled(self, root: Path) -> None:
        """History lists every run newest first, recording the orphan as abandoned on the way."""
        result = invoke(root, "history")
        assert result.exit_code == 0, result.output
        assert result.stdout == HISTORY_TEXT
        assert run_path(root, ABANDONED_ID).read_bytes().splitlines()[-1].find(b'"type":"abandoned"') > 0

    def test_no_reconcile_shows_derived_verdict_and_writes_nothing(self, root: Path) -> None:
        """With --no-reconcile the orphan shows as abandoned? and its journal is unchanged."""
        before = run_path(root, ABANDONED_ID).read_bytes()
        result = invoke(root, "history", "--no-reconcile", "fanout")
        assert result.exit_code == 0
        assert result.stdout.splitlines()[1].split()[2] == "abandoned?"
        assert "originating-process-not-alive" in result.stdout
        assert run_path(root, ABANDONED_ID).read_bytes() == before

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["build"], [CANCELLED_ID, FAILED_ID, OK_ID]),
            (["--status", "failed"], [FAILED_ID]),
            (["--status", "abandoned"], [ABANDONED_ID]),
            (["--reason", "originating-process-not-alive"], [ABANDONED_ID]),
            (["--since", "2026-01-02T15:30"], [CANCELLED_ID, ABANDONED_ID]),
            (["--limit", "2"], [CANCELLED_ID, ABANDONED_ID]),
            (["build", "--status", "succeeded"], [OK_ID]),
        ],
    )
    def test_filters(self, root: Path, args: list[str], expected: list[str]) -> None:
        """Workflow, status, reason, since and limit select exactly the matching runs, newest first."""
        result = invoke(root, "history", "--jsonl", *args)
        assert result.exit_code == 0, result.output
        assert [json.loads(line)["run_id"] for line in result.stdout.splitlines()] == expected

    def test_since_relative(self, root: Path) -> None:
        """--since 1h keeps only runs started in the last hour (none of these old runs)."""
        result = invoke(root, "history", "--since", "1h", "--json")
        assert result.exit_code == 0
        assert json.loads(result.stdout) == []

    def test_json_fields(self, root: Path) -> None:
        """--json is one array of run objects with the documented fields, times in ISO 8601 UTC."""
        result = invoke(root, "history", "--json")
        runs = json.loads(result.stdout)
        assert [r["run_id"] for r in runs] == [CANCELLED_ID, ABANDONED_ID, FAILED_ID, OK_ID]
        ok = runs[3]
        assert ok == {
            "run_id": OK_ID, "workflow": "build", "status": "succeeded", "reason": None,
            "started_at": "2026-01-02T14:00:00.000000Z", "ended_at": "2026-01-02T14:00:05.000000Z",
            "duration_s": 5.0, "host": "build-host", "pid": 4242, "steps_done": 2, "steps_total": 2,
            "rerun_of": None, "path": str(run_path(root, OK_ID)), "error": None,
        }
        assert runs[1]["status"] == "abandoned"
        assert runs[1]["reason"] == "originating-process-not-alive"

    def test_jsonl_equals_json(self, root: Path) -> None:
        """--jsonl prints the same objects as --json, one per line."""
        as_array = json.loads(invoke(root, "history", "--json").stdout)
        as_lines = [json.loads(line) for line in invoke(root, "history", "--jsonl").stdout.splitlines()]
        assert as_lines == as_array

    def test_empty_journal(self, journal_dir: Path) -> None:
        """No runs: nothing on stdout, a note on stderr, exit 0; --json gives an empty array."""
        result = invoke(journal_dir, "history")
        assert (result.exit_code, result.stdout, result.stderr) == (0, "", "no runs match\n")
        assert invoke(journal_dir, "history", "--json").stdout == "[]\n"

    @pytest.mark.parametrize("since", ["yesterday", "1y", "-1h", "2026-13-01"])
    def test_bad_since(self, root: Path, since: str) -> None:
        """A bad --since value is one line on stderr and exit 2."""
        assert_user_error(invoke(root, "history", "--since", since), "--since")

    def test_damaged_run_listed_and_reported(self, root: Path) -> None:
        """A corrupt middle line shows the run as damaged, with its verified prefix and the location, exit 3."""
        path = run_path(root, FAILED_ID)
        data = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(data[0] + b'{"not": "an event"}\n' + b"".join(data[2:]))
        result = invoke(root, "history", "--no-reconcile")
        assert result.exit_code == 3
        row = next(line for line in result.stdout.splitlines() if line.startswith(FAILED_ID))
        assert row.split()[1:3] == ["build", "damaged"]
        assert f"{path}:2" in row
        assert len(result.stdout.splitlines()) == 5
        assert result.stderr.startswith(f"runjournal: warning: {path}:2 (byte ")

    def test_limit_stops_reading(self, root: Path) -> None:
        """--limit stops before older runs are read: a corrupt old run past the limit is never seen."""
        path = run_path(root, OK_ID)
        path.write_bytes(path.read_bytes().replace(b'"build"', b'"bu1ld"', 1))
        result = invoke(root, "history", "--limit", "3")
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        assert invoke(root, "history").exit_code == 3  # read without the limit, the corruption is found

    def test_running_run_is_left_alone(self, journal_dir: Path) -> None:
        """A run whose writer (this test) is alive shows as running and gets no event appended."""
        with start_run("live", ["only"], root=journal_dir, durability="none") as run:
            run.step_started("only")
            before = Path(run.location).read_bytes()
            result = invoke(journal_dir, "history", "--json")
            assert [r["status"] for r in json.loads(result.stdout)] == ["running"]
            assert Path(run.location).read_bytes() == before

    def test_colour_only_on_status_and_alignment_kept(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With colour on, only the status is coloured and the columns stay aligned."""
        monkeypatch.setattr(output, "use_color", lambda: True)
        result = CliRunner().invoke(cli, ["--root", str(root), "history"], color=True)
        assert "\x1b[32msucceeded" in result.stdout
        stripped = result.stdout.replace("\x1b[0m", "")
        for code in ("\x1b[32m", "\x1b[31m", "\x1b[35m", "\x1b[33m"):
            stripped = stripped.replace(code, "")
        assert stripped == HISTORY_TEXT


# ---- show -----------------------------------------------------------------------------------

SHOW_FAILED = """\
run           20260102T150000000000Z-bbbb
workflow      build
status        failed (step-failed)
detail        step-failed, step compile, exit 2: step compile exited 2
started       2026-01-02 15:00:00
ended         2026-01-02 15:00:07
duration      7s
writer        pid 4242 on build-host, user alice, tool 0.1.0
command       deploy.sh --all
events        4 (last seq 3)
path          {path}

STEP     STATUS   DONE/TOTAL  STARTED              DURATION  EXIT  MESSAGE
compile  failed   -           2026-01-02 15:00:02  2s        2     cc: error␛[31m red
test     pending  -           -                    -         -

completed:     compile (failed)
in flight:     -
never started: test
"""

SHOW_ORPHAN_TABLE = """\
STEP     STATUS     DONE/TOTAL  STARTED              DURATION  EXIT  MESSAGE
prepare  succeeded  -           2026-01-02 16:00:03  3s        0
deploy   started    7/10        2026-01-02 16:00:09  -         -
verify   pending    -           -                    -         -

completed:     prepare
               deploy [7]: host001, host002, host003, host004, host005, host006, host007
in flight:     deploy [1]: host008
never started: deploy [2]: host009, host010
               verify
"""


class TestShow:
    def test_failed_text_exact(self, root: Path) -> None:
        """show prints the header, the step table and the progress lists, sanitised."""
        result = invoke(root, "show", "20260102T15")
        assert result.exit_code == 0, result.output
        assert result.stdout == SHOW_FAILED.format(path=run_path(root, FAILED_ID))

    def test_raw_keeps_control_characters(self, root: Path) -> None:
        """--raw prints journal text unchanged."""
        result = invoke(root, "show", FAILED_ID, "--raw")
        assert "cc: error\x1b[31m red" in result.stdout
        assert "␛" not in result.stdout

    def test_orphan_forensics(self, root: Path) -> None:
        """An orphan is reconciled, then shown with evidence and which items completed, ran or never started."""
        result = invoke(root, "show", ABANDONED_ID)
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert "status        abandoned (originating-process-not-alive)" in lines
        assert "last seen     2026-01-02 16:00:54" in lines
        assert any(line.startswith("checked by    pid ") for line in lines)
        assert any(line.startswith("liveness      pid ") and "no longer exists" in line for line in lines)
        assert "              pid_state: gone" in lines
        assert result.stdout.endswith(SHOW_ORPHAN_TABLE)

    def test_orphan_json(self, root: Path) -> None:
        """show --json carries the steps, items, progress lists, evidence and writer identity."""
        detail = json.loads(invoke(root, "show", ABANDONED_ID, "--json").stdout)
        assert detail["status"] == detail["recorded_status"] == "abandoned"
        assert detail["evidence"]["pid_state"] == "gone"
        assert detail["checker"]["pid"] == os.getpid()
        assert detail["writer"]["host"] == detail["host"]
        deploy = detail["steps"][1]
        assert (deploy["name"], deploy["status"], deploy["done"], deploy["total"]) == ("deploy", "started", 7, 10)
        assert [i["status"] for i in deploy["items"]] == ["succeeded"] * 7 + ["started"] + ["pending"] * 2
        assert set(deploy["items"][0]) == {"name", "status", "exit_code", "started_at", "ended_at", "message"}
        assert detail["completed"][0] == {"step": "prepare", "item": None, "status": "succeeded"}
        assert detail["in_flight"] == [{"step": "deploy", "item": "host008", "status": "started"}]
        assert [(u["step"], u["item"]) for u in detail["never_started"]] == [
            ("deploy", "host009"), ("deploy", "host010"), ("verify", None)]
        assert detail["late_events"] == [] and detail["anomalies"] == []

    def test_no_reconcile_derived(self, journal_dir: Path) -> None:
        """--no-reconcile shows a dead writer's run as abandoned? with the derived reason, and writes nothing."""
        make_orphan(journal_dir)
        before = run_path(journal_dir, ABANDONED_ID).read_bytes()
        result = invoke(journal_dir, "show", ABANDONED_ID, "--no-reconcile")
        assert "status        abandoned? (originating-process-not-alive)" in result.stdout.splitlines()
        assert "note          not recorded (--no-reconcile)" in result.stdout.splitlines()
        detail = json.loads(invoke(journal_dir, "show", ABANDONED_ID, "--no-reconcile", "--json").stdout)
        assert (detail["status"], detail["recorded_status"]) == ("abandoned?", "running")
        assert detail["derived"]["liveness"] == "dead"
        assert detail["evidence"]["pid_state"] == "gone"
        assert run_path(journal_dir, ABANDONED_ID).read_bytes() == before

    def test_late_events_and_anomalies(self, journal_dir: Path) -> None:
        """Events after the terminal one are listed as late events; oddities as anomalies."""
        run = new_run(journal_dir, OK_ID, "odd", ["a"], T0)
        run.step_succeeded("a")
        run.succeed()
        run.writer.append(Heartbeat)  # a writer that came back after its run ended
        run.close()
        result = invoke(journal_dir, "show", OK_ID)
        assert "late events:   seq 3 heartbeat at 2026-01-02 14:00:03" in result.stdout.splitlines()
        assert any(line.startswith("anomalies:     seq 1 end-before-start: ") for line in result.stdout.splitlines())
        detail = json.loads(invoke(journal_dir, "show", OK_ID, "--json").stdout)
        assert detail["late_events"] == [{"seq": 3, "type": "heartbeat", "ts": "2026-01-02T14:00:03.000000Z"}]
        assert detail["anomalies"][0]["kind"] == "end-before-start"

    def test_long_item_lists_wrap_between_names(self, journal_dir: Path) -> None:
        """A fan-out of 110 items is listed in lines of at most 100 columns, each name whole and once."""
        hosts = [f"web-{i:03d}" for i in range(1, 111)]
        with new_run(journal_dir, OK_ID, "fleet", [PlannedStep(name="patch", items=hosts)], T0) as run:
            run.step_started("patch", total=110)
            for done, host in enumerate(hosts):
                run.item_ended("patch", host, "skipped", done=done + 1, total=110)
            run.step_succeeded("patch")
        lines = invoke(journal_dir, "show", OK_ID).stdout.splitlines()
        listing = lines[lines.index(next(line for line in lines if line.startswith("completed:"))):]
        listing = listing[: next(i for i, line in enumerate(listing) if line.startswith("in flight:"))]
        assert listing[0].startswith("completed:     patch (skipped) [110]: web-001, web-002,")
        assert all(len(line) <= 100 for line in listing)
        assert all(line.startswith(" " * 37) for line in listing[1:])
        names = " ".join(line[37:] for line in listing).replace(",", " ").split()
        assert names == hosts

    @pytest.mark.parametrize(
        ("ref", "fragment"),
        [("nosuchrun", "no run matches 'nosuchrun'"), ("2026", "ambiguous"), ("../x", "invalid run id")],
    )
    def test_user_errors(self, root: Path, ref: str, fragment: str) -> None:
        """Unknown run, ambiguous prefix and a hostile id are one-line errors with exit 2."""
        assert_user_error(invoke(root, "show", ref), fragment)


# ---- replay ---------------------------------------------------------------------------------

REPLAY_FAILED = """\
  SEQ  TIME                 EVENT          STATUS      DETAIL
    0  2026-01-02 15:00:00  started        running     workflow build, 2 step(s), writer pid 4242 on build-host
    1  2026-01-02 15:00:02  step-progress  running     compile started
    2  2026-01-02 15:00:05  step-progress  running     compile failed exit 2: cc: error␛[31m red
    3  2026-01-02 15:00:07  failed         failed      step-failed, step compile, exit 2: step compile exited 2

state as of seq 3 (the last event): failed (step-failed), steps 1/2
STEP     STATUS   DONE/TOTAL  STARTED              DURATION  EXIT  MESSAGE
compile  failed   -           2026-01-02 15:00:02  2s        2     cc: error␛[31m red
test     pending  -           -                    -         -

completed:     compile (failed)
in flight:     -
never started: test
"""


class TestReplay:
    def test_text_exact(self, root: Path) -> None:
        """replay prints every event with the status after it, then the final state."""
        result = invoke(root, "replay", FAILED_ID)
        assert result.exit_code == 0, result.output
        assert result.stdout == REPLAY_FAILED

    def test_until(self, root: Path) -> None:
        """--until SEQ stops there and shows the state as of then, and the current status."""
        result = invoke(root, "replay", ABANDONED_ID, "--until", "12")
        lines = result.stdout.splitlines()
        assert [line.split()[0] for line in lines[1:14]] == [str(seq) for seq in range(13)]
        assert "state as of seq 12: running, steps 1/3" in lines
        assert "completed:     prepare" in lines
        assert "               deploy [4]: host001, host002, host003, host004" in lines
        assert "in flight:     deploy [1]: host005" in lines
        assert lines[-1] == "current status: abandoned (originating-process-not-alive)"

    def test_reconciles_first(self, root: Path) -> None:
        """Without --no-reconcile the replay of an orphan ends with its abandoned event."""
        events = [json.loads(line) for line in invoke(root, "replay", ABANDONED_ID, "--jsonl").stdout.splitlines()]
        assert [e["seq"] for e in events] == list(range(20))
        assert (events[-1]["type"], events[-1]["status_after"]) == ("abandoned", "abandoned")
        assert {e["status_after"] for e in events[:-1]} == {"running"}

    def test_no_reconcile(self, journal_dir: Path) -> None:
        """With --no-reconcile nothing is appended and the footer gives the derived status."""
        make_orphan(journal_dir)
        result = invoke(journal_dir, "replay", ABANDONED_ID, "--no-reconcile")
        assert result.stdout.splitlines()[-1] == "current status: abandoned? (originating-process-not-alive)"
        assert lines_of(run_path(journal_dir, ABANDONED_ID)) == 19

    def test_json(self, root: Path) -> None:
        """--json is an array of event objects: seq, type, ts, status_after and the event itself."""
        events = json.loads(invoke(root, "replay", FAILED_ID, "--json").stdout)
        assert [(e["seq"], e["type"], e["status_after"]) for e in events] == [
            (0, "started", "running"), (1, "step-progress", "running"), (2, "step-progress", "running"),
            (3, "failed", "failed")]
        assert events[3]["ts"] == "2026-01-02T15:00:07.500000Z"
        assert events[3]["event"]["reason"] == "step-failed"
        assert events[2]["event"]["message"] == "cc: error\x1b[31m red"
        assert (events[2]["steps_done"], events[2]["steps_total"]) == (1, 2)
        jsonl = [json.loads(line) for line in invoke(root, "replay", FAILED_ID, "--jsonl").stdout.splitlines()]
        assert jsonl == events

    def test_speed_scales_original_gaps(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """--speed X waits the original gaps divided by X between events."""
        waits: list[float] = []
        monkeypatch.setattr(cmd_replay.time, "sleep", waits.append)
        result = invoke(root, "replay", FAILED_ID, "--speed", "5", "--jsonl")
        assert len(result.stdout.splitlines()) == 4
        assert waits == pytest.approx([0.5, 0.5, 0.5])

    @pytest.mark.parametrize("speed", ["0", "-1", "fast"])
    def test_bad_speed(self, root: Path, speed: str) -> None:
        """A non-positive or non-numeric --speed is a usage error (exit 2)."""
        result = invoke(root, "replay", FAILED_ID, "--speed", speed)
        assert result.exit_code == 2
        assert "--speed" in result.stderr

    def test_unknown_run(self, root: Path) -> None:
        """Replaying an unknown run is a one-line error with exit 2."""
        assert_user_error(invoke(root, "replay", "zzz"), "no run matches 'zzz'")


# ---- follow on runs that are over -------------------------------------------------------------


class TestFollowFinished:
    @pytest.mark.parametrize(
        ("run_id", "code", "last_type"),
        [(OK_ID, 0, "succeeded"), (FAILED_ID, 1, "failed"), (ABANDONED_ID, 4, "abandoned"),
         (CANCELLED_ID, 5, "cancelled")],
    )
    def test_prints_and_exits_with_status(self, root: Path, run_id: str, code: int, last_type: str) -> None:
        """follow on a finished (or dead) run prints all its events and exits with the run's status code."""
        result = invoke(root, "follow", run_id, "--jsonl")
        assert result.exit_code == code, result.output
        events = [json.loads(line) for line in result.stdout.splitlines()]
        assert [e["seq"] for e in events] == list(range(len(events)))
        assert events[-1]["type"] == last_type

    def test_text(self, root: Path) -> None:
        """follow's text lines are replay's event lines, without the summary."""
        result = invoke(root, "follow", FAILED_ID)
        assert result.stdout == REPLAY_FAILED.split("\n\n")[0] + "\n"

    def test_json_array(self, root: Path) -> None:
        """follow --json is one array document."""
        result = invoke(root, "follow", CANCELLED_ID, "--json")
        assert [e["type"] for e in json.loads(result.stdout)] == ["started", "step-progress", "cancelled"]

    def test_timeout_on_live_run(self, journal_dir: Path) -> None:
        """--timeout gives up on a run that is still running: its events so far, a note, exit 124."""
        with start_run("live", ["only"], root=journal_dir, durability="none") as run:
            run.step_started("only")
            result = invoke(journal_dir, "follow", run.run_id, "--timeout", "0.2", "--jsonl")
        assert result.exit_code == 124
        assert [json.loads(line)["seq"] for line in result.stdout.splitlines()] == [0, 1]
        assert "still running" in result.stderr
