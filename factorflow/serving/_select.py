"""Compiled top-n selection for :func:`factorflow.serving.topn.top_n_blocks` (numba, parallel over users).

Both kernels rank by score descending, ties to the smaller item index, skip non-finite scores,
and skip each user's seen items by walking the user's sorted CSR row (``seen_ptr``/``seen_idx``,
indexed by the user's id), so no score is overwritten. Results go into caller-allocated
``top_i`` (int32, n columns), ``top_s`` (float32, -inf filled) and ``counts`` (int64).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


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


@njit(cache=True, nogil=True, parallel=True)
def select_rows(s, add_bias, row_bias, item_offset, users, seen_ptr, seen_idx, allowed, n,
                top_i, top_s, counts):  # pragma: no cover - compiled
    """Top ``n`` of each row of a score block, excluding seen and disallowed items in the scan.

    The score of (row r, item j) is ``s[r, j]``, or ``(s[r, j] + row_bias[r]) + item_offset[j]``
    in the dtype of ``s`` when ``add_bias`` (the bias terms of ``FactorArrays.score_users``, in its
    order). Items are visited in index order and only a strictly greater score displaces, so
    ties keep the smaller index. ``allowed`` is a uint8 mask over items, or empty for all items.
    """
    rows, m = s.shape
    use_allowed = allowed.shape[0] > 0
    for r in prange(rows):
        ti = top_i[r]
        ts = top_s[r]
        u = users[r]
        q = seen_ptr[u]
        qe = seen_ptr[u + 1]
        br = row_bias[r]
        c = 0
        thr = -np.inf  # a score must beat this (the n-th best once the buffer is full)
        j = 0
        while j < m:
            stop = m  # the next seen item at or after j (the scan runs up to it)
            while q < qe:
                x = seen_idx[q]
                q += 1
                if x >= j:
                    stop = x
                    break
            for jj in range(j, stop):
                if use_allowed and allowed[jj] == 0:
                    continue
                if add_bias:
                    v = (s[r, jj] + br) + item_offset[jj]
                else:
                    v = s[r, jj]
                if v > thr and v < np.inf:
                    c = _insert(ti, ts, c, n, v, jj)
                    if c == n:
                        thr = ts[n - 1]
            j = stop + 1
        counts[r] = c


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


@njit(cache=True, nogil=True, parallel=True)
def select_user_independent(row_bias, order, run_start, run_offset, users, seen_ptr, seen_idx, n,
                            top_i, top_s, counts):  # pragma: no cover - compiled
    """Top ``n`` per user when the score is ``(0 + row_bias[r]) + offset_j`` (float32): one global order.

    ``order`` holds the candidate items sorted by (offset desc, index asc), cut into runs of equal
    offset (``run_start``, with the end appended; ``run_offset`` per run). Rounding is monotone,
    so a user's scores never increase along ``order``: walk the runs, take at most ``n`` unseen
    items of each (a run shares one score, so its smallest indices win), and stop at the first
    run scoring below the n-th best. Ties created by rounding across runs are settled by index
    in the insert, so the result equals ranking every item's score.
    """
    n_runs = run_offset.shape[0]
    zero = np.float32(0.0)
    for r in prange(users.shape[0]):
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
