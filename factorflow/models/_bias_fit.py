"""Compiled fit of the bias baseline (:class:`factorflow.models.baselines.BiasBaseline`), numba.

The alternating exact updates over the train CSR, without temporaries: one pass over the ratings
per sweep (user sums, and the next sweep's item sums scattered from each row). Each sum is taken in the order
``np.bincount`` took it (ratings in row-major order, float64, ``(r − μ) − b``), so the result is
that of the NumPy form bit for bit. Serial on purpose: a few hundredths of a second per pass at 18M
ratings, and a numba ``prange`` for the user pass was 4× slower, not faster, on a loaded 2-core
machine (its threads wait for each other at every sweep).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def bias_sweeps(indptr, indices, data, n_i, mu, reg_user, reg_item, iterations):  # pragma: no cover - compiled
    """``(b, c)`` after ``iterations`` sweeps of c_j = Σ_i (r_ij − μ − b_i) / (n_j + λ_i), then
    b_i = Σ_j (r_ij − μ − c_j) / (n_i + λ_u), from b = 0 (float64; denominators at least 1e-12).

    ``indptr``/``indices``/``data``: the users × ``n_i`` items CSR, every stored entry a rating.
    One pass over the ratings per sweep: a row's new b_i is scattered into the next sweep's item
    sums while the row is in cache (same terms, same order as a separate item pass).
    """
    n_u = indptr.shape[0] - 1
    n_item = np.zeros(n_i)
    acc = np.zeros(n_i)
    for u in range(n_u):  # the first item step, from b = 0
        for p in range(indptr[u], indptr[u + 1]):
            j = indices[p]
            n_item[j] += 1.0
            acc[j] += (np.float64(data[p]) - mu) - 0.0
    den_i = np.maximum(n_item + reg_item, 1e-12)  # (n + λ) as the NumPy form: float64, at least 1e-12
    c = acc / den_i
    b = np.zeros(n_u)
    for sweep in range(iterations):
        more = sweep + 1 < iterations
        acc[:] = 0.0
        for u in range(n_u):  # serial: each item's sum in row-major order, as bincount
            lo, hi = indptr[u], indptr[u + 1]
            s = 0.0
            for p in range(lo, hi):
                s += (np.float64(data[p]) - mu) - c[indices[p]]
            bu = s / max(np.float64(hi - lo) + reg_user, 1e-12)
            b[u] = bu
            if more:
                for p in range(lo, hi):
                    acc[indices[p]] += (np.float64(data[p]) - mu) - bu
        if more:
            c = acc / den_i
    return b, c
