"""The ALS row-block kernel: exact joint (factors, bias) solves for a block of CSR rows.

For every row i (a user in the user half-sweep, an item in the item half-sweep) with
ratings r_ij against the other side's fixed factors u_j and biases c_j, the kernel
solves the exact joint minimizer of

    Σ_j (r_ij − w_iᵀu_j − b_i − c_j − μ)² + λ_i (‖w_i‖² + b_i²)

by augmenting ũ_j = [u_j; 1] so that x_i = [w_i; b_i] solves one (K+1)×(K+1) system

    (Σ_j ũ_j ũ_jᵀ + λ_i I) x_i = Σ_j (r_ij − c_j − μ) ũ_j,      λ_i = reg·n_i (weighted) or reg.

(With the optional ``reg_bias`` the bias entry of λ_i I is ``reg_bias`` instead: the penalty
becomes λ_i ‖w_i‖² + reg_bias · b_i².)

Spec §5 gives b_i given w_i and w_i given b_i; solving both at once reaches the same
fixed point in one step and never increases the regularized loss. The item half-sweep
is the same call on the item×user CSR with targets r_ij − b_i − μ. Rows are solved one
after another in float64 (Cholesky), so the output for a row depends only on that row:
splitting rows into blocks cannot change any result, bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _solve_block_numba(indptr, indices, data, other_factors, other_bias, mu, reg, weighted,
                       reg_bias):  # pragma: no cover - compiled
    n_rows = indptr.shape[0] - 1
    k = other_factors.shape[1]
    d = k + 1
    factors = np.zeros((n_rows, k), dtype=other_factors.dtype)
    bias = np.zeros(n_rows, dtype=other_factors.dtype)
    a = np.empty((d, d), dtype=np.float64)
    rhs = np.empty(d, dtype=np.float64)
    y = np.empty(d, dtype=np.float64)
    x = np.empty(d, dtype=np.float64)
    sse = 0.0
    for i in range(n_rows):
        start = indptr[i]
        stop = indptr[i + 1]
        if stop == start:
            continue
        a[:, :] = 0.0
        rhs[:] = 0.0
        y[k] = 1.0
        for p in range(start, stop):
            j = indices[p]
            for q in range(k):
                y[q] = other_factors[j, q]
            t = np.float64(data[p]) - np.float64(other_bias[j]) - mu
            for r in range(d):
                yr = y[r]
                rhs[r] += t * yr
                for s in range(r + 1):
                    a[r, s] += yr * y[s]
        lam = reg * (stop - start) if weighted else reg
        for r in range(k):
            a[r, r] += lam
        a[k, k] += lam if reg_bias < 0.0 else reg_bias
        # Cholesky A = L Lᵀ in the lower triangle, in place.
        for r in range(d):
            acc = a[r, r]
            for s in range(r):
                acc -= a[r, s] * a[r, s]
            diag = np.sqrt(acc)
            a[r, r] = diag
            for q in range(r + 1, d):
                acc = a[q, r]
                for s in range(r):
                    acc -= a[q, s] * a[r, s]
                a[q, r] = acc / diag
        # Forward (L z = rhs) then back (Lᵀ x = z) substitution.
        for r in range(d):
            acc = rhs[r]
            for s in range(r):
                acc -= a[r, s] * x[s]
            x[r] = acc / a[r, r]
        for r in range(d - 1, -1, -1):
            acc = x[r]
            for s in range(r + 1, d):
                acc -= a[s, r] * x[s]
            x[r] = acc / a[r, r]
        for q in range(k):
            factors[i, q] = x[q]
        bias[i] = x[k]
        # Residuals with the stored (rounded) values, so sse matches the returned arrays.
        bi = np.float64(bias[i])
        for p in range(start, stop):
            j = indices[p]
            pred = bi + np.float64(other_bias[j]) + mu
            for q in range(k):
                pred += np.float64(factors[i, q]) * np.float64(other_factors[j, q])
            e = np.float64(data[p]) - pred
            sse += e * e
    return factors, bias, sse


def _check(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
           other_factors: np.ndarray, other_bias: np.ndarray) -> tuple[np.ndarray, ...]:
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


def solve_block(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    other_factors: np.ndarray,
    other_bias: np.ndarray,
    mu: float,
    reg: float,
    weighted: bool,
    reg_bias: float | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Solve every row of a CSR block exactly for (factors, bias); see the module docstring.

    The bias update is the exact joint minimizer: spec §5 gives b_i given w_i (and w_i given
    b_i); we solve both at once by augmenting u_j with a constant 1, one (K+1)×(K+1)
    Cholesky solve per row, λ_i = reg·n_i if ``weighted`` (ALS-WR) else reg. The item
    half-sweep is the same call on the item×user CSR, i.e. targets r_ij − b_i − μ.

    ``indptr`` int64 (local, starts at 0, length rows+1), ``indices`` int32 global ids on the
    other side, ``data`` float32 ratings; ``other_factors`` (n_other, K), ``other_bias``
    (n_other,). Returns ``(factors (rows, K), bias (rows,), sse)`` in the dtype of
    ``other_factors`` (float32 by contract); rows with no ratings get zeros; ``sse`` is
    Σ (r − x_i·ũ_j − c_j − μ)² over the block's ratings after the update. Deterministic.
    ``reg_bias`` (optional, default None = λ_i): a separate constant penalty on the bias, i.e.
    the last diagonal entry of the system is ``reg_bias`` instead of λ_i.
    """
    args = _check(indptr, indices, data, other_factors, other_bias)
    rb = -1.0 if reg_bias is None else float(reg_bias)
    f, b, sse = _solve_block_numba(*args, float(mu), float(reg), bool(weighted), rb)
    return f, b, float(sse)


def solve_block_reference(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    other_factors: np.ndarray,
    other_bias: np.ndarray,
    mu: float,
    reg: float,
    weighted: bool,
    reg_bias: float | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Plain NumPy version of :func:`solve_block` (same contract), for tests."""
    indptr, indices, data, other_factors, other_bias = _check(
        indptr, indices, data, other_factors, other_bias
    )
    n_rows, k = indptr.shape[0] - 1, other_factors.shape[1]
    factors = np.zeros((n_rows, k), dtype=other_factors.dtype)
    bias = np.zeros(n_rows, dtype=other_factors.dtype)
    sse = 0.0
    for i in range(n_rows):
        cols = indices[indptr[i]:indptr[i + 1]]
        if cols.size == 0:
            continue
        y = np.hstack([other_factors[cols].astype(np.float64), np.ones((cols.size, 1))])
        t = data[indptr[i]:indptr[i + 1]].astype(np.float64) - other_bias[cols] - mu
        lam = reg * cols.size if weighted else reg
        diag = np.full(k + 1, lam)
        diag[k] = lam if reg_bias is None else reg_bias
        x = np.linalg.solve(y.T @ y + np.diag(diag), y.T @ t)
        factors[i] = x[:k]
        bias[i] = x[k]
        stored = np.append(factors[i].astype(np.float64), np.float64(bias[i]))
        sse += float(np.sum((t - y @ stored) ** 2))
    return factors, bias, sse
