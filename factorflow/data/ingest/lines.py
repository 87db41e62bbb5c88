"""Find physical lines of a (decompressed) ratings file again, after it was parsed.

Parsing keeps no per-row line numbers or text. The few rows rejected only after the whole
file is read (ratings outside the inferred scale) are re-located here by one streaming scan
over the bytes (numpy over 8 MiB chunks, no parsing). Line ends are ``\\n``, ``\\r\\n`` or a
lone ``\\r``, as pyarrow counts them. The same scan finds the first line that is not UTF-8.
"""

from __future__ import annotations

import codecs
import zipfile
from collections.abc import Iterator

import numpy as np

from factorflow.data.ingest.formats import open_text
from factorflow.errors import InputError

CHUNK = 8 << 20
_BOM = "\ufeff"


def normalized_chunks(source: str, chunk: int = CHUNK) -> Iterator[bytes]:
    """The decompressed bytes of ``source`` in chunks, every line end turned into ``\\n``."""
    with open_text(source) as f:
        held = b""
        while True:
            try:
                b = f.read(chunk)
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise InputError(f"{source}: cannot read or decompress ({exc})") from None
            if not b:
                break
            b = held + b
            held = b""
            if b"\r" in b:
                if b.endswith(b"\r"):  # maybe the first half of \r\n: decide with the next chunk
                    held, b = b"\r", b[:-1]
                b = b.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            yield b
        if held:
            yield b"\n"


def _lines(source: str) -> Iterator[tuple[bytes, np.ndarray, np.ndarray, int]]:
    """``(buf, starts, ends, first_number)`` per chunk: the complete lines in ``buf``."""
    number = 1
    carry = b""
    for chunk in normalized_chunks(source):
        buf = carry + chunk
        nl = np.flatnonzero(np.frombuffer(buf, np.uint8) == 10)
        if not len(nl):
            carry = buf
            continue
        starts = np.empty(len(nl), np.int64)
        starts[0] = 0
        starts[1:] = nl[:-1] + 1
        yield buf, starts, nl, number
        number += len(nl)
        carry = buf[nl[-1] + 1 :]
    if carry:  # a last line without a line end
        yield carry, np.zeros(1, np.int64), np.array([len(carry)], np.int64), number


def find_lines(source: str, keys: np.ndarray, *, skip: int, nonblank: bool) -> tuple[np.ndarray, list[str]]:
    """Line numbers and texts (without line end) of the data lines with the given ``keys``.

    Data lines are the lines after the first ``skip`` (blank lines and the header). A data
    line's key is its 1-based physical line number, or with ``nonblank`` its 0-based ordinal
    among the non-empty data lines (the rows pyarrow delivers when it skips empty lines).
    ``keys`` must be sorted; raises ``LookupError`` if one is not in the file.
    """
    want = np.asarray(keys, np.int64)
    found_lines: list[np.ndarray] = []
    texts: list[str] = []
    ordinal = 0  # nonblank: the ordinal of the next non-empty data line
    for buf, starts, ends, number in _lines(source):
        numbers = number + np.arange(len(starts), dtype=np.int64)
        data = numbers > skip
        if nonblank:
            sel = np.flatnonzero(data & (ends > starts))
            line_keys = ordinal + np.arange(len(sel), dtype=np.int64)
            ordinal += len(sel)
        else:
            sel = np.flatnonzero(data)
            line_keys = numbers[sel]
        if not len(sel):
            continue
        lo = int(np.searchsorted(want, line_keys[0], side="left"))
        hi = int(np.searchsorted(want, line_keys[-1], side="right"))
        if lo == hi:
            continue
        pos = sel[want[lo:hi] - line_keys[0]]  # keys are consecutive within a chunk
        found_lines.append(numbers[pos])
        for p in pos:
            text = buf[starts[p] : ends[p]].decode("utf-8", errors="replace")
            texts.append(text.lstrip(_BOM) if numbers[p] == 1 else text)
        if len(texts) == len(want):
            break
    lines = np.concatenate(found_lines) if found_lines else np.zeros(0, np.int64)
    if len(lines) != len(want):
        raise LookupError(f"{source}: {len(want) - len(lines)} of {len(want)} wanted lines not found")
    return lines, texts


def first_non_utf8(source: str) -> tuple[int, int] | None:
    """``(line, byte)`` of the first byte of ``source`` that is not valid UTF-8, or None."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    for chunk in normalized_chunks(source):
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as exc:  # exc.object: bytes held from the last chunk + this one
            return line + exc.object[: exc.start].count(b"\n"), exc.object[exc.start]
        line += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        return line, exc.object[exc.start]
    return None
