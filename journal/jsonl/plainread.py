"""Read a run file as plain events: a verified prefix at ``orjson`` speed, the rest checked strictly.

:class:`PlainScan` iterates a run's plain events (:mod:`runjournal.journal.plain`: each
event's JSON object exactly as its model dumps it, without ``h``). It reads in two parts:

* **the fast prefix** ``[0, fast_to)``: lines a strict read already verified *and* found
  exact (:func:`~runjournal.journal.plain.is_exact`, or equal to their model's dump). Each is
  ``orjson.loads`` ed and handed out, nothing else: no hash, no model. The caller decides
  whether the prefix can still be trusted (:mod:`~runjournal.journal.jsonl.foldrecords`).
* **the strict rest**: every check of the strict reader (size cap, I-JSON, framing, hash
  chain, schema, sequence, anchors), with a fast lane for the common case: a line that is
  canonical (re-encoding gives its bytes) and exact for a scalar event type is checked
  without building a model. Anything else goes through
  :func:`~runjournal.journal.codec.decode_line`, which also words the error of a bad line.

Afterwards :attr:`PlainScan.cursor` is where the whole lines end, :attr:`PlainScan.exact_to`
how far every line is verified and exact (what the next read may take fast), and
:attr:`PlainScan.torn_tail` the fragment after the last newline, if any.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

import orjson

from runjournal.journal.anchors import AnchorCheck
from runjournal.journal.codec import MAX_LINE_BYTES, decode_line
from runjournal.journal.errors import CorruptLineError
from runjournal.journal.jsonl.reader import REREAD_ATTEMPTS
from runjournal.journal.lines import OverlongLine, RawLine, TornTail, iter_line_batches
from runjournal.journal.plain import PlainModel, heartbeat_reader, is_exact
from runjournal.journal.records import Anchor, Cursor, check_sequence
from runjournal.journal.status import TERMINAL_TYPES

_SUFFIX = 72  # ,"h":" + 64 hex + "}
_loads, _dumps, _sha256 = orjson.loads, orjson.dumps, hashlib.sha256


class PlainScan:
    """One pass over a run file's plain events (see the module docstring). Iterate it once."""

    def __init__(
        self, fd: int, path: str, run_id: str, anchors: Iterable[Anchor], *,
        start: Cursor | None = None, fast_to: Cursor | None = None, exact_to: Cursor | None = None,
        tolerant: bool = False, exact: bool = True,
    ) -> None:
        """Read from ``start`` (the beginning by default): ``[start, fast_to)`` fast, the rest strictly.

        ``exact_to`` is how far the lines before ``start`` are known to be exact (``start``
        itself by default, or ``fast_to``): the strict part extends it only from there.
        ``tolerant``: a bad line ends the pass quietly (:attr:`error` says why) instead of raising.
        ``exact=False``: for a pass that only folds, no record of exactness is kept, and a line
        checked by its model comes out as that model with only its ``type`` (the fold reads
        the model), which saves dumping it.
        """
        self.fd = fd
        self.path = path
        self.run_id = run_id
        self.start = start or Cursor()
        self.fast_to = fast_to if fast_to is not None and fast_to.offset > self.start.offset else None
        self.cursor = self.start
        self.exact_to = exact_to or self.fast_to or self.start
        """Everything before it was verified and is exact (grows while the strict part stays exact)."""
        self.torn_tail: TornTail | None = None
        self.ended = False
        self.tolerant = tolerant
        self.exact = exact
        self._exact = exact
        self.error: str | None = None
        """Why a tolerant pass stopped early (the bad line, named), or None."""
        self.failure: CorruptLineError | None = None
        """The error behind :attr:`error`."""
        self._anchor_list = tuple(anchors)
        self._anchors = AnchorCheck(self._anchor_list, path, (self.fast_to or self.start).seq)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        strict = self._strict()
        return strict if self.fast_to is None else chain(self._fast(self.fast_to), strict)

    # ---- the verified prefix ------------------------------------------------------------

    def _fast(self, until: Cursor) -> Iterator[dict[str, Any]]:
        loads, offset = _loads, self.start.offset
        for batch in iter_line_batches(self.fd, offset, end=until.offset):
            for raw in batch:  # type: ignore[union-attr]
                try:
                    obj = loads(raw)
                    del obj["h"]
                    ended = obj["type"] in TERMINAL_TYPES
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    # Verified bytes that no longer parse: changed under us since the record was checked.
                    self._failed(CorruptLineError(self.path, 0, offset, "the file changed while it was read"))
                    return
                offset += len(raw) + 1
                self.ended = self.ended or ended
                yield obj
        self.cursor = until

    def _failed(self, error: CorruptLineError) -> None:
        if not self.tolerant:
            raise error
        self.failure = error
        self.error = str(error)

    # ---- the rest, checked --------------------------------------------------------------

    def _strict(self) -> Iterator[dict[str, Any]]:
        """The checked part, read again from the last good line if a line fails differently each time.

        A reconciler may cut a torn tail and append while we read: bytes of the old fragment
        (from one ``pread``) and of the new line (from the next) then look like one corrupt
        line, which reads clean when read again; real damage fails the same way every time
        (as :class:`~runjournal.journal.jsonl.reader.JsonlRunReader` does).
        """
        if self.error is not None:
            return  # the fast prefix failed (tolerantly): nothing after it can be trusted either
        self._exact = self.exact and self.exact_to.offset == self.cursor.offset
        failure: tuple[int, str] | None = None
        for _ in range(REREAD_ATTEMPTS):
            try:
                yield from self._strict_once()
                break
            except CorruptLineError as exc:
                if failure == (exc.offset, exc.reason):
                    self._failed(exc)
                    return
                failure = (exc.offset, exc.reason)
        else:
            c = self.cursor
            self._failed(CorruptLineError(self.path, c.line, c.offset, "the file keeps changing under the reader"))
            return
        try:
            self._anchors.finish(self.cursor)
        except CorruptLineError as exc:
            self._failed(exc)

    def _strict_once(self) -> Iterator[dict[str, Any]]:
        """The hot loop of a first read, from :attr:`cursor` (state in locals; :attr:`cursor` set on the way out)."""
        cur = self.cursor
        offset, line_no, seq, prev = cur.offset, cur.line, cur.seq, cur.prev_hash.encode("ascii")
        exact = self._exact
        # Every attempt checks the anchors from where it starts (a failed one may have used one up).
        anchors = self._anchors = AnchorCheck(self._anchor_list, self.path, seq)
        run_id, terminal = self.run_id, TERMINAL_TYPES
        heartbeat = heartbeat_reader(run_id)
        try:
            for batch in iter_line_batches(self.fd, offset, line_no):
                if not isinstance(batch, list):
                    self._odd(batch)
                    break
                for raw in batch:
                    obj = _fast_lane(raw, prev, run_id, seq, heartbeat)
                    if obj is None:
                        obj, exact_line = self._checked(raw, prev, seq, line_no, offset)
                        if exact and not exact_line:
                            exact, self.exact_to = False, Cursor(offset, line_no, seq, prev.decode("ascii"))
                    end, digest = offset + len(raw) + 1, raw[-66:-2]
                    if anchors.pending:
                        anchors.check_line(seq, digest.decode("ascii"), end, line_no, offset)
                    if obj["type"] in terminal:
                        self.ended = True
                    del obj["h"]
                    offset, line_no, seq, prev = end, line_no + 1, seq + 1, digest  # past this line only now
                    yield obj
        finally:
            self.cursor = Cursor(offset, line_no, seq, prev.decode("ascii"))
            self._exact = exact
            if exact:
                self.exact_to = self.cursor

    def _odd(self, item: OverlongLine | TornTail) -> None:
        if isinstance(item, TornTail):
            self.torn_tail = item
            return
        raise CorruptLineError(self.path, item.line_no, item.offset,
                               f"line is {item.length} bytes, over the {MAX_LINE_BYTES}-byte cap")

    def _checked(self, raw: bytes, prev: bytes, seq: int, line_no: int, offset: int) -> tuple[dict[str, Any], bool]:
        """The strict reader's checks on one line (they raise, naming it); its plain object and whether it is exact."""
        event, _ = decode_line(raw, prev.decode("ascii"), path=self.path, line_no=line_no, offset=offset)
        check_sequence(event, RawLine(line_no, offset, raw), self.run_id, seq, self.path)
        if not self.exact:
            obj = PlainModel(type=event.type, h="")
            obj.model = event
            return obj, False
        obj = PlainModel(event.model_dump(mode="json"))
        obj.model = event  # the fold reads it as is (validated once)
        exact = _dumps(obj)[:-1] == raw[:-_SUFFIX]
        obj["h"] = raw[-66:-2].decode("ascii")
        return obj, exact


def _fast_lane(raw: bytes, prev: bytes, run_id: str, seq: int, heartbeat: Any) -> dict[str, Any] | None:
    """The parsed line if it is chained, canonical, in sequence and exact for a scalar type; else None (ask the model).

    A heartbeat is recognised by its bytes (:func:`~runjournal.journal.plain.heartbeat_reader`);
    another line is parsed, re-encoded and checked field by field. Never for the first
    line, which must be ``started`` (a model type).
    """
    if not seq or raw[-72:-66] != b',"h":"' or raw[-2:] != b'"}' or len(raw) >= MAX_LINE_BYTES:
        return None
    if raw[-66:-2] != _sha256(prev + raw[:-72]).hexdigest().encode("ascii"):
        return None
    if heartbeat is not None:
        obj = heartbeat(raw, seq)
        if obj is not None:
            return obj  # type: ignore[no-any-return]
    try:
        obj = _loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict or _dumps(obj) != raw or not is_exact(obj, run_id, seq):
        return None
    return obj
