"""Liveness facts: what a reader can observe about a run's writer, with no verdict.

The verdict (alive, dead or unknown, and why) is a pure function of these facts and lives
in :mod:`projections.liveness`. Keeping the two apart means the verdict can be tested with
any facts, and the facts are recorded as evidence exactly as they were observed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runjournal.journal.events import WriterIdentity
from runjournal.journal.procfacts import ProcessInfo, boot_id, host_name, process_info
from runjournal.journal.store import Store


@dataclass(frozen=True, slots=True)
class WriterFacts:
    """What this reader saw when it looked for a run's writer.

    ``boot_id_now`` and ``process`` are only observed on the writer's own host (None
    elsewhere; ``process`` is also None when the pid does not exist). ``lock_held`` is
    whether some process held the run's writer lock (None: it could not be probed).

    ``lock_scope`` is the store's (see :class:`journal.store.Store`). For ``"server"``
    stores, ``server_now`` and ``last_received_at`` are the database server's clock now and
    when it received the run's last event, and ``lock_holder`` describes the session
    holding the run's lock (None when free).
    """

    host_now: str
    same_host: bool
    boot_id_now: str | None
    process: ProcessInfo | None
    lock_held: bool | None
    lock_scope: str = "host"
    server_now: datetime | None = None
    last_received_at: datetime | None = None
    lock_holder: dict[str, Any] | None = None


def observe_writer(
    store: Store, run_id: str, identity: WriterIdentity, *, lock_held: bool | None = None
) -> WriterFacts:
    """Look at the writer ``identity`` recorded for ``run_id`` from this process.

    Pass ``lock_held=False`` when the caller itself holds the run's lock (taking it proved
    that no one else did; probing again from this process would only find our own lock).
    """
    here = host_name()
    same_host = identity.host == here
    if getattr(store, "lock_scope", "host") == "server":
        return _observe_on_server(store, run_id, here, same_host, lock_held)
    boot_now = boot_id() if same_host else None
    process = process_info(identity.pid) if same_host and boot_now == identity.boot_id else None
    if lock_held is None:
        lock_held = probe_lock(store, run_id)
    return WriterFacts(host_now=here, same_host=same_host, boot_id_now=boot_now, process=process, lock_held=lock_held)


def probe_lock(store: Store, run_id: str) -> bool | None:
    """Whether some process holds the run's writer lock; None if the file cannot be opened."""
    try:
        return store.writer_alive(run_id)
    except OSError:
        return None


def _observe_on_server(store: Any, run_id: str, here: str, same_host: bool, lock_held: bool | None) -> WriterFacts:
    """The server's facts: its lock table and its clock are the same for every host that asks."""
    probe = store.probe(run_id)
    held = probe.lock_held if lock_held is None else lock_held
    return WriterFacts(
        host_now=here, same_host=same_host, boot_id_now=None, process=None, lock_held=held, lock_scope="server",
        server_now=probe.server_now, last_received_at=probe.last_received_at,
        lock_holder=probe.holder if held else None,
    )
