"""runjournal: an append-only, crash-safe journal for workflow runs.

The curated public API; everything else lives in the three packages below it:

* :mod:`runjournal.journal`: events, the codec, stores, the writer, liveness facts;
* :mod:`runjournal.projections`: the fold, liveness verdicts, reconciliation, read models;
* :mod:`runjournal.cli`: the ``runjournal`` command and the workflow engine.

::

    from runjournal import fold, open_store, start_run

    with start_run("deploy", steps=["build"], root=".runjournal") as run:
        run.step_started("build")
        run.step_succeeded("build", exit_code=0)
    store = open_store(".runjournal")
    print(fold(store.read(run.run_id).events()).status)   # succeeded

Names are imported on first use, so ``import runjournal`` (and the CLI, which lives
under it) does not pay for the event models until they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from runjournal.journal import __version__

if TYPE_CHECKING:
    from runjournal.journal.errors import JournalError
    from runjournal.journal.events import EVENT_ADAPTER, Event
    from runjournal.journal.memory import MemoryStore
    from runjournal.journal.readmodel import Projector
    from runjournal.journal.run import Run, start_run
    from runjournal.journal.store import Store
    from runjournal.projections.fold import fold
    from runjournal.projections.reconcile import current_state
    from runjournal.projections.state import RunState

__all__ = [
    "EVENT_ADAPTER",
    "Event",
    "JournalError",
    "MemoryStore",
    "Run",
    "RunState",
    "Store",
    "__version__",
    "current_state",
    "fold",
    "open_store",
    "start_run",
]

_LAZY: dict[str, str] = {
    "EVENT_ADAPTER": "runjournal.journal.events",
    "Event": "runjournal.journal.events",
    "JournalError": "runjournal.journal.errors",
    "MemoryStore": "runjournal.journal.memory",
    "Run": "runjournal.journal.run",
    "start_run": "runjournal.journal.run",
    "Store": "runjournal.journal.store",
    "fold": "runjournal.projections.fold",
    "current_state": "runjournal.projections.reconcile",
    "RunState": "runjournal.projections.state",
}


def open_store(target: Any = None, *, local_root: Any = None, projector: Projector | None = None) -> Store:
    """Open the store ``target`` names (:func:`runjournal.journal.stores.open_store`), with the history projector.

    A database store's writers then keep each run's summary row current with every append.
    """
    from runjournal.journal.stores import open_store as open_named
    from runjournal.projections.summary import PROJECTOR

    return open_named(target, local_root=local_root, projector=projector or PROJECTOR)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runjournal' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
