"""The fast path of reading a ratings file: line-aligned blocks parsed on a thread pool.

The main thread reads the (decompressed) file in blocks of about ``block_size`` bytes, each cut
after its last line end (``\\n``, ``\\r\\n`` or ``\\r``; a ``\\r\\n`` split across two blocks
leaves an empty line, which is ignored). The fast path parses without quotes, so every line is
one row and a block boundary never splits a row. Each block is parsed by its own pyarrow reader
(``use_threads=False``; Arrow releases the GIL) on a worker thread, validated, and its user and
item columns dictionary-encoded there. The main thread merges the blocks in file order: each
block's small dictionaries are mapped to the global provisional ids (``IdMap.encode``), so the
result (rows, their order, the ids) is the same as one serial pass. pyarrow's own streaming
reader parses one block at a time (about one core); this uses all of them.

The header and any blank lines before it are cut off before the first block, the column names
given explicitly (``spec.column_names`` or the header as detected); a header holding a quote is
left to the robust path, which parses it with quotes (as the fast path always did).

Anything the fast path cannot vouch for raises :class:`NeedRobust` (see ``reader``).
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from factorflow.data.ingest.arrow import values_of
from factorflow.data.ingest.formats import FormatSpec
from factorflow.data.ingest.ids import IdMap

_F32_MAX = float(np.finfo(np.float32).max)
_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"
MAX_WORKERS = 8


class NeedRobust(Exception):
    """The fast path met a row it cannot vouch for."""


@dataclass
class Block:
    """One parsed block: local dictionary codes of user and item, their dictionaries, values."""

    user_codes: np.ndarray
    user_dict: pa.Array
    item_codes: np.ndarray
    item_dict: pa.Array
    rating: np.ndarray  # float64
    timestamp: np.ndarray | None  # int64
    n_rows: int
    nbytes: int  # of the block's text


def workers() -> int:
    """Threads for parsing: the CPUs this process may use (at most ``MAX_WORKERS``)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, n))


def _last_line_end(data: np.ndarray) -> int:
    """Offset just after the last ``\\n`` or ``\\r`` of ``data`` (0 when there is none)."""
    pos, width = len(data), 1 << 16
    while pos > 0:
        lo = max(0, pos - width)
        seg = data[lo:pos]
        hits = np.flatnonzero((seg == 10) | (seg == 13))
        if len(hits):
            return lo + int(hits[-1]) + 1
        pos, width = lo, width * 2
    return 0


def _skip_lines(data: memoryview, n_lines: int, eof: bool) -> int | None:
    """Offset after a leading UTF-8 BOM and ``n_lines`` line ends (None: fewer in ``data``, or the
    last one a ``\r`` at its end that may be the first half of ``\r\n``, unless at ``eof``)."""
    start = len(_BOM) if bytes(data[: len(_BOM)]) == _BOM else 0
    if n_lines == 0:
        return 0  # keep the BOM: pyarrow skips it at the start of its input
    pos = start
    for _ in range(n_lines):
        m = _LINE_END.search(data, pos)
        if m is None:
            return None
        pos = m.end()
    if pos == len(data) and not eof and bytes(data[pos - 1 : pos]) == b"\r":
        return None
    return pos


def line_blocks(stream: pa.NativeFile, block_size: int, skip: int) -> Iterator[pa.Buffer]:
    """Arrow buffers of ``stream`` from after its first ``skip`` lines, each ending at a line end.

    Blocks hold about ``block_size`` bytes (more when one line is longer); the last one holds
    whatever follows the last line end. Every byte is copied once, into Arrow-owned memory.
    """
    carry: pa.Buffer | None = None
    want = block_size
    eof = False
    while not eof:
        kept = carry.size if carry is not None else 0
        buf = pa.allocate_buffer(kept + want, resizable=False)
        view = memoryview(buf)
        if carry is not None:
            view[:kept] = memoryview(carry)
        filled = kept
        while filled < len(view):
            n = stream.readinto(view[filled:])
            if not n:
                eof = True
                break
            filled += n
        data = buf.slice(0, filled)
        if skip:
            start = _skip_lines(memoryview(data), skip, eof)
            if start is None and not eof:
                carry, want = data, want * 2
                continue
            data = data.slice(start if start is not None else filled)
            skip = 0
        cut = data.size if eof else _last_line_end(np.frombuffer(data, np.uint8))
        if cut == 0 and not eof:  # no line end yet: read more into the same block
            carry, want = data, want * 2
            continue
        carry, want = data.slice(cut), block_size
        if cut:
            yield data.slice(0, cut)


class BlockParser:
    """Parse one block per ``spec`` with the fast path's options (see the module docstring)."""

    def __init__(self, spec: FormatSpec, rating_range: tuple[float, float] | None) -> None:
        names = spec.column_names or spec.header
        if not names or any('"' in c for c in names):
            raise NeedRobust
        roles = spec.roles
        types = {roles["user"]: pa.string(), roles["item"]: pa.string(), roles["rating"]: pa.float64()}
        if spec.has_timestamp:
            types[roles["timestamp"]] = pa.int64()
        types.update({c: pa.null() for c in spec.separators})
        self.names = list(names)
        self.roles = roles
        self.has_timestamp = spec.has_timestamp
        self.rating_range = rating_range
        self.parse_options = pv.ParseOptions(delimiter=spec.delimiter, quote_char=False, ignore_empty_lines=True)
        self.convert_options = pv.ConvertOptions(
            column_types=types,
            include_columns=list(types),
            null_values=[""],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )

    def __call__(self, buf: pa.Buffer) -> Block | None:
        """The block's rows; raises ``NeedRobust`` (or ``ArrowInvalid``) at the first doubtful row."""
        read_options = pv.ReadOptions(column_names=self.names, use_threads=False,
                                      block_size=max(1, min(buf.size + 1, 2**31 - 1)))
        table = pv.read_csv(pa.BufferReader(buf), read_options=read_options, parse_options=self.parse_options,
                            convert_options=self.convert_options)
        if table.num_rows == 0:
            return None
        roles = self.roles
        r = _one_chunk(table.column(roles["rating"]))
        if r.null_count:
            raise NeedRobust
        rv = values_of(r, np.float64, copy=False)
        lo, hi = rv.min(), rv.max()  # NaN fails both checks below
        if not (-_F32_MAX <= lo and hi <= _F32_MAX):  # NaN, ±inf, or beyond float32 (stored as inf)
            raise NeedRobust
        lim = self.rating_range
        if lim is not None and not (lim[0] <= lo and hi <= lim[1]):
            raise NeedRobust
        tv = None
        if self.has_timestamp:
            t = _one_chunk(table.column(roles["timestamp"]))
            if t.null_count:
                raise NeedRobust
            tv = values_of(t, np.int64, copy=False)  # views: copied into the kept columns on merge
        u_codes, u_dict = _encode(_one_chunk(table.column(roles["user"])), runs=True)
        i_codes, i_dict = _encode(_one_chunk(table.column(roles["item"])), runs=False)
        if _has_empty(u_dict) or _has_empty(i_dict):  # an empty id field
            raise NeedRobust
        return Block(u_codes, u_dict, i_codes, i_dict, rv, tv, table.num_rows, buf.size)


def _encode(col: pa.Array, runs: bool) -> tuple[np.ndarray, pa.Array]:
    """``(codes, dictionary)`` of ``col`` (dictionary in first-seen order, int32 codes).

    ``runs``: a column that usually comes in runs (the user of a file grouped by user) is
    run-length encoded first and only its runs' values hashed; the codes are then repeated.
    """
    if runs:
        ree = pc.run_end_encode(col, run_end_type=pa.int32())
        if len(ree.values) <= len(col) // 4:
            d = pc.dictionary_encode(ree.values)
            ends = values_of(ree.run_ends, np.int32, copy=False)
            lengths = np.diff(ends, prepend=0)
            return np.repeat(values_of(d.indices, np.int32, copy=False), lengths), d.dictionary
    d = pc.dictionary_encode(col)
    return values_of(d.indices, np.int32, copy=False), d.dictionary


def _one_chunk(col: pa.ChunkedArray) -> pa.Array:
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


def _has_empty(col: pa.Array) -> bool:
    return len(col) > 0 and pc.min(pc.binary_length(col)).as_py() == 0


def encode_checked(ids: IdMap, values: pa.Array) -> np.ndarray:
    """``ids.encode(values)``; a new id holding a quote (quotes are not parsed here) or a NUL byte
    raises ``NeedRobust``. Only the new ids are looked at."""
    n = ids.n
    out = ids.encode(values)
    if ids.n > n and pc.any(pc.match_substring_regex(ids.added_since(n), r'["\x00]')).as_py():
        raise NeedRobust
    return out


def read_blocks(
    stream: pa.NativeFile,
    spec: FormatSpec,
    users: IdMap,
    items: IdMap,
    rating_range: tuple[float, float] | None,
    block_size: int,
    add: Callable[[Block, np.ndarray, np.ndarray, int], None],
    on_block: Callable[[], None] | None = None,
    n_workers: int | None = None,
) -> None:
    """Parse ``stream`` block by block on a thread pool; ``add(block, u_map, i_map, nbytes)`` per block
    in file order.

    ``u_map[block.user_codes]`` are the rows' provisional user indices (``users`` grows as in one
    serial pass), likewise for items; ``nbytes`` is the block's size in bytes.
    ``on_block`` is called after each merged block (progress). Raises ``NeedRobust`` or
    ``ArrowInvalid`` at the first block with a doubtful row; ``OSError``/``EOFError`` from the stream.
    """
    parse = BlockParser(spec, rating_range)
    skip = spec.skip_lines + (1 if spec.column_names is None else 0)
    n_workers = n_workers or workers()
    pending: deque[Future[Block | None]] = deque()
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="ingest-parse") as pool:
        try:
            for buf in line_blocks(stream, block_size, skip):
                pending.append(pool.submit(parse, buf))
                while len(pending) > n_workers:
                    _merge(pending.popleft().result(), users, items, add, on_block)
            while pending:
                _merge(pending.popleft().result(), users, items, add, on_block)
        finally:
            for f in pending:
                f.cancel()


def _merge(block: Block | None, users: IdMap, items: IdMap, add: Callable[[Block, np.ndarray, np.ndarray, int], None],
           on_block: Callable[[], None] | None) -> None:
    if block is not None:
        add(block, encode_checked(users, block.user_dict), encode_checked(items, block.item_dict), block.nbytes)
    if on_block is not None:
        on_block()
