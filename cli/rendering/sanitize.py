"""Neutralise terminal control sequences in text we did not write ourselves.

Step output, item names and event fields can carry ESC sequences (CSI, OSC 8 hyperlinks,
OSC 52 clipboard writes), other C0/C1 controls and bidi overrides (Trojan Source). On
human-readable output they are shown as visible escapes instead of being interpreted.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def _visible(match: re.Match[str]) -> str:
    ch = match.group()
    if ch == "\x1b":
        return "␛"
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def sanitize(text: str, *, keep_newlines: bool = True) -> str:
    """Return ``text`` with control characters made visible (``\\n`` and ``\\t`` kept)."""
    cleaned = _UNSAFE.sub(_visible, text)
    return cleaned if keep_newlines else cleaned.replace("\n", "\\n")
