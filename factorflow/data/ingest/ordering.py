"""Kept rows → one row per (user, item) pair, in (user, item) order, written row group by row group.

Order: ``key = user * n_items + item`` (int64), sorted stably (equal keys keep file order). When
the key and the row position fit in 63 bits together, one in-place sort of ``key << b | position``
gives both the stable order (low bits) and the sorted keys (high bits): numpy's int64 sort is
several times faster than a stable argsort, and no second int64 array is needed. Otherwise (huge
id spaces) a stable argsort. Rows grouped by user in increasing order (MovieLens files, most
exports) are sorted in user-aligned segments on several threads.

Duplicates: per pair the row with the latest timestamp wins, ties → the last in the file. Only the
rows of pairs seen more than once are re-sorted, by (key, timestamp), stably.

:class:`SortedRows` holds the sorted keys, the order and the unsorted rating and timestamp
columns; its row groups are gathered one at a time (user and item come from the keys, rating
and timestamp by the order), so the sorted table is never held whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from factorflow.data.ingest.arrow import from_numpy

STEP = 1 << 20  # rows per vectorized step where a whole-column temporary would cost memory
PARALLEL_MIN_ROWS = 1 << 21  # below this, one sort on one thread


def sort_pairs(key: np.ndarray, n_items: int = 0, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(order, sorted_keys)``: the stable order of ``key`` (non-negative int64, consumed) and ``key[order]``.

    ``order`` is int32 when the row count allows (int64 otherwise). ``key`` is overwritten. With
    ``n_items`` (keys are ``user * n_items + item``) and ``threads`` > 1, rows grouped by user
    (most files) are sorted in user-aligned segments on that many threads (:func:`_sort_grouped`).
    """
    n = len(key)
    index_type = np.int32 if n < 2**31 else np.int64
    if n == 0 or (key[1:] >= key[:-1]).all():  # already in order: common for MovieLens files
        return np.arange(n, dtype=index_type), key
    pos_bits = max(1, (n - 1).bit_length())
    if int(key.max()).bit_length() + pos_bits > 63:
        order = np.argsort(key, kind="stable")
        return order.astype(index_type), key[order]
    key <<= pos_bits
    steps, pos = np.arange(STEP, dtype=np.int64), np.empty(STEP, np.int64)  # reused: no fresh memory per step
    for a in range(0, n, STEP):
        m = min(STEP, n - a)
        np.add(steps[:m], a, out=pos[:m])
        key[a : a + m] |= pos[:m]
    if not (threads > 1 and n_items and n >= PARALLEL_MIN_ROWS and _sort_grouped(key, pos_bits, n_items, threads)):
        key.sort()  # positions make every value distinct: any sort is stable here
    order = np.empty(n, index_type)
    mask = (1 << pos_bits) - 1
    for a in range(0, n, STEP):
        np.bitwise_and(key[a : a + STEP], mask, out=order[a : a + STEP], casting="unsafe")
    key >>= pos_bits
    return order, key


def _sort_grouped(packed: np.ndarray, pos_bits: int, n_items: int, threads: int) -> bool:
    """Sort ``packed`` in place if its rows are grouped by user in increasing user order; else False.

    Grouped rows (a sample of them shows non-decreasing users) are cut into segments at user
    boundaries and the segments sorted on ``threads`` threads (numpy's sort releases the GIL):
    each segment holds whole users, so the result is sorted when every segment boundary is
    (checked). Otherwise the sorted segments are merged by one stable sort of their runs.
    """
    n = len(packed)
    sample = (packed[:: max(1, n // 4096)] >> pos_bits) // n_items
    if not (sample[1:] >= sample[:-1]).all():
        return False
    cuts = [0]
    for k in range(1, 4 * threads):
        cut = _user_boundary(packed, max(cuts[-1] + 1, k * n // (4 * threads)), pos_bits, n_items)
        if cut >= n:
            break
        cuts.append(cut)
    cuts.append(n)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ingest-sort") as pool:
        list(pool.map(lambda ab: packed[ab[0] : ab[1]].sort(), zip(cuts[:-1], cuts[1:], strict=True)))
    if any(packed[c - 1] > packed[c] for c in cuts[1:-1]):  # not grouped after all
        packed.sort(kind="stable")  # merges the sorted runs
    return True


def _user_boundary(packed: np.ndarray, start: int, pos_bits: int, n_items: int) -> int:
    """The first position at or after ``start`` whose user differs from the row before (``len`` if none)."""
    n, width = len(packed), 1 << 16
    a = max(1, start)
    while a < n:
        users = (packed[a - 1 : a + width] >> pos_bits) // n_items
        change = np.flatnonzero(users[1:] != users[:-1])
        if len(change):
            return a + int(change[0])
        a, width = a + width, width * 2
    return n


def pair_keys(u: np.ndarray, i: np.ndarray, n_items: int) -> np.ndarray:
    """``u * n_items + i`` as int64."""
    key = u.astype(np.int64)
    key *= max(n_items, 1)
    key += i
    return key


def keep_latest(order: np.ndarray, keys: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, keys)`` with one row per key: the latest ``t[order]``, ties → the later position.

    ``order``/``keys`` as from :func:`sort_pairs` (equal keys in position order).
    """
    n = len(keys)
    if n == 0:
        return order, keys
    starts = np.empty(n, bool)
    starts[0] = True
    np.not_equal(keys[1:], keys[:-1], out=starts[1:])
    keep = starts.copy()
    keep[:-1] &= starts[1:]  # a pair seen once starts a group and the next row starts another
    del starts
    if keep.all():
        return order, keys
    p = np.flatnonzero(~keep)  # positions (in sorted order) of rows in repeated pairs
    sub = p[np.lexsort((t[order[p]], keys[p]))]  # stable: equal (key, t) stay in file order
    last = np.ones(len(sub), bool)
    last[:-1] = keys[sub[1:]] != keys[sub[:-1]]
    keep[sub[last]] = True
    return order[keep], keys[keep]


def resolve_duplicates(u: np.ndarray, i: np.ndarray, t: np.ndarray, n_items: int) -> np.ndarray:
    """Row positions to keep, in (user, item) order: per pair the latest ``t``, ties → last in file."""
    order, keys = sort_pairs(pair_keys(u, i, n_items))
    return keep_latest(order, keys, t)[0]


@dataclass
class SortedRows:
    """Kept rows in (user, item) order, one per pair; see the module docstring."""

    keys: np.ndarray  # sorted user * n_items + item
    order: np.ndarray  # positions into rating/timestamp
    rating: np.ndarray  # float32, file order
    timestamp: np.ndarray  # int64, file order
    n_items: int

    @classmethod
    def build(cls, key: np.ndarray, rating: np.ndarray, timestamp: np.ndarray, n_items: int,
              threads: int = 1) -> tuple[SortedRows, int]:
        """``(rows, n_duplicates_dropped)`` from :func:`pair_keys` (consumed) and the values, in file order;
        ``threads`` for :func:`sort_pairs`."""
        order, keys = sort_pairs(key, n_items, threads)
        n = len(keys)
        order, keys = keep_latest(order, keys, timestamp)
        return cls(keys, order, rating, timestamp, n_items), n - len(keys)

    @property
    def num_rows(self) -> int:
        return len(self.keys)

    def kept_parts(self, column: str) -> Iterator[np.ndarray]:
        """The kept rows' ``"rating"`` or ``"timestamp"`` values, in parts and in some order: the whole
        column (file order) when every row is kept, else gathered ``STEP`` rows at a time."""
        values = self.rating if column == "rating" else self.timestamp
        if len(self.order) == len(values):
            yield values
            return
        for a in range(0, len(self.order), STEP):
            yield values[self.order[a : a + STEP]]

    def batches(self, rows: int, reuse: bool = False) -> Iterator[pa.RecordBatch]:
        """``user_idx, item_idx, rating, timestamp`` in slices of ``rows`` rows.

        ``reuse``: the batches are views of two sets of buffers used in turn, so a batch is valid
        only until the one after the next is made (enough for a writer that consumes each batch
        before asking for the next one while the next is prefetched); no fresh memory per batch.
        """
        n_items = max(self.n_items, 1)
        sets = [_BatchBuffers(min(rows, self.num_rows)) for _ in range(2 if reuse else 0)]
        for k, a in enumerate(range(0, self.num_rows, rows)):
            buf = sets[k % 2] if reuse else _BatchBuffers(min(rows, self.num_rows - a))
            m = min(rows, self.num_rows - a)
            u, i, r, t, tmp, idx = (x[:m] for x in (buf.user, buf.item, buf.rating, buf.timestamp, buf.tmp, buf.idx))
            keys = self.keys[a : a + m]
            np.copyto(idx, self.order[a : a + m])  # numpy's take would convert int32 positions into a fresh array
            np.floor_divide(keys, n_items, out=tmp)
            u[:] = tmp
            np.multiply(tmp, n_items, out=tmp)
            np.subtract(keys, tmp, out=tmp)
            i[:] = tmp
            np.take(self.rating, idx, out=r, mode="clip")  # positions are in range
            np.take(self.timestamp, idx, out=t, mode="clip")
            yield pa.RecordBatch.from_arrays([from_numpy(u), from_numpy(i), from_numpy(r), from_numpy(t)],
                                             names=["user_idx", "item_idx", "rating", "timestamp"])


class _BatchBuffers:
    """Output buffers of one row group (and int64 scratch arrays)."""

    def __init__(self, n: int) -> None:
        self.user = np.empty(n, np.int32)
        self.item = np.empty(n, np.int32)
        self.rating = np.empty(n, np.float32)
        self.timestamp = np.empty(n, np.int64)
        self.tmp = np.empty(n, np.int64)
        self.idx = np.empty(n, np.intp)
