"""Compiled top-n selection for :func:`factorflow.serving.topn.top_n_blocks` (numba).

Both kernels rank by score descending, ties to the smaller item index, skip non-finite scores,
and skip each user's seen items by walking the user's sorted CSR row (``seen_ptr``/``seen_idx``,
indexed by the user's id), so no score is overwritten. Results go into caller-allocated
``top_i`` (int32, n columns), ``top_s`` (float32, -inf filled) and ``counts`` (int64).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import config, get_num_threads, njit

from factorflow.serving._blas import NO_TRANS, ROW_MAJOR

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _reset_pool() -> None:  # a forked child has none of the parent's threads
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_reset_pool)


def threads() -> int:
    """Threads a selection may use: numba's setting for this thread (``NUMBA_NUM_THREADS``, the
    cores, unless :func:`factorflow.threads.numba_threads` says otherwise)."""
    return max(1, int(get_num_threads()))


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, int(config.NUMBA_NUM_THREADS) - 1),
                                       thread_name_prefix="factorflow-topn")
        return _pool


def run_split(kernel: Callable[..., None], rows: int, *args: object) -> None:
    """``kernel(*args, r0, r1)`` over rows ``[0, rows)``, one contiguous range per thread.

    Threads: :func:`threads`; the calling thread takes the first range. The kernels release the
    GIL. Plain threads rather than a numba ``prange``: a waiting thread sleeps instead of
    spinning, so the selection and the BLAS threads that alternate with it do not take the cores
    from each other (measured: a third less time on 2 cores).
    """
    k = max(1, min(threads(), rows))
    if k == 1:
        kernel(*args, 0, rows)
        return
    bounds = [rows * t // k for t in range(k + 1)]
    futures = [_thread_pool().submit(kernel, *args, bounds[t], bounds[t + 1]) for t in range(1, k)]
    try:
        kernel(*args, bounds[0], bounds[1])
    finally:
        for fu in futures:
            fu.result()


def run_tasks(work: Callable[[int, int], None], n_tasks: int, n_threads: int) -> None:
    """``work(task, slot)`` for every task in ``[0, n_tasks)``, handed out one at a time to
    ``n_threads`` threads (the calling thread is slot 0; ``slot`` names the thread, e.g. for its
    own buffers). Handing tasks out as threads free up keeps both cores busy when one of them is
    slowed by other work on the machine. Every task's exception reaches the caller."""
    k = max(1, min(int(n_threads), n_tasks))
    tasks = iter(range(n_tasks))
    lock = threading.Lock()

    def loop(slot: int) -> None:
        while True:
            with lock:
                t = next(tasks, None)
            if t is None:
                return
            work(t, slot)

    futures = [_thread_pool().submit(loop, slot) for slot in range(1, k)]
    try:
        loop(0)
    finally:
        for fu in futures:
            fu.result()


@njit(cache=True, nogil=True, inline="always")
def _insert(ti, ts, c, n, v, j):  # pragma: no cover - compiled
    """Put (v, j) into the sorted buffer of ``c`` entries (capacity n); the caller has checked
    that it belongs there. Equal scores keep their order, so among ties the earlier insert wins."""
    p = c if c < n else n - 1
    while p > 0 and v > ts[p - 1]:
        ts[p] = ts[p - 1]
        ti[p] = ti[p - 1]
        p -= 1
    ts[p] = v
    ti[p] = j
    return c + 1 if c < n else c


#: Items per chunk of the scan, and per sub-chunk: a chunk with no score above the n-th best is
#: passed over after one vectorized test; in a chunk that has one, each sub-chunk is tested the
#: same way and only those holding a candidate are walked item by item.
CHUNK = 256
SUB_CHUNK = 32


@njit(cache=True, nogil=True, inline="always")
def _any_above(s_row, add_bias, br, item_offset, thr, k0, k1):  # pragma: no cover - compiled
    """Whether a score of columns [k0, k1) exceeds ``thr`` (seen, disallowed items included;
    NaN never does). An OR of comparisons: 8 floats per instruction (a count in int64 ran 4)."""
    a = s_row[k0:k1]  # slices: indices from 0, so the loop vectorizes (no negative-index fix-ups)
    hit = False
    if add_bias:
        o = item_offset[k0:k1]
        for k in range(a.shape[0]):
            hit |= ((a[k] + br) + o[k]) > thr
    else:
        for k in range(a.shape[0]):
            hit |= a[k] > thr
    return hit


@njit(cache=True, nogil=True)
def select_tile(s, j0, add_bias, row_bias, item_offset, users, seen_ptr, seen_idx, seen_pos, allowed, n,
                top_i, top_s, counts, r0, r1):  # pragma: no cover - compiled
    """Merge rows ``[r0, r1)`` of a tile of scores into each row's running top ``n``.

    Row r of the tile holds user ``users[r]``'s scores of items ``j0 .. j0 + s.shape[1] - 1``:
    ``s[r, k]``, or ``(s[r, k] + row_bias[r]) + item_offset[j0 + k]`` in the dtype of ``s`` when
    ``add_bias`` (the bias terms of ``FactorArrays.score_users``, in its order). ``top_i[r]``,
    ``top_s[r]`` and ``counts[r]`` carry the row's list between tiles (start: -inf, 0);
    ``seen_pos[r]`` is the position in ``seen_idx`` of the row's first seen item not yet passed
    (start: ``seen_ptr[users[r]]``). Tiles of a row must come in item order: items are visited in
    index order and only a strictly greater score displaces, so ties keep the smaller index.
    ``allowed`` is a uint8 mask over items, or empty for all items. Once n items are held, only
    the :data:`SUB_CHUNK` items around a score that beats the n-th best are walked (a vectorized
    test per :data:`CHUNK` and per sub-chunk), which is what makes the scan cheap. Serial and without the GIL: callers
    run disjoint row ranges on their own threads.
    """
    m = s.shape[1]
    use_allowed = allowed.shape[0] > 0
    if n == 0:
        return
    off = item_offset[j0:j0 + m]  # empty when not add_bias
    for r in range(r0, r1):
        ti = top_i[r]
        ts = top_s[r]
        s_row = s[r]
        q = seen_pos[r]
        qe = seen_ptr[users[r] + 1]
        br = row_bias[r]
        c = counts[r]
        thr = ts[n - 1]  # -inf (the caller's fill) until n items are held, then the n-th best
        for k0 in range(0, m, CHUNK):
            k1 = min(k0 + CHUNK, m)
            if c == n and not _any_above(s_row, add_bias, br, off, thr, k0, k1):
                continue
            for q0 in range(k0, k1, SUB_CHUNK):
                q1 = min(q0 + SUB_CHUNK, k1)
                if c == n and not _any_above(s_row, add_bias, br, off, thr, q0, q1):
                    continue
                for kk in range(q0, q1):
                    if add_bias:
                        v = (s_row[kk] + br) + off[kk]
                    else:
                        v = s_row[kk]
                    if not (v > thr and v < np.inf):
                        continue
                    jj = j0 + kk
                    while q < qe and seen_idx[q] < jj:  # seen items: checked only for a candidate
                        q += 1
                    if (q < qe and seen_idx[q] == jj) or (use_allowed and allowed[jj] == 0):
                        continue
                    c = _insert(ti, ts, c, n, v, jj)
                    if c == n:
                        thr = ts[n - 1]
        counts[r] = c
        seen_pos[r] = q


@njit(cache=True, nogil=True)
def rank_rows(sgemm, w_all, rows, item_t, item_offset, bias_all, seen_ptr, seen_idx, allowed, n, top_i, top_s,
              counts, w_buf, s_buf, width):  # pragma: no cover - compiled
    """Top ``n`` of users ``rows`` against every item, tile by tile, into ``top_i``/``top_s``/``counts``
    (one row per user, -inf/0 filled).

    The users' factor rows and biases are gathered once (float32, into ``w_buf``: at least
    len(rows) × K); then per panel of ``width`` items, ``W[rows] @ item_t[:, j0:j0 + width]`` is one
    call of ``sgemm`` (a ``cblas_sgemm``, :mod:`factorflow.serving._blas`) into ``s_buf`` (at least
    len(rows) × width floats, small enough to stay in cache) and :func:`select_tile` reads it at
    once, adding ``bias + item_offset`` (``item_t``: the C-contiguous float32 K × n_items table).
    No Python between the tiles: the caller's threads run one call per block of rows.
    """
    m = rows.shape[0]
    k = w_all.shape[1]
    n_items = item_t.shape[1]
    w = w_buf[:m]
    bias = np.empty(m, dtype=np.float32)
    pos = np.empty(m, dtype=np.int64)
    for r in range(m):
        u = rows[r]
        for d in range(k):
            w[r, d] = w_all[u, d]
        bias[r] = bias_all[u]
        pos[r] = seen_ptr[u]
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for j0 in range(0, n_items, width):
        pw = min(width, n_items - j0)
        s = s_buf[:m * pw].reshape((m, pw))
        sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, m, pw, k, one, w.ctypes.data, k, item_t.ctypes.data + 4 * j0, n_items,
              zero, s.ctypes.data, pw)
        select_tile(s, j0, True, bias, item_offset, rows, seen_ptr, seen_idx, pos, allowed, n, top_i, top_s,
                    counts, 0, m)


@njit(cache=True, nogil=True)
def _is_seen(seen_idx, lo, hi, j):  # pragma: no cover - compiled
    """``j in seen_idx[lo:hi]`` (sorted) by binary search."""
    while lo < hi:
        mid = (lo + hi) >> 1
        x = seen_idx[mid]
        if x < j:
            lo = mid + 1
        elif x > j:
            hi = mid
        else:
            return True
    return False


@njit(cache=True, nogil=True)
def select_user_independent(row_bias, order, run_start, run_offset, users, seen_ptr, seen_idx, n,
                            top_i, top_s, counts):  # pragma: no cover - compiled
    """Top ``n`` per user when the score is ``(0 + row_bias[r]) + offset_j`` (float32): one global order.

    ``order`` holds the candidate items sorted by (offset desc, index asc), cut into runs of equal
    offset (``run_start``, with the end appended; ``run_offset`` per run). Rounding is monotone,
    so a user's scores never increase along ``order``: walk the runs, take at most ``n`` unseen
    items of each (a run shares one score, so its smallest indices win), and stop at the first
    run scoring below the n-th best. Ties created by rounding across runs are settled by index
    in the insert, so the result equals ranking every item's score. A few microseconds per user:
    serial (a parallel region per block would cost more than the work on a busy machine).
    """
    n_runs = run_offset.shape[0]
    zero = np.float32(0.0)
    for r in range(users.shape[0]):
        ti = top_i[r]
        ts = top_s[r]
        u = users[r]
        lo = seen_ptr[u]
        hi = seen_ptr[u + 1]
        br = zero + row_bias[r]  # the empty product is +0.0, as in FactorArrays.score_users
        c = 0
        if not np.isfinite(br):
            counts[r] = 0
            continue
        for k in range(n_runs):
            v = br + run_offset[k]
            if v == -np.inf or (c == n and v < ts[n - 1]):
                break  # later runs score no higher
            if v == np.inf:
                continue
            taken = 0
            for p in range(run_start[k], run_start[k + 1]):
                j = order[p]
                if _is_seen(seen_idx, lo, hi, j):
                    continue
                if c == n and not (v > ts[n - 1] or j < ti[n - 1]):
                    break  # same score, larger index: neither this item nor the rest of the run
                q = c if c < n else n - 1
                while q > 0 and (v > ts[q - 1] or (v == ts[q - 1] and j < ti[q - 1])):
                    ts[q] = ts[q - 1]
                    ti[q] = ti[q - 1]
                    q -= 1
                ts[q] = v
                ti[q] = j
                if c < n:
                    c += 1
                taken += 1
                if taken == n:
                    break
        counts[r] = c
