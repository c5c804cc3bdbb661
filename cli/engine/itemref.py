"""What ``{item}`` in a step's ``run`` becomes: a reference to ``$RUNJOURNAL_ITEM``, never the item's text.

The item reaches the command only through the environment variable ``RUNJOURNAL_ITEM``,
so the shell never parses it: an item like ``$(touch FILE)`` or ``a"b`` is data, whatever
the quoting around ``{item}``. The reference is quoted for where ``{item}`` stands, so the
command sees the item as one word, exactly:

=============================  ===============================  ==============================
where ``{item}`` stands         it becomes                       e.g. ``run = ...``
=============================  ===============================  ==============================
outside quotes                  ``"${RUNJOURNAL_ITEM}"``          ``ssh {item} uptime``
inside double quotes            ``${RUNJOURNAL_ITEM}``            ``echo "host {item} done"``
inside single quotes            ``'"${RUNJOURNAL_ITEM}"'``        ``echo 'host {item} done'``
inside ``$(...)`` or backticks  as outside quotes, inside them   ``echo "$(dig +short {item})"``
=============================  ===============================  ==============================

The quoting context is found by a small scanner of POSIX shell quoting (quotes,
backslashes, ``$(``/``)``, backticks, comments). Should it misjudge a context (a here-document,
say), the result can only be a differently quoted reference to the variable, never code.
"""

from __future__ import annotations

ITEM_PLACEHOLDER = "{item}"
"""The placeholder a ``run`` command may use for the item of a fan-out step."""

_BARE = '"${RUNJOURNAL_ITEM}"'
_IN_DOUBLE = "${RUNJOURNAL_ITEM}"
_IN_SINGLE = "'\"${RUNJOURNAL_ITEM}\"'"
_WORD_START = " \t\n;&|()"


def item_reference(command: str) -> str:
    """``command`` with every ``{item}`` replaced by the reference its quoting context needs."""
    if ITEM_PLACEHOLDER not in command:
        return command
    out: list[str] = []
    stack = ["code"]  # code | single | double | subst | paren | tick
    i, n = 0, len(command)
    while i < n:
        if command.startswith(ITEM_PLACEHOLDER, i):
            out.append(_reference(stack[-1]))
            i += len(ITEM_PLACEHOLDER)
            continue
        i = _step(command, i, stack, out)
    return "".join(out)


def _reference(context: str) -> str:
    if context == "single":
        return _IN_SINGLE
    return _IN_DOUBLE if context == "double" else _BARE


def _step(text: str, i: int, stack: list[str], out: list[str]) -> int:
    """Copy one token of ``text`` from ``i`` to ``out``, updating the quoting ``stack``; return the next index."""
    c, context = text[i], stack[-1]
    if context == "single":
        if c == "'":
            stack.pop()
        out.append(c)
        return i + 1
    if c == "\\":
        out.append(text[i : i + 2])
        return i + 2
    if text.startswith("$(", i):
        stack.append("subst")
        out.append("$(")
        return i + 2
    if c == "`":
        _toggle(stack, "tick")
    elif context == "double":
        if c == '"':
            stack.pop()
    elif c in "'\"":
        stack.append("single" if c == "'" else "double")
    elif c == "(" and context in ("subst", "paren"):
        stack.append("paren")
    elif c == ")" and context in ("subst", "paren"):
        stack.pop()
    elif c == "#" and (i == 0 or text[i - 1] in _WORD_START):
        return _comment(text, i, out)
    out.append(c)
    return i + 1


def _toggle(stack: list[str], context: str) -> None:
    if stack[-1] == context:
        stack.pop()
    else:
        stack.append(context)


def _comment(text: str, i: int, out: list[str]) -> int:
    """A comment runs to the end of its line; quotes in it mean nothing (a ``{item}`` there stays harmless)."""
    end = text.find("\n", i)
    end = len(text) if end < 0 else end
    out.append(text[i:end].replace(ITEM_PLACEHOLDER, _IN_DOUBLE))
    return end
