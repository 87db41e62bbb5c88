"""The BPMF row-block kernel: one Gibbs draw of every row's augmented vector, and its random streams.

For a row i (a user in the user half-sweep, an item in the item half-sweep) with ratings r_ij
against the other side's current sample (u_j, c_j), the augmented vector x_i = [w_i; b_i] has
the Gaussian conditional (Salakhutdinov & Mnih 2008, eq. 12–13, with ũ_j = [u_j; 1])

    Λ*_i = Λ + α Σ_j ũ_j ũ_jᵀ,      μ*_i = Λ*_i⁻¹ (α Σ_j ũ_j (r_ij − c_j − μ) + Λ m)

where (m, Λ) is the side's current hyper-parameter draw and α the rating precision. The draw is
x_i = μ*_i + L⁻ᵀ z with Λ*_i = L Lᵀ (Cholesky) and z ~ N(0, I): the Gram accumulation is the ALS
kernel's, the solve adds one triangular solve against standard normals.

Random numbers are counter-based: z for row r, dimension d is a Box–Muller transform of two
splitmix64 hashes of (key, counter) with counter = r·D + d, and ``key`` hashes (seed, sweep,
side). A row's draw therefore depends only on (seed, sweep, side, row), never on how rows are
cut into blocks, which worker solves them or in what order: the same seed gives the same
samples on 1 worker with 4 blocks or 2 workers with 7.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_MASK = (1 << 64) - 1


def _mix_py(z: int) -> int:
    z = (z + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def stream_key(seed: int, step: int, side: int) -> np.uint64:
    """The 64-bit key of one half-step's random stream: splitmix64 over (seed, step, side)."""
    z = _mix_py(int(seed) & _MASK)
    z = _mix_py(z ^ (int(step) & _MASK))
    z = _mix_py(z ^ (int(side) & _MASK))
    return np.uint64(z)


@njit(inline="always")
def _mix(z):  # pragma: no cover - compiled
    z = z + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


@njit(inline="always")
def _unit(key, counter):  # pragma: no cover - compiled
    """A uniform in (0, 1) from (key, counter): the top 53 bits of a double splitmix64 hash."""
    z = _mix(key ^ _mix(counter))
    return (np.float64(z >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(inline="always")
def _normal(key, counter):  # pragma: no cover - compiled
    """A standard normal from (key, counter) by Box–Muller on two counter-based uniforms."""
    c = np.uint64(counter) * np.uint64(2)
    u1 = _unit(key, c)
    u2 = _unit(key, c + np.uint64(1))
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@njit(cache=True, nogil=True)
def standard_normals(key, first, n):  # pragma: no cover - compiled
    """``n`` standard normals of the stream ``key`` from counter ``first`` (for tests)."""
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        out[i] = _normal(key, first + i)
    return out


@njit(cache=True, nogil=True)
def sample_block(indptr, indices, data, other_factors, other_bias, mu, alpha, prior_mean, prior_prec,
                 key, start, want_mean=False):  # pragma: no cover - compiled
    """One draw of [w_i; b_i] for every row of a CSR block (module docstring).

    Returns (factors (n, K) in ``other_factors.dtype``, biases (n,), sse of the drawn rows
    against their ratings, conditional-mean factors, conditional-mean biases); the last two are
    the μ*_i (the draws without their noise) when ``want_mean``, else empty. Rows without ratings
    stay zero: they have no data, and a draw from the prior would only add noise to their
    (μ + known bias) fallback prediction.
    """
    n_rows = indptr.shape[0] - 1
    k = other_factors.shape[1]
    d = k + 1
    factors = np.zeros((n_rows, k), dtype=other_factors.dtype)
    bias = np.zeros(n_rows, dtype=other_factors.dtype)
    n_mean = n_rows if want_mean else 0
    mean_factors = np.zeros((n_mean, k), dtype=other_factors.dtype)
    mean_bias = np.zeros(n_mean, dtype=other_factors.dtype)
    prior_rhs = prior_prec @ prior_mean
    a = np.empty((d, d), dtype=np.float64)
    rhs = np.empty(d, dtype=np.float64)
    y = np.empty(d, dtype=np.float64)
    x = np.empty(d, dtype=np.float64)
    v = np.empty(d, dtype=np.float64)
    sse = 0.0
    for i in range(n_rows):
        lo = indptr[i]
        hi = indptr[i + 1]
        if hi == lo:
            continue
        for r in range(d):
            rhs[r] = prior_rhs[r]
            for s in range(r + 1):
                a[r, s] = prior_prec[r, s]
        y[k] = 1.0
        for p in range(lo, hi):
            j = indices[p]
            for q in range(k):
                y[q] = other_factors[j, q]
            t = np.float64(data[p]) - np.float64(other_bias[j]) - mu
            for r in range(d):
                yr = alpha * y[r]
                rhs[r] += t * yr
                for s in range(r + 1):
                    a[r, s] += yr * y[s]
        # Cholesky a = L Lᵀ in place (lower triangle)
        for r in range(d):
            acc = a[r, r]
            for q in range(r):
                acc -= a[r, q] * a[r, q]
            a[r, r] = np.sqrt(acc)
            for s in range(r + 1, d):
                acc = a[s, r]
                for q in range(r):
                    acc -= a[s, q] * a[r, q]
                a[s, r] = acc / a[r, r]
        # mean: L Lᵀ m = rhs (forward into x, backward in place)
        for r in range(d):
            acc = rhs[r]
            for q in range(r):
                acc -= a[r, q] * x[q]
            x[r] = acc / a[r, r]
        for r in range(d - 1, -1, -1):
            acc = x[r]
            for q in range(r + 1, d):
                acc -= a[q, r] * x[q]
            x[r] = acc / a[r, r]
        # noise: Lᵀ v = z, so v ~ N(0, (L Lᵀ)⁻¹)
        base = (start + i) * d
        for r in range(d - 1, -1, -1):
            acc = _normal(key, base + r)
            for q in range(r + 1, d):
                acc -= a[q, r] * v[q]
            v[r] = acc / a[r, r]
        for q in range(k):
            factors[i, q] = x[q] + v[q]
        bias[i] = x[k] + v[k]
        if want_mean:
            for q in range(k):
                mean_factors[i, q] = x[q]
            mean_bias[i] = x[k]
        for p in range(lo, hi):
            j = indices[p]
            pred = np.float64(bias[i]) + np.float64(other_bias[j]) + mu
            for q in range(k):
                pred += np.float64(factors[i, q]) * np.float64(other_factors[j, q])
            e = np.float64(data[p]) - pred
            sse += e * e
    return factors, bias, sse, mean_factors, mean_bias
