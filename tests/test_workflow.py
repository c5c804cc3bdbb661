"""Workflow files: parsing, validation with file:line errors, item quoting, spec round trips."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runjournal.cli.engine.runfiles import safe_name, unit_log_path
from runjournal.cli.engine.workflow import (
    Step,
    Workflow,
    WorkflowError,
    check_name,
    file_digest,
    load_workflow,
    parse_workflow,
    workflow_from_data,
)
from runjournal.journal.events import PlannedStep
from runjournal.journal.run import DEFAULT_HEARTBEAT_INTERVAL

EXAMPLES = Path(__file__).resolve().parent.parent / "cli" / "examples"


def parse(text: str) -> Workflow:
    return parse_workflow(text.encode(), "wf.toml")


class TestValidWorkflows:
    def test_fanout_example(self) -> None:
        """The bundled fan-out example parses into its steps, items, concurrency and timeout."""
        wf = load_workflow(EXAMPLES / "fanout.toml")
        assert wf.name == "patch"
        assert [s.name for s in wf.steps] == ["plan", "patch", "verify"]
        patch = wf.steps[1]
        assert patch.foreach is not None and len(patch.foreach) == 12
        assert (patch.concurrency, patch.timeout, wf.heartbeat_interval) == (4, 30.0, 2.0)
        assert wf.file == str((EXAMPLES / "fanout.toml").resolve())
        assert wf.digest == file_digest((EXAMPLES / "fanout.toml").read_bytes())

    def test_hello_example(self) -> None:
        """The hello example is a valid two-step workflow with the default heartbeat."""
        wf = load_workflow(EXAMPLES / "hello.toml")
        assert (wf.name, len(wf.steps), wf.heartbeat_interval) == ("hello", 2, DEFAULT_HEARTBEAT_INTERVAL)

    def test_defaults(self) -> None:
        """Without the optional keys a step runs one command, one at a time, without a timeout."""
        wf = parse('name = "w"\n[[steps]]\nname = "a"\nrun = "true"\n')
        assert wf.steps == (Step("a", "true"),)
        assert wf.planned() == [PlannedStep(name="a", items=None)]

    def test_planned_items(self) -> None:
        """A fan-out step is planned with its items, in order."""
        wf = parse('name = "w"\n[[steps]]\nname = "a"\nrun = "echo {item}"\nforeach = ["b", "a"]\n')
        assert wf.planned() == [PlannedStep(name="a", items=["b", "a"])]

    def test_digest_is_sha256_of_bytes(self, tmp_path: Path) -> None:
        """The recorded digest changes when the file's bytes change."""
        path = tmp_path / "w.toml"
        path.write_text('name = "w"\n[[steps]]\nname = "a"\nrun = "true"\n')
        before = load_workflow(path).digest
        path.write_text('name = "w"\n[[steps]]\nname = "a"\nrun = "true"  # changed\n')
        assert before != load_workflow(path).digest
        assert before is not None and before.startswith("sha256:") and len(before) == 7 + 64


ITEM_CONTEXTS = {
    "bare": ("printf '<%s>' {item}", "<{}>"),
    "double-quoted": ('printf "<%s>" "x {item} y"', "<x {} y>"),
    "single-quoted": ("printf '<%s>' 'x {item} y'", "<x {} y>"),
    "command-substitution": ('printf "<%s>" "$(printf %s {item})"', "<{}>"),
    "backticks": ("printf '<%s>' \"`printf %s {item}`\"", "<{}>"),
}


class TestItemSubstitution:
    @pytest.mark.parametrize("context", sorted(ITEM_CONTEXTS))
    @pytest.mark.parametrize("item", ["plain", "two words", "it's", "$(touch pwned)", "`touch pwned`", 'a"b',
                                      "a;b", "-n", "*", "\\", "x'\"$(touch pwned)\"'y"])
    def test_item_reaches_the_command_as_data(self, item: str, context: str, tmp_path: Path) -> None:
        """{item} never executes: in every quoting context the command sees exactly the item, as data."""
        run, expected = ITEM_CONTEXTS[context]
        step = Step("s", run, foreach=(item,))
        env = {"PATH": "/usr/bin:/bin", "RUNJOURNAL_ITEM": item}
        out = subprocess.run(step.command(item), capture_output=True, text=True, cwd=tmp_path, env=env, check=True)
        assert out.stdout == expected.format(item)
        assert item not in " ".join(step.command(item))
        assert not (tmp_path / "pwned").exists()

    def test_argv_step_runs_without_shell(self) -> None:
        """An exec step's argv is used as is."""
        assert Step("s", argv=("echo", "$HOME")).command() == ["echo", "$HOME"]


BAD_WORKFLOWS = [
    ('name = "w"\n[[steps]]\nname = \n', "wf.toml:3:8: invalid TOML: Invalid value"),
    ('name = "w"\nname = "v"\n', "wf.toml:2:"),
    ('[[steps]]\nname = "a"\nrun = "true"\n', "wf.toml: workflow 'name' must be a non-empty string"),
    ('name = ""\n[[steps]]\nname = "a"\nrun = "true"\n', "wf.toml:1: workflow 'name' must be a non-empty string"),
    ('name = "w"\nnmae = "x"\n[[steps]]\nname = "a"\nrun = "true"\n', "wf.toml:2: unknown key 'nmae'"),
    ('name = "w"\n', "wf.toml: a workflow needs at least one [[steps]]"),
    ('name = "w"\nsteps = 3\n', "wf.toml: a workflow needs at least one [[steps]]"),
    ('name = "w"\n[[steps]]\nname = "a"\nrun = "true"\n\n[[steps]]\nname = "b"\n', "wf.toml:6: step 'b' needs 'run'"),
    ('name = "w"\n[[steps]]\nname = "a"\nrun = ""\n', "wf.toml:4: step 'a' needs 'run'"),
    ('name = "w"\n[[steps]]\nname = "a"\nrun = "x"\nrunn = "y"\n', "wf.toml:5: step #1: unknown key 'runn'"),
    ('name = "w"\n[[steps]]\nrun = "x"\n', "wf.toml:2: step #1 'name' must be a non-empty string"),
    ('name = "w"\n[[steps]]\nname = "a"\nrun = "x"\n[[steps]]\nname = "a"\nrun = "y"\n',
     "wf.toml:6: step name 'a' is used twice"),
    ('name = "w"\n[[steps]]\nname = "a"\nrun = "x"\nforeach = "h1"\n', "wf.toml:5: step 'a' 'foreach' must be a list"),
    ('name = "w"\n[[steps]]\nname = "a"\nrun = "x"\nforeach = ["h", 2]\n', "wf.toml:5: step 'a' 'foreach' must be"),
    ('name = "w"\n[[steps]]\nname = "a"\nrun = "x"\nforeach = ["h", "h"]\n', "wf.toml:5: step 'a' 'foreach' lists 'h' twice"),
    ('name = "w"\n[[steps]]\nname = "a"\nrun = "x"\nforeach = ["h"]\nconcurrency = 0\n',
     "wf.toml:6: step 'a' 'concurrency' must be a whole number >= 1"),
    ('name = "w"\n[[steps]]\nname = "a"\nrun = "x"\nforeach = ["h"]\nconcurrency = true\n', "'concurrency' must be"),
    ('name = "w"\n[[steps]]\nname = "a"\nrun = "x"\nconcurrency = 4\n',
     "wf.toml:5: step 'a' 'concurrency' only applies to a step with 'foreach'"),
    ('name = "w"\n[[steps]]\nname = "a"\nrun = "x"\ntimeout = -1\n', "wf.toml:5: step 'a' 'timeout' must be a number"),
    ('name = "w"\n[[steps]]\nname = "a"\nrun = "x"\ntimeout = "5"\n', "wf.toml:5: step 'a' 'timeout' must be a number"),
    ('name = "w"\n[[steps]]\nname = "a"\nrun = "x"\ntimeout = nan\n', "'timeout' must be a number"),
    ('name = "w"\nheartbeat_interval = 0\n[[steps]]\nname = "a"\nrun = "x"\n', "wf.toml:2: 'heartbeat_interval' must be"),
    ('name = "w\\u001b[2J"\n[[steps]]\nname = "a"\nrun = "x"\n', "wf.toml:1: workflow 'name' must be at most 200"),
    ('name = "w"\n[[steps]]\nname = "a"\nrun = "x\\u0000"\n', "wf.toml:4: step 'a' 'run' contains a NUL"),
    ('name = "w"\nsteps = [1]\n', "wf.toml: step #1 must be a table"),
]


class TestInvalidWorkflows:
    @pytest.mark.parametrize(("text", "message"), BAD_WORKFLOWS)
    def test_one_line_error_with_location(self, text: str, message: str) -> None:
        """Every mistake is one WorkflowError line naming the file (and the line when there is one)."""
        with pytest.raises(WorkflowError) as caught:
            parse(text)
        assert message in str(caught.value)
        assert "\n" not in str(caught.value)

    def test_not_utf8(self) -> None:
        """A file that is not UTF-8 is refused with the offending byte offset."""
        with pytest.raises(WorkflowError, match=r"wf.toml: not UTF-8 \(byte 8\)"):
            parse_workflow(b'name = "\xff"\n', "wf.toml")

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is named in the error."""
        with pytest.raises(WorkflowError, match="no such workflow file"):
            load_workflow(tmp_path / "nope.toml")

    def test_directory(self, tmp_path: Path) -> None:
        """A directory is not a workflow file."""
        with pytest.raises(WorkflowError, match="is a directory"):
            load_workflow(tmp_path)

    @pytest.mark.parametrize("name", ["", "   ", "a\nb", "x" * 201])
    def test_check_name_refuses(self, name: str) -> None:
        """A workflow name from the command line gets the same rules as one from a file."""
        with pytest.raises(WorkflowError, match="--workflow"):
            check_name(name, "--workflow")


class TestSpecRoundTrip:
    def test_to_data_and_back(self) -> None:
        """A workflow survives the trip to the supervisor unchanged, argv steps included."""
        wf = Workflow("w", (Step("a", "echo {item}", None, ("x", "y"), 2, 1.5), Step("b", argv=("ls", "-l"))),
                      3.0, "/tmp/w.toml", "sha256:00")
        assert workflow_from_data(wf.to_data()) == wf


class TestLogNames:
    @pytest.mark.parametrize("name", ["../x", "/etc/passwd", ".hidden", "a/b", "..", "\x1b[2J", "é"])
    def test_safe_name_stays_in_directory(self, name: str, tmp_path: Path) -> None:
        """A step or item name can never make a log path leave the run's log directory."""
        path = unit_log_path(tmp_path, name, name)
        assert path.resolve().is_relative_to(tmp_path.resolve())
        assert "/" not in safe_name(name) and not safe_name(name).startswith(".")

    def test_distinct_names_distinct_files(self, tmp_path: Path) -> None:
        """Names that differ only in replaced characters still get different files."""
        assert safe_name("a/b") != safe_name("a_b")
        assert unit_log_path(tmp_path, "x") != unit_log_path(tmp_path, "x.log", "i").parent
