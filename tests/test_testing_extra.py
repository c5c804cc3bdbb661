"""The shipped testing helpers say which extra they need when hypothesis is missing."""

from __future__ import annotations

import subprocess
import sys


def test_missing_hypothesis_names_the_testing_extra() -> None:
    """Without hypothesis, importing runjournal.journal.testing fails with the pip command that fixes it."""
    code = ("import sys; sys.modules['hypothesis'] = None\n"
            "try:\n    import runjournal.journal.testing\n"
            "except ModuleNotFoundError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'runjournal[testing]'" in out
