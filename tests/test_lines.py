"""Line framing: the streaming splitter agrees with a simple model for any bytes and any chunk size."""

from __future__ import annotations

import tempfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runjournal.journal import lines
from runjournal.journal.lines import OverlongLine, RawLine, TornTail, iter_raw_lines


def model_split(data: bytes, max_line: int) -> list[object]:
    """What iter_raw_lines must yield for ``data``: the obvious, whole-buffer version."""
    out: list[object] = []
    offset = 0
    parts = data.split(b"\n")
    for number, part in enumerate(parts[:-1], 1):
        if len(part) + 1 > max_line:
            out.append(OverlongLine(number, offset, len(part) + 1))
        else:
            out.append(RawLine(number, offset, part))
        offset += len(part) + 1
    tail = parts[-1]
    if tail:
        preview = b"" if len(tail) > max_line else tail[:64]
        out.append(TornTail(len(parts), offset, len(tail), preview))
    return out


def scan(data: bytes, max_line: int, offset: int = 0, line_no: int = 1, chunk: int = 1 << 20) -> list[object]:
    """iter_raw_lines over a real file holding ``data``, reading ``chunk`` bytes at a time."""
    with tempfile.TemporaryFile() as f, pytest.MonkeyPatch.context() as patch:
        patch.setattr(lines, "CHUNK_BYTES", chunk)
        f.write(data)
        f.flush()
        return list(iter_raw_lines(f.fileno(), offset, line_no, max_line=max_line))


CHUNKS = [1, 3, 7, 1 << 20]


segments = st.lists(st.binary(max_size=12) | st.just(b"\n") | st.just(b"x" * 30), max_size=12).map(b"".join)


@given(data=segments, max_line=st.integers(1, 20), chunk=st.sampled_from(CHUNKS) | st.integers(1, 40))
def test_splitter_matches_the_model_for_any_bytes(data: bytes, max_line: int, chunk: int) -> None:
    """Whole lines, overlong lines and the torn tail come out exactly as the simple model says."""
    assert scan(data, max_line, chunk=chunk) == model_split(data, max_line)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_scanning_resumes_from_an_offset(chunk: int) -> None:
    """Starting mid-file at a line boundary yields the rest with the given numbering."""
    data = b"one\ntwo\nthree\npart"
    assert scan(data, 100, offset=4, line_no=2, chunk=chunk) == [
        RawLine(2, 4, b"two"),
        RawLine(3, 8, b"three"),
        TornTail(4, 14, 4, b"part"),
    ]


def test_line_end_offsets_point_past_the_newline() -> None:
    """``end`` is where the next line starts, for whole and overlong lines alike."""
    assert RawLine(1, 10, b"abc").end == 14
    assert OverlongLine(1, 10, 50).end == 60


def test_a_huge_tail_is_not_held_in_memory() -> None:
    """A torn tail far over the cap is reported by length, its bytes dropped while scanning."""
    data = b"ok\n" + b"y" * 100_000
    assert scan(data, 1000, chunk=4096) == [RawLine(1, 0, b"ok"), TornTail(2, 3, 100_000, b"")]


def test_an_empty_file_yields_nothing() -> None:
    """No bytes, no lines and no torn tail."""
    assert scan(b"", 100) == []
