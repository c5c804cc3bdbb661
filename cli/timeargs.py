"""Time arguments of the read commands: ``--since``/``--until`` as an age (``30m``, ``2d``) or a local date/time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from runjournal.cli.errors import UserError

_AGO = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
WHEN_METAVAR = "1h|2d|DATE"


def parse_when(text: str, now: datetime, option: str = "--since") -> datetime:
    """``30m``, ``1h``, ``2d``, ``1w`` ago, or a local date/time (``2026-01-02``, ``2026-01-02T14:00``).

    A date/time with an offset (``...Z``, ``+02:00``) is taken as given. Raises a one-line
    :class:`UserError` naming ``option`` otherwise.
    """
    match = _AGO.fullmatch(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserError(
            f"invalid {option} value {text!r}: use a duration like 30m, 1h, 2d, 1w or a date like 2026-01-02"
        ) from None
    return moment.astimezone(UTC) if moment.tzinfo is None else moment
