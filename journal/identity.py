"""The identity a writer records in ``started`` and a reconciler records in ``abandoned``."""

from __future__ import annotations

import getpass
import os
import sys

from runjournal.journal import __version__
from runjournal.journal.events import CheckerIdentity, WriterIdentity
from runjournal.journal.limits import clip_argv, encodable
from runjournal.journal.procfacts import boot_id, host_name, own_pid, own_start_ticks, pid_namespace


def current_user() -> str:
    """The login name of this process's user, or its uid if there is none."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def writer_identity(argv: list[str] | None = None) -> WriterIdentity:
    """Describe this process as a run's writer: pid, start ticks and pid namespace all read
    through ``/proc/self``, so they agree even inside a pid namespace sharing the host's ``/proc``.
    A long argv is clipped (:func:`~runjournal.journal.limits.clip_argv`)."""
    return WriterIdentity(
        host=encodable(host_name()),
        boot_id=boot_id(),
        pid=own_pid(),
        start_ticks=own_start_ticks(),
        pid_ns=pid_namespace("self"),
        argv=clip_argv(list(sys.argv if argv is None else argv)),
        user=encodable(current_user()),
        tool_version=__version__,
    )


def checker_identity() -> CheckerIdentity:
    """Describe this process as a reconciler."""
    return CheckerIdentity(host=host_name(), pid=own_pid(), user=current_user())
