"""What a ``rerun --unfinished`` skips: the steps and items that succeeded in the earlier run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runjournal.projections.state import RunState

SKIP_PREFIX = "succeeded in run "
"""The message of a skipped step or item: this, then the run it succeeded in."""


@dataclass(frozen=True, slots=True)
class SkipPlan:
    """What a ``rerun --unfinished`` skips: step name (or step, item) -> the run it succeeded in."""

    steps: dict[str, str] = field(default_factory=dict)
    items: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        """Plain data for :meth:`from_data`."""
        return {"steps": self.steps, "items": self.items}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> SkipPlan:
        """Rebuild from :meth:`to_data`."""
        return cls(dict(data.get("steps", {})), {k: dict(v) for k, v in data.get("items", {}).items()})


def skip_plan_from(state: RunState) -> SkipPlan:
    """The steps and items that succeeded in the run ``state`` (or were skipped there for that reason)."""
    run_id = state.run_id or "?"
    steps: dict[str, str] = {}
    items: dict[str, dict[str, str]] = {}
    for step in state.steps.values():
        origin = _succeeded_in(step.state, step.message, run_id)
        if origin is not None:
            steps[step.name] = origin
        done = {i.name: o for i in step.items.values() if (o := _succeeded_in(i.state, i.message, run_id))}
        if done:
            items[step.name] = done
    return SkipPlan(steps, items)


def _succeeded_in(state: str, message: str | None, run_id: str) -> str | None:
    if state == "succeeded":
        return run_id
    if state == "skipped" and message and message.startswith(SKIP_PREFIX):
        return message[len(SKIP_PREFIX):].strip() or None
    return None
