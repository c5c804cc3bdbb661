"""Starting runjournal's own helper processes (the detached supervisor, the step watchdog).

A helper runs a module of this installation with this interpreter. It must start the same
whatever the caller's current directory holds: ``python -m`` would put that directory first
on ``sys.path``, where a project's own ``runjournal.py`` (or a ``journal/`` folder, under
the generic names runjournal once installed) would be imported instead of ours. ``-P``
(Python 3.11+) leaves it out. The environment, ``PYTHONPATH`` included, is kept: it is how
the caller's own interpreter found runjournal (a user-site or ``--target`` install), and the
helper's children (the steps) must see the user's environment unchanged.
"""

from __future__ import annotations

import sys


def module_argv(module: str, *args: str) -> list[str]:
    """The argv that runs ``module`` (a ``runjournal.*`` module with a ``__main__`` block) as a helper."""
    return [sys.executable, "-P", "-m", module, *args]
