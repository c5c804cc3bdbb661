"""A picture of a run: `show --timeline` in the terminal, and `report` as an HTML page checked in headless Chromium."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from pngread import Image, read_png
from run_helpers import gone_identity

from runjournal.cli.main import cli
from runjournal.cli.rendering.report import BAR_COLOURS, SEEN_COLOUR
from runjournal.journal.events import PlannedStep
from runjournal.journal.run import start_run

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RUN_ID = "20260301T120000000000Z-abcd"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--force-device-scale-factor=1"]


def clock(start: datetime, seconds: float) -> Callable[[], datetime]:
    counter = itertools.count()
    return lambda: start + timedelta(seconds=seconds * next(counter))


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def killed_fanout(journal_dir: Path) -> Path:
    """prepare ok (2-4 s), fan: a ok (8-10 s), b failed (12-14 s), c in flight from 16 s, d never started;
    the writer's last heartbeat at 18 s, then it is gone (recorded abandoned when read)."""
    plan = ["prepare", PlannedStep(name="fan", items=["a", "b", "c", "d"]), "verify"]
    run = start_run("deploy", plan, root=journal_dir, run_id=RUN_ID, clock=clock(T0, 2), identity=gone_identity(),
                    durability="none")
    run.step_started("prepare")
    run.step_succeeded("prepare", exit_code=0)
    run.step_started("fan", total=4)
    run.item_started("fan", "a", done=0, total=4)
    run.item_ended("fan", "a", "succeeded", done=1, total=4, exit_code=0)
    run.item_started("fan", "b", done=1, total=4)
    run.item_ended("fan", "b", "failed", done=2, total=4, exit_code=3, message="exit code 3")
    run.item_started("fan", "c", done=2, total=4)
    run.heartbeat()
    run.close()
    return journal_dir


def test_text_timeline(killed_fanout: Path) -> None:
    """Plain characters when not a terminal: bars where the items ran, in flight to the end, never started bare."""
    result = CliRunner().invoke(cli, ["--root", str(killed_fanout), "show", RUN_ID, "--timeline"], terminal_width=100)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"run {RUN_ID}  workflow deploy  abandoned (originating-process-not-alive)"
    rows = {line.split()[0]: line for line in lines if re.match(r"^ *(prepare|fan|a|b|c|d|verify) ", line)}
    assert "\x1b" not in result.stdout
    axis = next(line for line in lines if "|---" in line)
    first, last = axis.index("|"), axis.rindex("|")
    cells = {name: row[first:last + 1] for name, row in rows.items()}
    span = {name: (first + cells[name].index(ch), first + cells[name].rindex(ch)) for name, ch in
            [("a", "="), ("b", "x"), ("c", ">"), ("fan", ">")]}
    assert span["a"][1] <= span["b"][0] and span["b"][1] <= span["c"][0]
    assert span["c"][1] == span["fan"][1]  # in flight to the end of the axis
    assert rows["b"].endswith("failed 2.0s (exit 3)") and rows["c"].endswith("in flight")
    assert rows["d"].rstrip().endswith("never started") and "=" not in rows["d"]
    assert "| the writer was last seen at 2026-03-01 12:00:18" in lines
    assert axis.rstrip().endswith("18s")  # the axis ends at the last sign of life, not when it was noticed
    assert span["c"][1] == last and cells["d"].strip(" |") == ""


def test_timeline_on_a_terminal_is_coloured(killed_fanout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With colour, bars are coloured blocks; NO_COLOR turns it off (the same option as every status word)."""
    from runjournal.cli.rendering import output

    monkeypatch.setattr(output, "can_redraw", lambda stream: True)
    coloured = CliRunner().invoke(cli, ["--root", str(killed_fanout), "show", RUN_ID, "--timeline"], color=True)
    assert "\x1b[31m█" in coloured.stdout and "\x1b[36m█" in coloured.stdout
    plain = CliRunner().invoke(cli, ["--root", str(killed_fanout), "show", RUN_ID, "--timeline"], color=True,
                               env={"NO_COLOR": "1"})
    assert "█" not in plain.stdout


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def screenshot(page: Path, out: Path, size: str = "1100,1400") -> Image:
    """Render ``page`` in headless Chromium (no network, a throw-away profile) and read the screenshot."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("the report test needs Chromium (Debian: apt-get install chromium); .ci/run installs it")
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}",
                               f"--window-size={size}", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and out.exists(), proc.stderr[-2000:]
    return read_png(out)


def bands(image: Image, colours: dict[str, tuple[int, int, int]], rows: range) -> list[tuple[str, int, int, int]]:
    """Horizontal bars found in ``rows``: ``(colour name, first x, last x, first y)``, top to bottom."""
    found: list[tuple[str, int, int, int]] = []
    open_bands: dict[str, tuple[int, int, int, int]] = {}
    for y in rows:
        line = image.rows[y]
        seen = set()
        for name, rgb in colours.items():
            xs = [x for x, pixel in enumerate(line) if pixel == rgb]
            if len(xs) >= 3:
                seen.add(name)
                if name not in open_bands:
                    open_bands[name] = (xs[0], xs[-1], y, y)
        for name in list(open_bands):
            if name not in seen:
                x0, x1, y0, _ = open_bands.pop(name)
                found.append((name, x0, x1, y0))
    return sorted(found, key=lambda band: band[3])


def test_html_report_renders_in_chromium(killed_fanout: Path, tmp_path: Path) -> None:
    """The report is one self-contained page; in Chromium its SVG bars sit where the timeline says."""
    page = tmp_path / "run.html"
    result = CliRunner().invoke(cli, ["--root", str(killed_fanout), "report", RUN_ID, "-o", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert "default-src 'none'" in text and not re.search(r"(src|href)=\"(https?:|//)", text)
    assert "originating-process-not-alive" in text and "<td>c</td><td>in flight</td>" in text
    image = screenshot(page, tmp_path / "run.png")
    seen_rgb = _rgb(SEEN_COLOUR)
    line_ys = [y for y in range(image.height) if seen_rgb in image.rows[y]]
    assert line_ys, "no last-seen line in the screenshot"
    seen_x = image.rows[line_ys[len(line_ys) // 2]].index(seen_rgb)
    colours = {name: _rgb(BAR_COLOURS[name]) for name in ("succeeded", "failed", "in flight")}
    found = bands(image, colours, range(line_ys[0], line_ys[-1] + 1))
    assert [name for name, *_ in found] == ["succeeded", "in flight", "succeeded", "failed", "in flight"], found
    prepare, fan, a, b, c = found
    assert prepare[2] < fan[1] and a[2] <= b[1] and b[2] <= c[1]  # left to right in time
    assert abs(fan[2] - seen_x) <= 3 and abs(c[2] - seen_x) <= 3  # in flight up to the writer's last sign of life
    chart = c[2] - prepare[1]
    assert abs((b[2] - b[1]) - (a[2] - a[1])) <= 2 and (a[2] - a[1]) == pytest.approx(chart * 2 / 16, abs=3)  # 2 s of the 16 s from 2 s to 18 s


def test_report_to_stdout_and_errors(killed_fanout: Path) -> None:
    """`-o -` prints the page; an unknown run is the usual one-line error."""
    page = CliRunner().invoke(cli, ["--root", str(killed_fanout), "report", RUN_ID, "-o", "-"])
    assert page.stdout.startswith("<!DOCTYPE html>") and page.stdout.rstrip().endswith("</html>")
    missing = CliRunner().invoke(cli, ["--root", str(killed_fanout), "report", "nope", "-o", "-"])
    assert missing.exit_code == 2 and missing.stderr.startswith("runjournal: error: no run matches 'nope'")
