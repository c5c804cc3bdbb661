"""Run ids: generated time-sortable, validated before they touch a path.

A generated id is ``YYYYMMDDTHHMMSSffffffZ-xxxx``: UTC time to the microsecond, then four
random hex digits so two runs started in the same microsecond still differ. Sorting ids as
strings sorts runs by start time. Ids written by other tools are accepted if they match
:data:`RUN_ID_PATTERN`, which cannot express a path separator, a NUL or ``..``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from runjournal.journal.errors import InvalidRunIdError

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""Allowed run ids: ASCII letters, digits, ``.``, ``_``, ``-``; first an alphanumeric; at most 128."""


def new_run_id(now: datetime | None = None) -> str:
    """Return a fresh, time-sortable run id."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    import secrets  # only a new run needs it; every read command imports this module

    return moment.strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(2)


def validate_run_id(run_id: object) -> str:
    """Return ``run_id`` unchanged if it is safe to use as a file name, else raise."""
    if not isinstance(run_id, str):
        raise InvalidRunIdError(repr(run_id), "not a string")
    if RUN_ID_PATTERN.fullmatch(run_id) is None:
        raise InvalidRunIdError(run_id, _why_invalid(run_id))
    return run_id


def validate_prefix(prefix: object) -> str:
    """Validate a user-typed run id or prefix (same charset as a full id)."""
    return validate_run_id(prefix)


def _why_invalid(run_id: str) -> str:
    if not run_id:
        return "empty"
    if len(run_id) > 128:
        return f"{len(run_id)} characters, at most 128 allowed"
    if "\x00" in run_id:
        return "contains a NUL byte"
    if "/" in run_id or "\\" in run_id:
        return "contains a path separator"
    if not run_id[0].isascii() or not run_id[0].isalnum():
        return "must start with an ASCII letter or digit"
    return "only ASCII letters, digits, '.', '_' and '-' are allowed"
