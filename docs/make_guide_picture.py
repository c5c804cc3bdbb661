"""Draw docs/guide-timeline.png: the timeline of the guide's killed fan-out, as `runjournal report` draws it.

    .venv/bin/python docs/make_guide_picture.py          # needs Chromium (Debian: apt-get install chromium)

The run is rebuilt with the Python API on a fixed clock (110 hosts, five at a time, about a
second each; the writer killed after 90 with five in flight), recorded abandoned by
reconciliation as `history` would, and its timeline SVG is screenshotted in headless
Chromium. `--text` prints `show --timeline` for the same run instead.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from runjournal.cli.rendering.report import svg_size, timeline_svg
from runjournal.journal.events import PlannedStep
from runjournal.journal.identity import writer_identity
from runjournal.journal.run import start_run
from runjournal.projections.reconcile import current_state
from runjournal.projections.timeline import timeline

OUT = Path(__file__).resolve().parent / "guide-timeline.png"
T0 = datetime(2026, 11, 29, 20, 32, 2, 595434, tzinfo=UTC)
HOSTS = [f"web-{n:03d}" for n in range(1, 111)]
RUN_ID = "20261129T203202595434Z-a51d"


class Clock:
    """A clock the script sets before each append."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def item_events() -> list[tuple[float, str, str]]:
    """(seconds, host, 'start' | 'end') of the fan-out: five slots, the next host starting as one frees up,
    each host taking about a second; cut off after the 90th end and the start it frees (the writer's death)."""
    slots = [0.05 + slot * 0.01 for slot in range(5)]  # when each slot is next free
    events = []
    for index, host in enumerate(HOSTS):
        slot = min(range(5), key=lambda n: slots[n])
        start = slots[slot] + 0.004
        slots[slot] = start + 0.8 + (index * 37 % 11) * 0.03
        events += [(start, host, "start"), (slots[slot], host, "end")]
    events.sort()
    ended, cut = 0, []
    for event in events:
        if ended == 90 and event[2] != "start":
            break
        cut.append(event)
        ended += event[2] == "end"
        if ended == 90 and event[2] == "start":
            break  # the runner started the next host before it was killed: five in flight
    return cut


def build(root: Path) -> None:
    """Write the run as its writer would have, then vanish (a pid that is not ours any more)."""
    clock = Clock()
    gone = writer_identity(["runjournal", "run", "fleet.toml"])
    gone = gone.model_copy(update={"start_ticks": gone.start_ticks + 1})
    run = start_run("patch-fleet", ["plan", PlannedStep(name="patch", items=HOSTS), "verify"], root=root,
                    run_id=RUN_ID, clock=clock, identity=gone, heartbeat_interval=5, durability="none")
    at = lambda seconds: T0 + timedelta(seconds=seconds)  # noqa: E731
    clock.now = at(0.01)
    run.step_started("plan")
    clock.now = at(0.03)
    run.step_succeeded("plan", exit_code=0)
    clock.now = at(0.04)
    run.step_started("patch", total=len(HOSTS))
    done, beat = 0, 5.0
    for seconds, host, kind in item_events():
        if seconds >= beat:
            clock.now = at(beat)
            run.heartbeat()
            beat += 5.0
        clock.now = at(seconds)
        if kind == "start":
            run.item_started("patch", host, done=done, total=len(HOSTS))
        else:
            done += 1
            run.item_ended("patch", host, "succeeded", done=done, total=len(HOSTS), exit_code=0)
    run.close()


def page(svg: str) -> str:
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>body{margin:0}"
            "svg text{font:11px ui-monospace,monospace}</style></head><body>" + svg + "</body></html>")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "journal"
        build(root)
        from runjournal.journal.jsonl import JsonlStore

        current = current_state(JsonlStore(root), RUN_ID)
        drawn = timeline(current, current.status, current.reason, datetime.now(UTC))
        assert drawn is not None
        if sys.argv[1:] == ["--text"]:
            from runjournal.cli.rendering.timelinetext import timeline_lines

            for line in timeline_lines(drawn, raw=False, width=100):
                print(line)
            return 0
        svg = timeline_svg(drawn)
        width, height = svg_size(drawn)
        html_file = Path(tmp) / "timeline.html"
        html_file.write_text(page(svg), encoding="utf-8")
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            print("make_guide_picture: needs Chromium (Debian: apt-get install chromium)", file=sys.stderr)
            return 1
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                        "--force-device-scale-factor=1", f"--user-data-dir={Path(tmp) / 'profile'}",
                        f"--screenshot={OUT}", f"--window-size={width},{height}", html_file.as_uri()],
                       check=True, capture_output=True, timeout=120)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
