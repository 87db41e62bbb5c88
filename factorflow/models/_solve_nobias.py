"""The PMF row-block kernel: exact factor-only solves for a block of CSR rows (no bias column).

For every row i (a user in the user half-sweep, an item in the item half-sweep) with ratings
r_ij against the other side's fixed factors u_j (and biases c_j, zero for PMF), the kernel
solves the exact minimizer of

    Σ_j (r_ij − w_iᵀu_j − c_j − μ)² + λ ‖w_i‖²,   i.e.   (Σ_j u_j u_jᵀ + λ I) w_i = Σ_j (r_ij − c_j − μ) u_j,

one K×K Cholesky solve per row in float64. This is the ALS kernel (:mod:`factorflow.models._solve`)
with the row's own bias pinned at zero: no (K+1)-th column, no bias penalty. Rows are solved one
after another, so a row's result depends only on that row: any blocking gives the same output,
bit for bit. The ALS kernel is not touched (its results are pinned by tests).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["solve_block_nobias", "solve_block_nobias_reference"]


@njit(cache=True, nogil=True)
def _solve_nobias_numba(indptr, indices, data, other_factors, other_bias, mu, reg):  # pragma: no cover - compiled
    n_rows = indptr.shape[0] - 1
    k = other_factors.shape[1]
    factors = np.zeros((n_rows, k), dtype=other_factors.dtype)
    a = np.empty((k, k), dtype=np.float64)
    rhs = np.empty(k, dtype=np.float64)
    y = np.empty(k, dtype=np.float64)
    x = np.empty(k, dtype=np.float64)
    sse = 0.0
    for i in range(n_rows):
        start = indptr[i]
        stop = indptr[i + 1]
        if stop == start:
            continue
        a[:, :] = 0.0
        rhs[:] = 0.0
        for p in range(start, stop):
            j = indices[p]
            for q in range(k):
                y[q] = other_factors[j, q]
            t = np.float64(data[p]) - np.float64(other_bias[j]) - mu
            for r in range(k):
                yr = y[r]
                rhs[r] += t * yr
                for s in range(r + 1):
                    a[r, s] += yr * y[s]
        for r in range(k):
            a[r, r] += reg
        # Cholesky A = L Lᵀ in the lower triangle, in place (A is SPD for reg > 0; for reg = 0 a
        # row with fewer than K ratings is singular and gives non-finite values, as a solve would).
        for r in range(k):
            acc = a[r, r]
            for s in range(r):
                acc -= a[r, s] * a[r, s]
            diag = np.sqrt(acc)
            a[r, r] = diag
            for q in range(r + 1, k):
                acc = a[q, r]
                for s in range(r):
                    acc -= a[q, s] * a[r, s]
                a[q, r] = acc / diag
        for r in range(k):
            acc = rhs[r]
            for s in range(r):
                acc -= a[r, s] * x[s]
            x[r] = acc / a[r, r]
        for r in range(k - 1, -1, -1):
            acc = x[r]
            for s in range(r + 1, k):
                acc -= a[s, r] * x[s]
            x[r] = acc / a[r, r]
        for q in range(k):
            factors[i, q] = x[q]
        # Residuals with the stored (rounded) values, so sse matches the returned array.
        for p in range(start, stop):
            j = indices[p]
            pred = np.float64(other_bias[j]) + mu
            for q in range(k):
                pred += np.float64(factors[i, q]) * np.float64(other_factors[j, q])
            e = np.float64(data[p]) - pred
            sse += e * e
    return factors, sse


def _check(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, other_factors: np.ndarray,
           other_bias: np.ndarray) -> tuple[np.ndarray, ...]:
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    indices = np.ascontiguousarray(indices, dtype=np.int32)
    data = np.ascontiguousarray(data, dtype=np.float32)
    other_factors = np.ascontiguousarray(other_factors)
    if other_factors.dtype not in (np.float32, np.float64):
        other_factors = other_factors.astype(np.float32)
    other_bias = np.ascontiguousarray(other_bias, dtype=other_factors.dtype)
    if other_factors.ndim != 2 or other_bias.shape != (other_factors.shape[0],):
        raise ValueError("other_factors must be (n_other, K) and other_bias (n_other,)")
    if indptr.ndim != 1 or indptr.shape[0] < 1 or indptr[0] != 0 or indptr[-1] != indices.shape[0]:
        raise ValueError("indptr must be local (start at 0) and end at len(indices)")
    if indices.shape != data.shape:
        raise ValueError("indices and data must have the same length")
    if indices.size and (indices.min() < 0 or indices.max() >= other_factors.shape[0]):
        raise ValueError("indices out of range of other_factors")
    return indptr, indices, data, other_factors, other_bias


def solve_block_nobias(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, other_factors: np.ndarray,
                       other_bias: np.ndarray, mu: float, reg: float) -> tuple[np.ndarray, float]:
    """Solve every row of a CSR block for its factors alone: (Σ u_j u_jᵀ + λI) w = Σ (r − c_j − μ) u_j.

    ``indptr`` int64 (local, starts at 0), ``indices`` int32 ids on the other side, ``data``
    float32 ratings; ``other_factors`` (n_other, K), ``other_bias`` (n_other,) (zeros for PMF).
    Returns ``(factors (rows, K) in the dtype of other_factors, sse)`` with zero rows for rows
    without ratings and ``sse = Σ (r − wᵀu_j − c_j − μ)²`` over the block after the update.
    """
    args = _check(indptr, indices, data, other_factors, other_bias)
    f, sse = _solve_nobias_numba(*args, float(mu), float(reg))
    return f, float(sse)


def solve_block_nobias_reference(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                                 other_factors: np.ndarray, other_bias: np.ndarray, mu: float,
                                 reg: float) -> tuple[np.ndarray, float]:
    """Plain NumPy version of :func:`solve_block_nobias` (same contract), for tests."""
    indptr, indices, data, other_factors, other_bias = _check(indptr, indices, data, other_factors, other_bias)
    n_rows, k = indptr.shape[0] - 1, other_factors.shape[1]
    factors = np.zeros((n_rows, k), dtype=other_factors.dtype)
    sse = 0.0
    for i in range(n_rows):
        cols = indices[indptr[i]:indptr[i + 1]]
        if cols.size == 0:
            continue
        y = other_factors[cols].astype(np.float64)
        t = data[indptr[i]:indptr[i + 1]].astype(np.float64) - other_bias[cols] - mu
        factors[i] = np.linalg.solve(y.T @ y + reg * np.eye(k), y.T @ t)
        sse += float(np.sum((t - y @ factors[i].astype(np.float64)) ** 2))
    return factors, sse
