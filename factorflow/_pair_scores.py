"""Compiled pair scoring for :meth:`factorflow.factors.FactorArrays.predict` (imported lazily).

A base-level module beside :mod:`factorflow.factors`: numba is imported only when pairs are
scored, so reading or writing factor tables does not pay for it.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: The dot product may be summed in any order (SIMD partial sums, fused multiply-adds): float64
#: rounding, ~1e-16 relative; no shortcuts for infinities or NaN.
_FAST = {"reassoc", "contract"}


@njit(cache=True, nogil=True, parallel=True, fastmath=_FAST)
def pair_scores(w, v, b, c, mu, users, items, out):  # pragma: no cover - compiled
    """``out[k] = ((Σ_d w[u,d]·v[i,d] + b[u]) + c[i]) + μ`` in float64, (u, i) = (users[k], items[k]).

    One pass over the pairs, no gathered temporaries; every term is widened to float64 before
    it is used. The dot product is summed in SIMD partial sums (:data:`_FAST`; an in-order sum is
    one dependent add per term, 2.5-4× slower): the same value to float64 rounding.
    """
    k_dim = w.shape[1]
    for k in prange(users.shape[0]):
        u = users[k]
        i = items[k]
        acc = 0.0
        for d in range(k_dim):
            acc += np.float64(w[u, d]) * np.float64(v[i, d])
        out[k] = ((acc + np.float64(b[u])) + np.float64(c[i])) + mu

