"""Compiled rating errors of factor tables for :func:`factorflow.evaluation.metrics.rating_metrics` (numba).

Each kernel scores r̂ = ((w_u·v_i + b_u) + c_i) + μ in float64 as ``factorflow._pair_scores`` does
(the dot product in SIMD partial sums), clips it to the rating range, and sums the errors: the
predictions never exist as an array.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: The dot product may be summed in any order (SIMD partial sums, fused multiply-adds): float64
#: rounding; no shortcuts for infinities or NaN (as ``factorflow._pair_scores``).
_FAST = {"reassoc", "contract"}

#: Pairs (or CSR rows) are summed in this many chunks, each in order, then the chunks in order:
#: the sums do not depend on the number of threads.
CHUNKS = 64


@njit(cache=True, nogil=True, inline="always", fastmath=_FAST)
def _error(w, v, b, c, mu, u, i, r, lo, hi):  # pragma: no cover - compiled
    """clip(r̂_ui, lo, hi) − r in float64 (a NaN r̂ stays NaN, as np.clip keeps it)."""
    acc = 0.0
    for d in range(w.shape[1]):
        acc += np.float64(w[u, d]) * np.float64(v[i, d])
    p = ((acc + np.float64(b[u])) + np.float64(c[i])) + mu
    if p < lo:
        p = lo
    elif p > hi:
        p = hi
    return p - np.float64(r)


@njit(cache=True, nogil=True, parallel=True, fastmath=_FAST)
def pair_error_sums(w, v, b, c, mu, users, items, ratings, lo, hi, group, n_groups):  # pragma: no cover
    """``sums[g] = (Σ e², Σ |e|, count)`` of e = clip(r̂, lo, hi) − r over the pairs k with
    ``group[k] == g`` (``group`` empty: every pair in group 0), float64: the rating metrics of
    factor tables in one pass, without the predictions as an array."""
    n = users.shape[0]
    part = np.zeros((CHUNKS, n_groups, 3))
    for t in prange(CHUNKS):
        for k in range(n * t // CHUNKS, n * (t + 1) // CHUNKS):
            e = _error(w, v, b, c, mu, users[k], items[k], ratings[k], lo, hi)
            g = group[k] if group.shape[0] else 0
            part[t, g, 0] += e * e
            part[t, g, 1] += abs(e)
            part[t, g, 2] += 1.0
    return _add_chunks(part)


@njit(cache=True, nogil=True, parallel=True, fastmath=_FAST)
def csr_error_sums(w, v, b, c, mu, indptr, indices, data, lo, hi, bounds):  # pragma: no cover - compiled
    """:func:`pair_error_sums` of every stored rating of a users × items CSR (one group), the rows
    cut at ``bounds`` (CHUNKS + 1 row indices, about equal ratings per chunk)."""
    part = np.zeros((CHUNKS, 1, 3))
    for t in prange(CHUNKS):
        for u in range(bounds[t], bounds[t + 1]):
            for p in range(indptr[u], indptr[u + 1]):
                e = _error(w, v, b, c, mu, u, indices[p], data[p], lo, hi)
                part[t, 0, 0] += e * e
                part[t, 0, 1] += abs(e)
                part[t, 0, 2] += 1.0
    return _add_chunks(part)


@njit(cache=True, nogil=True)
def _add_chunks(part):  # pragma: no cover - compiled
    out = np.zeros(part.shape[1:])
    for t in range(part.shape[0]):
        out += part[t]
    return out
