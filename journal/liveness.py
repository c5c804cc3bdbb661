"""Liveness facts: what a reader can observe about a run's writer, with no verdict.

The verdict (alive, dead or unknown, and why) is a pure function of these facts and lives
in :mod:`runjournal.projections.liveness`. Keeping the two apart means the verdict can be
tested with any facts, and the facts are recorded as evidence exactly as observed.

There are two kinds of facts, because there are two kinds of ownership:

* :class:`HostFacts`: the writer holds a lock only processes on its own host can probe (a
  ``flock``), so the reader also looks at the writer's process, when it is on the same host.
* :class:`ServerFacts`: the writer holds a lock on a server every host asks (a database
  session lock), and the server's clock says how long the run has been silent.

A store says which it gives (:meth:`runjournal.journal.store.Store.writer_facts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from runjournal.journal.procfacts import (
    ProcessInfo,
    boot_id,
    host_name,
    normalise_boot_id,
    pid_namespace,
    process_info,
)

if TYPE_CHECKING:
    from runjournal.journal.events import WriterIdentity


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What this reader saw of a writer that owns its run through a host-local lock.

    ``boot_id_now`` and ``process`` are only observed on the writer's own host (None
    elsewhere; ``process`` is also None when the pid does not exist). ``lock_held`` is
    whether some process held the run's writer lock (None: it could not be probed).
    """

    host_now: str
    same_host: bool
    boot_id_now: str | None
    process: ProcessInfo | None
    lock_held: bool | None
    pid_ns_now: int | None = None
    """This reader's own pid namespace: pid facts mean something only within the writer's."""

    @property
    def owner_alive(self) -> bool:
        """False: a host lock held proves nothing alone (a rebooted host, an inheriting child), the verdict decides."""
        return False


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """What a server says about a writer that owns its run through a session lock on it.

    ``server_now`` and ``last_received_at`` are the server's clock now and when it received
    the run's last event; ``lock_holder`` describes the session holding the run's lock (None
    when free). ``lock_held`` is None when the lock could not be probed.
    """

    host_now: str
    same_host: bool
    lock_held: bool | None
    server_now: datetime | None
    last_received_at: datetime | None
    lock_holder: dict[str, Any] | None = None

    @property
    def owner_alive(self) -> bool:
        """Whether a live session on the server holds the run's lock: then its writer cannot be judged dead.

        The server releases a session's lock when the session ends, however it ends, so a
        held lock is a session still there. A listing may show such a run as recorded
        without folding it (the verdict would be ``alive`` or ``unknown``, never ``dead``).
        """
        return self.lock_held is True


WriterFacts = HostFacts | ServerFacts

DEFAULT_LEASE_INTERVALS = 3.0
"""A run's lease, in heartbeat intervals: readers that cannot see the writer's process (another
host, another pid namespace, a database) presume it dead after this much silence with its lock
free, and a database writer that cannot take its lock back within it gives up its run."""


def observe_host(identity: WriterIdentity, lock_held: bool | None) -> HostFacts:
    """This host's facts about the writer ``identity`` (its process only if it runs here, this boot)."""
    here = host_name()
    same_host = identity.host == here
    boot_now = boot_id() if same_host else None
    same_boot = same_host and boot_now == normalise_boot_id(identity.boot_id)
    process = process_info(identity.pid) if same_boot else None
    return HostFacts(host_now=here, same_host=same_host, boot_id_now=boot_now, process=process, lock_held=lock_held,
                     pid_ns_now=pid_namespace("self"))
