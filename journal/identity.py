"""The identity a writer records in ``started`` and a reconciler records in ``abandoned``."""

from __future__ import annotations

import getpass
import os
import sys

from runjournal.journal import __version__
from runjournal.journal.events import CheckerIdentity, WriterIdentity
from runjournal.journal.procfacts import boot_id, host_name, own_start_ticks


def current_user() -> str:
    """The login name of this process's user, or its uid if there is none."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def writer_identity(argv: list[str] | None = None) -> WriterIdentity:
    """Describe this process as a run's writer."""
    return WriterIdentity(
        host=host_name(),
        boot_id=boot_id(),
        pid=os.getpid(),
        start_ticks=own_start_ticks(),
        argv=list(sys.argv if argv is None else argv),
        user=current_user(),
        tool_version=__version__,
    )


def checker_identity() -> CheckerIdentity:
    """Describe this process as a reconciler."""
    return CheckerIdentity(host=host_name(), pid=os.getpid(), user=current_user())
