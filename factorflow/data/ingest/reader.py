"""Stream one ratings file into compact arrays, validating every row.

Two passes at most. The *fast path* (``blocks``) lets pyarrow convert rating (float64) and
timestamp (int64) itself, without quote handling (so every row is one line), parsing line-aligned
blocks on a thread pool, and accepts a block only if every row is valid. At the first problem (a
conversion error, a wrong column count, an empty field, a non-finite or out-of-range rating, a
quote or NUL byte in a new id) it gives up and the file is re-read on the *robust path*: every column as
a string, quotes honoured, serial parsing (so pyarrow reports the row numbers of malformed
rows), vectorized checks per batch, and each bad row recorded with its 1-based line number,
its text and a reason. A quoted field that spans lines is an ``InputError`` naming the line.
Per kept row only int32 user/item index, float32 rating and int64 timestamp stay in memory,
written in place into one array per column; :meth:`FileRows.kept_line_keys` can still tell the
line of any kept row afterwards.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from factorflow.data.ingest.blocks import Block, NeedRobust, read_blocks, workers
from factorflow.data.ingest.formats import ArrowInput, FormatSpec, arrow_input, not_utf8_error
from factorflow.data.ingest.ids import IdMap
from factorflow.data.ingest.lines import first_non_utf8
from factorflow.errors import InputError
from factorflow.progress import Progress, report

BLOCK_SIZE = 16 << 20
MIN_BLOCK_SIZE = 1 << 20
_HANDLER_RELEASE_TIMEOUT = 10.0  # seconds; normally immediate, or the time of one block's read
_log = logging.getLogger(__name__)
REASONS = (
    "",
    "wrong column count",
    "missing field",
    "non-numeric rating",
    "non-finite rating",
    "unparsable timestamp",
    "rating out of range",
    "NUL byte in an id",
    "rating outside the inferred scale",
)
_WRONG_COUNT, _MISSING, _NON_NUMERIC, _NON_FINITE, _BAD_TS, _OUT_OF_RANGE, _NUL, OUTSIDE_SCALE = range(1, 9)
_F32_MAX = float(np.finfo(np.float32).max)
_FLOAT_RE = r"^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_NONFINITE_RE = r"^[+-]?(nan|inf|infinity)$"
_INT_RE = r"^-?[0-9]{1,18}$"


@dataclass
class Rejects:
    """Rejected rows of one source: 1-based physical line, raw text, reason code."""

    lines: list[np.ndarray] = field(default_factory=list)
    raws: list[pa.Array] = field(default_factory=list)
    codes: list[np.ndarray] = field(default_factory=list)
    count: int = 0
    scale_label: str = ""  # "1..5": completes the reason "rating outside the inferred scale"

    def reason(self, code: int) -> str:
        """The reason text of ``code``."""
        if code == OUTSIDE_SCALE and self.scale_label:
            return f"{REASONS[code]} {self.scale_label}"
        return REASONS[code]

    def add(self, lines: np.ndarray, raws: pa.Array, codes: np.ndarray) -> None:
        if len(lines):
            self.lines.append(np.asarray(lines, np.int64))
            self.raws.append(raws.cast(pa.string()))
            self.codes.append(np.asarray(codes, np.int8))
            self.count += len(lines)

    def table(self, source: str) -> pa.Table:
        """Sorted by line: ``source, line, raw, reason``."""
        if not self.count:  # (built without pa.array, which imports pandas: see ``arrow``)
            names = ["source", "line", "raw", "reason"]
            types = [pa.string(), pa.int64(), pa.string(), pa.string()]
            return pa.Table.from_arrays([pa.nulls(0, t) for t in types], names=names)
        lines = np.concatenate(self.lines)
        raws = pa.concat_arrays(self.raws)
        codes = np.concatenate(self.codes)
        order = np.argsort(lines, kind="stable")
        reasons = np.array([self.reason(c) for c in range(len(REASONS))], dtype=object)[codes[order]]
        return pa.table(
            {
                "source": pa.array([source] * len(order), pa.string()),
                "line": pa.array(lines[order], pa.int64()),
                "raw": raws.take(pa.array(order, pa.int64())),
                "reason": pa.array(reasons.tolist(), pa.string()),
            }
        )

    def first(self, k: int = 5) -> list[tuple[int, str]]:
        """The first ``k`` bad lines as ``(line, reason)``."""
        if not self.count:
            return []
        lines = np.concatenate(self.lines)
        codes = np.concatenate(self.codes)
        order = np.argsort(lines, kind="stable")[:k]
        return [(int(lines[j]), self.reason(int(codes[j]))) for j in order]

    def by_reason(self) -> dict[str, int]:
        """Number of rejected rows per reason."""
        if not self.count:
            return {}
        codes = np.bincount(np.concatenate(self.codes), minlength=len(REASONS))
        return {self.reason(c): int(n) for c, n in enumerate(codes) if n}


@dataclass
class FileRows:
    """What one source yielded: valid rows in per-batch chunks (provisional id indices) and rejects.

    Chunks are assembled one column at a time by :meth:`column`, which frees each chunk as it
    is copied, so assembling never holds a column twice.
    """

    source: str
    chunks: dict[str, list[np.ndarray]]
    n_valid: int
    rows_read: int
    rejects: Rejects
    path: str  # "fast" or "robust"
    first_line: int = 1  # physical line of the first data row (2 below a header)
    skipped: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # robust: delivered rows not kept
    invalid: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # robust: malformed rows' lines

    def kept_line_keys(self, k: np.ndarray) -> tuple[np.ndarray, bool]:
        """``(keys, nonblank)`` locating kept rows ``k`` (sorted ordinals) for ``lines.find_lines``.

        Fast path: every non-empty data line was delivered and kept, so the key is the ordinal
        among non-empty data lines. Robust path: the physical line, from the delivered rows that
        were not kept (rejects, blank lines) and the malformed lines pyarrow skipped.
        """
        k = np.asarray(k, np.int64)
        if self.path == "fast":
            return k, True
        g = self.skipped - np.arange(len(self.skipped))
        delivered = k + np.searchsorted(g, k, side="right")
        return _lines_of(delivered, self.first_line, self.invalid), False

    def drop_kept(self, k: np.ndarray) -> None:
        """Remove kept rows ``k`` (sorted ordinals over all chunks) from every column."""
        k = np.asarray(k, np.int64)
        if not len(k):
            return
        sizes = np.array([len(c) for c in self.chunks["rating"]], np.int64)
        ends = np.cumsum(sizes)
        owner = np.searchsorted(ends, k, side="right")
        for c in np.unique(owner):
            local = k[owner == c] - (ends[c] - sizes[c])
            for name in self.chunks:
                self.chunks[name][c] = np.delete(self.chunks[name][c], local)
        self.n_valid -= len(k)

    def pair_keys(self, remap_u: np.ndarray, remap_i: np.ndarray, n_items: int) -> np.ndarray:
        """``remap_u[user] * n_items + remap_i[item]`` (int64) of every kept row; consumes both columns."""
        out = np.empty(self.n_valid, np.int64)
        remap_u, remap_i = remap_u.astype(np.int64), remap_i.astype(np.int64)  # small: one entry per id
        step = min(_STEP, self.n_valid)
        tmp, idx = np.empty(step, np.int64), np.empty(step, np.intp)  # reused: no whole-column temporary
        users, items = self.chunks["user"], self.chunks["item"]
        pos = 0
        while users:
            u, i = users.pop(0), items.pop(0)
            for a in range(0, len(u), _STEP):
                m = min(_STEP, len(u) - a)
                part = out[pos + a : pos + a + m]
                np.copyto(idx[:m], u[a : a + m])  # (take would convert int32 indices into a fresh array)
                np.take(remap_u, idx[:m], out=part, mode="clip")  # ids are in range: no bounds-checking copy
                part *= max(n_items, 1)
                np.copyto(idx[:m], i[a : a + m])
                np.take(remap_i, idx[:m], out=tmp[:m], mode="clip")
                part += tmp[:m]
            pos += len(u)
        assert pos == self.n_valid and not items
        return out

    def column(self, name: str, mapping: np.ndarray | None = None) -> np.ndarray:
        """Concatenate (and consume) column ``name``: "user", "item", "rating" or "timestamp".

        With ``mapping``, return ``mapping[values]`` (provisional → final id index).
        """
        parts = self.chunks[name]
        if mapping is None and len(parts) == 1:  # one chunk (the usual case): itself, no copy
            return parts.pop()
        dtype = (mapping.dtype if mapping is not None else parts[0].dtype) if parts else _DTYPES[name]
        out = np.empty(self.n_valid, dtype)
        pos = 0
        while parts:
            part = parts.pop(0)
            n = len(part)
            if mapping is not None:
                np.take(mapping, part, out=out[pos : pos + n], mode="clip")  # in range: no bounds-checking copy
            else:
                out[pos : pos + n] = part
            pos += n
            del part
        assert pos == self.n_valid
        return out


_STEP = 1 << 20  # rows per step of a whole-column computation (bounded scratch memory)
_DTYPES = {"user": np.int32, "item": np.int32, "rating": np.float32, "timestamp": np.int64}


class _Acc:
    """The kept rows' four columns, written in place into large segments (one per column).

    With a good capacity estimate (the fast path makes one from its first block and the file's
    size) there is one segment per column, filled once and never copied: no per-block arrays to
    concatenate later, and no fresh memory (a page fault per 4 KiB) beyond the columns
    themselves. Capacity not filled is never touched, so it costs address space, not memory.
    When a segment is full a new one is started (no copy); the columns are then concatenated
    once, one at a time, when they are consumed.
    """

    def __init__(self) -> None:
        self.segments: list[dict[str, np.ndarray]] = []
        self.filled = 0  # rows in the last segment
        self.n_valid = 0
        self.rows_read = 0
        self.skipped: list[np.ndarray] = []
        self._idx = np.empty(0, np.intp)

    def reserve(self, extra: int) -> None:
        """Room for ``extra`` more rows in the current segment (else a new one of at least that size)."""
        if self.segments and self.filled + extra <= len(self.segments[-1]["rating"]):
            return
        size = max(extra, self.n_valid // 2, 1 << 16)
        self._close()
        self.segments.append({k: np.empty(size, dt) for k, dt in _DTYPES.items()})
        self.filled = 0

    def _close(self) -> None:
        """Trim the last segment to its filled rows (views; the untouched rest is never paged in)."""
        if self.segments:
            self.segments[-1] = {k: v[: self.filled] for k, v in self.segments[-1].items()}

    def _slots(self, n: int) -> dict[str, np.ndarray]:
        self.reserve(n)
        a = self.filled
        self.filled += n
        self.n_valid += n
        return {name: col[a : a + n] for name, col in self.segments[-1].items()}

    def _fill_time(self, slot: np.ndarray, t: np.ndarray | None) -> None:
        if t is None:  # no timestamp column: file order stands in for time
            slot[:] = np.arange(self.n_valid - len(slot), self.n_valid, dtype=np.int64)
        else:
            slot[:] = t

    def add(self, u: np.ndarray, i: np.ndarray, r: np.ndarray, t: np.ndarray | None) -> None:
        """Append kept rows (provisional id indices, ratings, timestamps or None)."""
        out = self._slots(len(u))
        out["user"][:] = u
        out["item"][:] = i
        np.copyto(out["rating"], r, casting="unsafe")  # float64 → float32, as astype
        self._fill_time(out["timestamp"], t)

    def add_block(self, block: Block, u_map: np.ndarray, i_map: np.ndarray, expected_rows: int | None) -> None:
        """One block of the fast path (all its rows kept); ids map through ``u_map``/``i_map``.

        ``expected_rows``: the whole file's rows as estimated from this (first) block, or None.
        """
        if expected_rows is not None:
            self.reserve(max(expected_rows - self.n_valid, block.n_rows))
        out = self._slots(block.n_rows)
        if len(self._idx) < block.n_rows:
            self._idx = np.empty(block.n_rows, np.intp)
        idx = self._idx[: block.n_rows]  # reused (take would convert int32 codes into a fresh array)
        np.copyto(idx, block.user_codes)
        np.take(u_map, idx, out=out["user"], mode="clip")  # codes are in range
        np.copyto(idx, block.item_codes)
        np.take(i_map, idx, out=out["item"], mode="clip")
        np.copyto(out["rating"], block.rating, casting="unsafe")
        self._fill_time(out["timestamp"], block.timestamp)
        self.rows_read += block.n_rows

    def rows(self, source: str, rejects: Rejects, path: str, first_line: int, invalid: list[int]) -> FileRows:
        skipped = np.concatenate(self.skipped) if self.skipped else np.zeros(0, np.int64)
        self._close()
        chunks = {name: [seg[name] for seg in self.segments if len(seg[name])] for name in _DTYPES}
        return FileRows(source, chunks, self.n_valid, self.rows_read, rejects, path, first_line, skipped,
                        np.sort(np.asarray(invalid, np.int64)))


def read_rows(
    source: str,
    spec: FormatSpec,
    users: IdMap,
    items: IdMap,
    rating_range: tuple[float, float] | None = None,
    progress: Progress | None = None,
    total_bytes: int | None = None,
    block_size: int | None = None,
) -> FileRows:
    """Read ``source`` per ``spec``: fast path first, robust path if any row is not clean.

    ``block_size`` (bytes per parsed block): by default ``BLOCK_SIZE``, smaller for a small file
    so that the fast path's workers get a few blocks each (:func:`fast_block_size`).
    """
    mark = users.n, items.n
    with arrow_input(source, progress, total_bytes) as inp:
        try:
            fast_size = block_size or fast_block_size(inp.plain_size())
            return _read(source, spec, users, items, rating_range, progress, total_bytes, fast_size, False, inp)
        except NeedRobust:
            users.truncate(mark[0])
            items.truncate(mark[1])
            return _read(source, spec, users, items, rating_range, progress, total_bytes, block_size or BLOCK_SIZE,
                         True, inp)


def fast_block_size(nbytes: int | None) -> int:
    """``BLOCK_SIZE``, or for a file of ``nbytes`` below 4 blocks per worker, a size giving that many
    (at least 1 MiB)."""
    if nbytes is None:
        return BLOCK_SIZE
    return int(min(BLOCK_SIZE, max(MIN_BLOCK_SIZE, nbytes // (4 * workers()))))


def _read(
    source: str,
    spec: FormatSpec,
    users: IdMap,
    items: IdMap,
    rating_range: tuple[float, float] | None,
    progress: Progress | None,
    total_bytes: int | None,
    block_size: int,
    robust: bool,
    inp: ArrowInput | None = None,
) -> FileRows:
    """One pass over ``source``: the fast path (raises ``NeedRobust``) or the robust path."""
    if inp is None:
        with arrow_input(source) as opened:
            return _read(source, spec, users, items, rating_range, progress, total_bytes, block_size, robust, opened)
    if robust:
        return _read_robust(source, spec, users, items, rating_range, progress, total_bytes, block_size, inp)
    return _read_fast(source, spec, users, items, rating_range, progress, total_bytes, block_size, inp)


def _read_fast(
    source: str,
    spec: FormatSpec,
    users: IdMap,
    items: IdMap,
    rating_range: tuple[float, float] | None,
    progress: Progress | None,
    total_bytes: int | None,
    block_size: int,
    inp: ArrowInput,
) -> FileRows:
    """Every row clean and one line each: parsed in parallel blocks (``blocks.read_blocks``)."""
    acc = _Acc()
    stream, bytes_read = inp.open()

    def on_block() -> None:
        if bytes_read is not None:
            report(progress, bytes_read(), total_bytes, source)

    size = inp.plain_size()

    def add(block: Block, u_map: np.ndarray, i_map: np.ndarray, nbytes: int) -> None:
        first = acc.rows_read == 0 and size is not None and nbytes > 0
        expected = int(block.n_rows * size / nbytes * 1.05) + 4096 if first else None
        acc.add_block(block, u_map, i_map, expected)

    try:
        read_blocks(stream, spec, users, items, rating_range, block_size, add, on_block)
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        raise NeedRobust from exc
    except (OSError, EOFError) as exc:
        raise InputError(f"{source}: cannot read or decompress ({exc})") from None
    finally:
        stream.close()  # only this thread read it, and the workers are done
    pa.default_memory_pool().release_unused()
    return acc.rows(source, Rejects(), "fast", spec.first_data_line, [])


def _read_robust(
    source: str,
    spec: FormatSpec,
    users: IdMap,
    items: IdMap,
    rating_range: tuple[float, float] | None,
    progress: Progress | None,
    total_bytes: int | None,
    block_size: int,
    inp: ArrowInput,
) -> FileRows:
    """Every column as a string, quotes honoured, serial; each bad row recorded with its line."""
    invalid_lines: list[int] = []  # every row pyarrow skipped (keeps the line numbering right)
    invalid_texts: list[str] = []
    multiline: list[int] = []  # malformed rows spanning lines (their first line)

    def on_invalid(row: pv.InvalidRow) -> str:  # called on this thread (use_threads=False)
        invalid_lines.append(row.number if row.number is not None else -1)
        invalid_texts.append(row.text)
        if "\n" in row.text or "\r" in row.text:
            multiline.append(invalid_lines[-1])
        return "skip"

    handler_released = threading.Event()
    weakref.finalize(on_invalid, handler_released.set)

    all_cols = spec.column_names or spec.header or []
    read_opts = pv.ReadOptions(block_size=block_size, use_threads=False, column_names=spec.column_names,
                               skip_rows=spec.skip_lines)
    parse_opts = pv.ParseOptions(
        delimiter=spec.delimiter,
        invalid_row_handler=on_invalid,
        ignore_empty_lines=False,
        quote_char='"',
        newlines_in_values=True,  # a quoted line break parses the same at any block boundary
    )
    conv_opts = pv.ConvertOptions(
        column_types={c: pa.string() for c in all_cols},
        null_values=[],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    acc = _Acc()
    rejects = Rejects()
    n_delivered = 0
    # Never closed here: Arrow closes the file when it lets go of its last reference.
    stream, bytes_read = inp.open()
    try:
        reader = pv.open_csv(
            stream,
            read_options=read_opts,
            parse_options=parse_opts,
            convert_options=conv_opts,
        )
        for batch in reader:
            _robust_batch(batch, spec, users, items, rating_range, acc, rejects, n_delivered, invalid_lines)
            last_row = np.array([n_delivered + batch.num_rows - 1])
            last = int(_lines_of(last_row, spec.first_data_line, invalid_lines)[0])
            _check_multiline(source, batch, n_delivered, spec.first_data_line, invalid_lines, multiline, last)
            n_delivered += batch.num_rows
            if bytes_read is not None:
                report(progress, bytes_read(), total_bytes, source)
        _check_multiline(source, None, n_delivered, spec.first_data_line, invalid_lines, multiline, None)
        if bytes_read is not None:
            report(progress, bytes_read(), total_bytes, source)
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        msg = str(exc).splitlines()[0]
        if "UTF8" in msg or "utf8" in msg.lower():
            raise _not_utf8(source, msg) from None
        raise InputError(f"{source}: cannot parse as {spec.name} ({msg})") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{source}: cannot read or decompress ({exc})") from None
    finally:
        # Arrow may drop its reference to ``on_invalid`` from a pool thread after an error; if
        # that happens while the interpreter exits, the thread cannot take the GIL and the
        # process aborts (exit 134 after the one-line error). So drop ours and wait for it.
        reader = parse_opts = on_invalid = stream = None
        if not handler_released.wait(_HANDLER_RELEASE_TIMEOUT):
            _log.warning("pyarrow still holds the CSV reader of %s", source)
    bad = [k for k, text in enumerate(invalid_texts) if text.strip()]  # whitespace-only lines are blank
    if bad:
        lines = np.asarray(invalid_lines, np.int64)[bad]
        texts = pa.array([invalid_texts[k] for k in bad], pa.string())
        rejects.add(lines, texts, np.full(len(lines), _WRONG_COUNT, np.int8))
        acc.rows_read += len(lines)
    pa.default_memory_pool().release_unused()
    return acc.rows(source, rejects, "robust", spec.first_data_line, invalid_lines)


def _not_utf8(source: str, msg: str) -> InputError:
    """The one-line error for a file that is not UTF-8, naming the first bad line when it can."""
    where = first_non_utf8(source)
    if where is None:
        return InputError(f"{source}: not valid UTF-8 text ({msg})")
    return not_utf8_error(source, *where)


def _rows_containing(cols: list[pa.Array], chars: str) -> np.ndarray | None:
    """Mask of rows where any of ``cols`` contains one of ``chars`` (None when no row does).

    A scan of each column's whole data buffer decides first; only when a character occurs
    there are the rows matched one by one.
    """
    needles = [c.encode() for c in chars]
    hit = False
    for col in cols:
        data = col.buffers()[2]
        if data is not None and data.size:
            raw = data.to_pybytes()  # a copy, but bytes' memchr search is ~10x faster than numpy here
            if any(n in raw for n in needles):
                hit = True
                break
    if not hit:
        return None
    pattern = "[" + "".join(f"\\x{ord(c):02x}" for c in chars) + "]"
    mask = np.zeros(len(cols[0]), bool)
    for col in cols:
        mask |= pc.match_substring_regex(col, pattern).to_numpy(zero_copy_only=False)
    return mask if mask.any() else None


def _check_multiline(
    source: str,
    batch: pa.RecordBatch | None,
    row0: int,
    first_line: int,
    invalid_lines: list[int],
    multiline: list[int],
    last_line: int | None,
) -> None:
    """``InputError`` at the first row whose quoted field spans lines (rows before it are one line each).

    ``batch`` (delivered rows ``row0...``) ends at line ``last_line``; malformed rows that span
    lines (``multiline``) count once the file has been parsed past them (None: at the end).
    """
    lines = [n for n in multiline if last_line is None or n <= last_line]
    if batch is not None:
        mask = _rows_containing(batch.columns, "\n\r")
        if mask is not None:
            lines.append(int(_lines_of(row0 + np.flatnonzero(mask)[:1], first_line, invalid_lines)[0]))
    if lines:
        raise InputError(
            f"{source}: line {min(lines)}: a quoted field runs over a line break (an unmatched '\"'?); "
            "every rating must be on one line: fix or remove the quote"
        )


def _number_text(col: pa.Array) -> pa.Array:
    """Trim whitespace and drop one leading '+' so pyarrow's cast accepts what the regexes allow."""
    return pc.replace_substring_regex(pc.utf8_trim_whitespace(col), r"^\+", "")


def _lines_of(k: np.ndarray, first_line: int, invalid_lines: list[int]) -> np.ndarray:
    """Physical line of delivered row ordinals ``k``, given the (skipped) malformed lines so far.

    Malformed line j (0-based, sorted) sits after ``g_j = line_j - first_line - j`` delivered
    rows, so row k is shifted down by the number of malformed lines with ``g_j <= k``.
    """
    inv = np.sort(np.asarray(invalid_lines, np.int64))
    g = inv - first_line - np.arange(len(inv))
    return first_line + k + np.searchsorted(g, k, side="right")


def _robust_batch(
    batch: pa.RecordBatch,
    spec: FormatSpec,
    users: IdMap,
    items: IdMap,
    rating_range: tuple[float, float] | None,
    acc: _Acc,
    rejects: Rejects,
    row0: int,
    invalid_lines: list[int],
) -> None:
    roles = spec.roles
    lengths = [pc.binary_length(c).to_numpy(zero_copy_only=False) for c in batch.columns]
    blank = np.logical_and.reduce([x == 0 for x in lengths])  # an empty line (all fields empty)
    u, i = batch.column(roles["user"]), batch.column(roles["item"])
    r = _number_text(batch.column(roles["rating"]))
    missing = (
        (pc.binary_length(u).to_numpy() == 0)
        | (pc.binary_length(i).to_numpy() == 0)
        | (pc.binary_length(r).to_numpy() == 0)
    )
    tv = t_ok = None
    if spec.has_timestamp:
        t = _number_text(batch.column(roles["timestamp"]))
        missing |= pc.binary_length(t).to_numpy() == 0
        t_ok = pc.match_substring_regex(t, _INT_RE).to_numpy(zero_copy_only=False)
        tv = pc.cast(pc.if_else(pa.array(t_ok), t, "0"), pa.int64()).to_numpy()
    wrong_count = np.zeros(batch.num_rows, bool)
    for c in spec.separators:
        wrong_count |= pc.binary_length(batch.column(c)).to_numpy() != 0
    is_num = pc.match_substring_regex(r, _FLOAT_RE).to_numpy(zero_copy_only=False)
    is_nonfinite = pc.match_substring_regex(r, _NONFINITE_RE, ignore_case=True).to_numpy(zero_copy_only=False)
    rv = pc.cast(pc.if_else(pa.array(is_num), r, "0"), pa.float64()).to_numpy()
    nul = _rows_containing([u, i], "\x00")
    # first matching reason wins, in this order
    conds = [wrong_count, missing, nul if nul is not None else np.zeros(len(rv), bool),
             ~is_num & ~is_nonfinite, is_nonfinite | ~(np.abs(rv) <= _F32_MAX)]
    codes = [_WRONG_COUNT, _MISSING, _NUL, _NON_NUMERIC, _NON_FINITE]
    if t_ok is not None:
        conds.append(~t_ok)
        codes.append(_BAD_TS)
    if rating_range is not None:
        conds.append((rv < rating_range[0]) | (rv > rating_range[1]))
        codes.append(_OUT_OF_RANGE)
    code = np.select(conds, codes, default=0).astype(np.int8)
    code[blank] = 0
    good = (code == 0) & ~blank
    bad = np.flatnonzero(code != 0)
    if not good.all():
        acc.skipped.append(row0 + np.flatnonzero(~good))
    if len(bad):
        lines = _lines_of(row0 + bad, spec.first_data_line, invalid_lines)
        idx = pa.array(bad, pa.int64())
        # the fields re-joined with the delimiter (ml1m: ':' between 7 fields gives back '::')
        raw = pc.binary_join_element_wise(*[c.take(idx) for c in batch.columns], spec.delimiter)
        rejects.add(lines, raw, code[bad])
    keep = pa.array(good)
    if good.all():
        uk, ik = u, i
    else:
        uk, ik = pc.filter(u, keep), pc.filter(i, keep)
        rv = rv[good]
        tv = tv[good] if tv is not None else None
    acc.add(users.encode(uk), items.encode(ik), rv, tv)
    acc.rows_read += int(batch.num_rows - blank.sum())
