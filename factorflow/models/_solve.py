"""The ALS row-block kernel: exact joint (factors, bias) solves for a block of CSR rows.

For every row i (a user in the user half-sweep, an item in the item half-sweep) with
ratings r_ij against the other side's fixed factors u_j and biases c_j, the kernel
solves the exact joint minimizer of

    Σ_j (r_ij − w_iᵀu_j − b_i − c_j − μ)² + λ_i (‖w_i‖² + b_i²)

by augmenting ũ_j = [u_j; 1] so that x_i = [w_i; b_i] solves one (K+1)×(K+1) system

    (Σ_j ũ_j ũ_jᵀ + λ_i I) x_i = Σ_j (r_ij − c_j − μ) ũ_j,

with λ_i = reg·n_i (weighted, ALS-WR) or reg + reg_per_rating·n_i (default reg_per_rating = 0).

(With the optional ``reg_bias`` the bias entry of λ_i I is ``reg_bias`` instead: the penalty
becomes λ_i ‖w_i‖² + reg_bias · b_i².)

Spec §5 gives b_i given w_i and w_i given b_i; solving both at once reaches the same
fixed point in one step and never increases the regularized loss. The item half-sweep
is the same call on the item×user CSR with targets r_ij − b_i − μ.

How it is fast (the per-rating Gram update Σ u_j u_jᵀ is ~85% of the FLOPs at K = 64):
each run of up to :data:`FLUSH` ratings is gathered once, transposed, as z_p = [u_j; 1; t_p]
(t_p = r_p − c_j − μ; the other side's rows prefetched when its table exceeds L2), and Σ z zᵀ —
the Gram matrix, its bias row and the right-hand side at once — is summed in float32 (the factors' dtype) as 4×2
tiles of running sums, SIMD over ratings; each run's sums are added into the float64 system, so
rounding does not grow with a popular item's tens of thousands of ratings. The Cholesky
factorization (four dot products per pass), solves and residuals are float64. A run is padded
with zero ratings to whole SIMD vectors. A row with fewer ratings than about K+1 is solved in the
dual form instead (:func:`_dual_solve`, the same minimizer from an n×n system). Rows are spread
over numba threads (``prange``) in row ranges of equal work (ratings plus the factorization),
each row solved alone, so the factors do not depend on blocking or threads, bit for bit (only
``sse``'s summation order does).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir as _ir
from numba import njit, prange
from numba.core import cgutils as _cg
from numba.core import types as _types
from numba.extending import intrinsic as _intrinsic

from factorflow.threads import numba_threads


@_intrinsic
def _prefetch(typingctx, arr, row):
    """Ask the CPU to start loading row ``row`` of a C-contiguous 2-D array (a hint; no effect on results)."""
    if not (isinstance(arr, _types.Array) and arr.ndim == 2 and isinstance(row, _types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        shape = _cg.unpack_tuple(builder, ary.shape)
        strides = _cg.unpack_tuple(builder, ary.strides)
        idx = [context.cast(builder, args[1], signature.args[1], _types.intp), context.get_constant(_types.intp, 0)]
        ptr = _cg.get_item_pointer2(context, builder, data=ary.data, shape=shape, strides=strides,
                                    layout=aryty.layout, inds=idx, wraparound=False)
        i8p = _ir.IntType(8).as_pointer()
        i32 = _ir.IntType(32)
        fnty = _ir.FunctionType(_ir.VoidType(), [i8p, i32, i32, i32])
        fn = _cg.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        base = builder.bitcast(ptr, i8p)
        row_bytes = builder.mul(shape[1], context.get_constant(_types.intp, aryty.dtype.bitwidth // 8))
        for line in range(0, 1024, 64):  # up to 16 cache lines of the row
            off = context.get_constant(_types.intp, line)
            ok = builder.icmp_signed("<", off, row_bytes)
            with builder.if_then(ok):
                builder.call(fn, [builder.gep(base, [off]), _ir.Constant(i32, 0), _ir.Constant(i32, 3),
                                  _ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return _types.void(arr, row), codegen



#: Ratings accumulated in float32 before the partial Gram matrix is added into the float64 one:
#: float32 rounding grows with the number of terms summed, so long rows (popular items) are
#: summed in float32 runs of this length and the runs in float64.
FLUSH = 256
#: Other-side tables larger than this are prefetched row by row in the Gram update.
PREFETCH_ABOVE_BYTES = 2 << 20
#: Rows with fewer ratings than this fraction of K+1 take the dual n×n solve (:func:`_dual_solve`); per-row
#: timings at K = 64 put the break-even near n ≈ 0.9·(K+1) (n = 20: 9 µs dual vs 28 µs primal).
DUAL_BELOW_FRACTION = 0.85
_FAST = {"reassoc", "contract", "nsz", "arcp"}  # lets LLVM vectorize the reductions; no inf/nan shortcuts


@njit(cache=True, nogil=True, parallel=True, fastmath=_FAST)
def _solve_block_numba(indptr, indices, data, other_factors, other_bias, mu, reg, reg_n,
                       reg_bias, bounds, dual_below):  # pragma: no cover - compiled
    """Rows in ``prange`` over the rating-balanced row ranges ``bounds``; each row independent."""
    factors, bias, sse_parts = _outputs(indptr, other_factors, bounds)
    for ch in prange(bounds.shape[0] - 1):
        sse_parts[ch] = _solve_range(indptr, indices, data, other_factors, other_bias, mu, reg, reg_n, reg_bias,
                                     bounds[ch], bounds[ch + 1], dual_below, factors, bias)
    return factors, bias, sse_parts.sum()


@njit(cache=True, nogil=True, fastmath=_FAST)
def _solve_block_serial(indptr, indices, data, other_factors, other_bias, mu, reg, reg_n,
                        reg_bias, bounds, dual_below):  # pragma: no cover - compiled
    """:func:`_solve_block_numba` in the calling thread alone: no threading layer is entered, so
    any number of threads may run it at once (numba's workqueue layer allows one parallel call at a time)."""
    factors, bias, sse_parts = _outputs(indptr, other_factors, bounds)
    for ch in range(bounds.shape[0] - 1):
        sse_parts[ch] = _solve_range(indptr, indices, data, other_factors, other_bias, mu, reg, reg_n, reg_bias,
                                     bounds[ch], bounds[ch + 1], dual_below, factors, bias)
    return factors, bias, sse_parts.sum()


@njit(cache=True, nogil=True)
def _outputs(indptr, other_factors, bounds):  # pragma: no cover - compiled
    """Zeroed (factors, bias) of the block's rows in the other side's dtype, and one sse per range."""
    n_rows = indptr.shape[0] - 1
    factors = np.zeros((n_rows, other_factors.shape[1]), dtype=other_factors.dtype)
    bias = np.zeros(n_rows, dtype=other_factors.dtype)
    return factors, bias, np.zeros(max(bounds.shape[0] - 1, 1))


@njit(cache=True, nogil=True, fastmath=_FAST)
def _solve_range(indptr, indices, data, other_factors, other_bias, mu, reg, reg_n, reg_bias, lo, hi,
                 dual_below, factors, bias):  # pragma: no cover - compiled
    """Solve rows ``lo:hi`` into ``factors`` and ``bias``; returns their sse."""
    k = other_factors.shape[1]
    d = k + 1
    e4 = (k + 2 + 3) & ~3  # rows of z = [u_j; 1; t_j], padded to the 4-row tile
    zt = np.zeros((e4, FLUSH + 32), dtype=other_factors.dtype)  # a run's z, transposed (+8 pad, +24 anti-aliasing)
    g = np.empty((e4, e4 + 2), dtype=other_factors.dtype)  # the run's Σ z zᵀ (lower tiles)
    a = np.empty((d, d), dtype=np.float64)  # the (K+1)² system, then its Cholesky factor
    nd = max(d, dual_below)
    rhs = np.empty(nd, dtype=np.float64)
    x = np.empty(nd, dtype=np.float64)
    yb = np.empty((max(dual_below, 1), k), dtype=np.float64)  # a short row's gathered u_j (dual form)
    h = np.empty((max(dual_below, 1), max(dual_below, 1)), dtype=np.float64)  # its n × n system
    sse = 0.0
    for i in range(lo, hi):
        start = indptr[i]
        stop = indptr[i + 1]
        if stop == start:
            continue
        n = stop - start
        lam = reg + reg_n * n
        lam_b = lam if reg_bias < 0.0 else reg_bias
        if n < dual_below and lam > 0.0 and lam_b > 0.0:
            _dual_solve(indices, data, other_factors, other_bias, mu, start, stop, lam, lam_b, yb, h, rhs, x)
        else:
            for lo_r in range(start, stop, FLUSH):
                hi_r = min(stop, lo_r + FLUSH)
                _gram_tiled(indices, data, other_factors, other_bias, mu, lo_r, hi_r, zt, g)
                if lo_r == start:  # Σ ũ ũᵀ (with the bias row) and, from z's last row, Σ t ũ
                    for r in range(d):
                        for s in range(r + 1):
                            a[r, s] = g[r, s]
                    for s in range(d):
                        rhs[s] = g[k + 1, s]
                else:
                    for r in range(d):
                        for s in range(r + 1):
                            a[r, s] += g[r, s]
                    for s in range(d):
                        rhs[s] += g[k + 1, s]
            for r in range(k):
                a[r, r] += lam
            a[k, k] += lam_b  # a[k, k] already holds n
            _cholesky_solve(a, rhs, x, d)
        for q in range(k):
            factors[i, q] = x[q]
        bias[i] = x[k]
        sse += _row_sse(indices, data, other_factors, other_bias, mu, start, stop, factors[i], bias[i])
    return sse


@njit(cache=True, nogil=True, fastmath=_FAST)
def _dual_solve(indices, data, u, other_bias, mu, start, stop, lam, lam_b, yb, h, t, x):  # pragma: no cover
    """The same minimizer for a row with fewer ratings n than unknowns d = K+1, by the
    push-through identity (ỸᵀỸ + D)⁻¹Ỹᵀ = D⁻¹Ỹᵀ(ỸD⁻¹Ỹᵀ + I)⁻¹ (D = diag(λ,…,λ, λ_b) > 0):

        H α = t with H = ỸD⁻¹Ỹᵀ + I  (n × n: H_pq = u_p·u_q/λ + 1/λ_b + δ_pq),
        w = Σ_p α_p u_p / λ,   b = Σ_p α_p / λ_b.

    An n×n system instead of a (K+1)² one: n²K/2 + n³/3 multiply-adds instead of
    n(K+1)²/2 + (K+1)³/3. Float64 throughout; the result goes to ``x[:K+1]``."""
    k = u.shape[1]
    n = stop - start
    for p in range(n):
        j = indices[start + p]
        uj = u[j]
        yp = yb[p]
        for q in range(k):
            yp[q] = uj[q]
        t[p] = np.float64(data[start + p]) - np.float64(other_bias[j]) - mu
    inv_l = 1.0 / lam
    inv_b = 1.0 / lam_b
    for p in range(n):
        yp = yb[p]
        hp = h[p]
        for q in range(p + 1):
            yq = yb[q]
            dot = 0.0
            for c in range(k):
                dot += yp[c] * yq[c]
            hp[q] = dot * inv_l + inv_b
        hp[p] += 1.0
    _cholesky_solve(h, t, x, n)  # α in x[:n]
    bsum = 0.0
    for p in range(n):
        bsum += x[p]
    for c in range(k):
        t[c] = 0.0
    for p in range(n):
        ap = x[p] * inv_l
        yp = yb[p]
        for c in range(k):
            t[c] += ap * yp[c]
    for c in range(k):
        x[c] = t[c]
    x[k] = bsum * inv_b


@njit(cache=True, nogil=True, fastmath=_FAST)
def _row_sse(indices, data, other_factors, other_bias, mu, start, stop, f, b):  # pragma: no cover - compiled
    """Σ_p (r_p − f·u_j − b − c_j − μ)² over one row's ratings, in float64 with the stored (rounded)
    f and b, so the sse matches the returned arrays."""
    k = other_factors.shape[1]
    bi = np.float64(b)
    sse = 0.0
    for p in range(start, stop):
        j = indices[p]
        uj = other_factors[j]
        dot = 0.0
        for q in range(k):
            dot += np.float64(f[q]) * np.float64(uj[q])
        e = np.float64(data[p]) - bi - np.float64(other_bias[j]) - mu - dot
        sse += e * e
    return sse


@njit(cache=True, nogil=True, fastmath=_FAST)
def _gram_tiled(indices, data, u, other_bias, mu, lo, hi, zt, g):  # pragma: no cover - compiled
    """Lower tiles of g = Σ_p z_p z_pᵀ over ratings p ∈ [lo, hi), z_p = [u_j; 1; t_p] (t_p = r_p − c_j − μ),
    in float32: z is gathered transposed (row q of ``zt`` holds component q for every rating) so that
    a 4×2 tile of g is eight running sums over p, SIMD over p, each load serving four or two FMAs."""
    k = u.shape[1]
    m = hi - lo
    e4 = zt.shape[0]
    far = u.shape[0] * k * 4 > PREFETCH_ABOVE_BYTES
    for p in range(m):
        if far and p + 8 < m:
            _prefetch(u, indices[lo + p + 8])
        j = indices[lo + p]
        yj = u[j]
        for q in range(k):
            zt[q, p] = yj[q]
        zt[k, p] = 1.0
        zt[k + 1, p] = np.float64(data[lo + p]) - np.float64(other_bias[j]) - mu
    # Whole SIMD vectors only: the run is padded to m8 ratings with zero columns, so the tile loops
    # below have no scalar remainder (a 255-rating loop spent a third of its time in one).
    m8 = (m + 7) & ~7
    for p in range(m, m8):
        for q in range(k + 2):
            zt[q, p] = 0.0
    for q in range(k + 2, e4):
        for p in range(m8):
            zt[q, p] = 0.0
    zero = zt[0, zt.shape[1] - 1]  # a column no run reaches: a zero of zt's dtype
    for rt in range(0, e4, 4):
        z0 = zt[rt]
        z1 = zt[rt + 1]
        z2 = zt[rt + 2]
        z3 = zt[rt + 3]
        for st in range(0, rt + 4, 2):
            w0 = zt[st]
            w1 = zt[st + 1]
            a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = zero
            for p in range(m8):
                v0 = w0[p]
                v1 = w1[p]
                x0 = z0[p]
                x1 = z1[p]
                x2 = z2[p]
                x3 = z3[p]
                a00 += x0 * v0
                a01 += x0 * v1
                a10 += x1 * v0
                a11 += x1 * v1
                a20 += x2 * v0
                a21 += x2 * v1
                a30 += x3 * v0
                a31 += x3 * v1
            g[rt, st] = a00
            g[rt, st + 1] = a01
            g[rt + 1, st] = a10
            g[rt + 1, st + 1] = a11
            g[rt + 2, st] = a20
            g[rt + 2, st + 1] = a21
            g[rt + 3, st] = a30
            g[rt + 3, st + 1] = a31


@njit(cache=True, nogil=True, fastmath=_FAST)
def _cholesky_solve(a, rhs, x, d):  # pragma: no cover - compiled
    """Solve A x = rhs for SPD A given in the lower triangle of ``a`` (overwritten by L, A = LLᵀ).

    Column by column; the entries below the diagonal are four dot products at a time against
    the same row of L, so each load of it serves four FMAs (1.7× faster than one at a time)."""
    for r in range(d):
        ar = a[r]
        acc = ar[r]
        for s in range(r):
            acc -= ar[s] * ar[s]
        diag = np.sqrt(acc)
        ar[r] = diag
        inv = 1.0 / diag
        q = r + 1
        while q + 4 <= d:
            a0 = a[q]
            a1 = a[q + 1]
            a2 = a[q + 2]
            a3 = a[q + 3]
            c0 = a0[r]
            c1 = a1[r]
            c2 = a2[r]
            c3 = a3[r]
            for s in range(r):
                v = ar[s]
                c0 -= a0[s] * v
                c1 -= a1[s] * v
                c2 -= a2[s] * v
                c3 -= a3[s] * v
            a0[r] = c0 * inv
            a1[r] = c1 * inv
            a2[r] = c2 * inv
            a3[r] = c3 * inv
            q += 4
        while q < d:
            aq = a[q]
            c0 = aq[r]
            for s in range(r):
                c0 -= aq[s] * ar[s]
            aq[r] = c0 * inv
            q += 1
    for r in range(d):  # L z = rhs
        acc = rhs[r]
        for s in range(r):
            acc -= a[r, s] * x[s]
        x[r] = acc / a[r, r]
    for r in range(d - 1, -1, -1):  # Lᵀ x = z
        acc = x[r]
        for s in range(r + 1, d):
            acc -= a[s, r] * x[s]
        x[r] = acc / a[r, r]


@njit(cache=True, nogil=True, parallel=True, fastmath=_FAST)
def _solve_block_cg_numba(indptr, indices, data, other_factors, other_bias, mu, reg, reg_n, reg_bias, bounds,
                          start_factors, start_bias, steps):  # pragma: no cover - compiled
    """``steps`` conjugate-gradient steps per row on the same (K+1)² system, matrix-free
    (A p = Σ_j ũ_j (ũ_jᵀ p) + Λ p), from the row's previous (w_i, b_i)."""
    n_rows = indptr.shape[0] - 1
    k = other_factors.shape[1]
    d = k + 1
    factors = np.zeros((n_rows, k), dtype=other_factors.dtype)
    bias = np.zeros(n_rows, dtype=other_factors.dtype)
    n_chunks = bounds.shape[0] - 1
    sse_parts = np.zeros(max(n_chunks, 1))
    for ch in prange(n_chunks):
        x = np.empty(d, dtype=np.float64)
        r = np.empty(d, dtype=np.float64)
        p = np.empty(d, dtype=np.float64)
        ap = np.empty(d, dtype=np.float64)
        lam_vec = np.empty(d, dtype=np.float64)
        sse = 0.0
        for i in range(bounds[ch], bounds[ch + 1]):
            start = indptr[i]
            stop = indptr[i + 1]
            if stop == start:
                continue
            n = stop - start
            lam = reg + reg_n * n
            lam_vec[:] = lam
            lam_vec[k] = lam if reg_bias < 0.0 else reg_bias
            for q in range(k):
                x[q] = np.float64(start_factors[i, q])
            x[k] = np.float64(start_bias[i])
            # r = b − A x = Σ_j ũ_j (t_j − ũ_jᵀx) − Λx
            for q in range(d):
                r[q] = -lam_vec[q] * x[q]
            for e in range(start, stop):
                j = indices[e]
                uj = other_factors[j]
                dot = x[k]
                for q in range(k):
                    dot += np.float64(uj[q]) * x[q]
                res = np.float64(data[e]) - np.float64(other_bias[j]) - mu - dot
                for q in range(k):
                    r[q] += res * np.float64(uj[q])
                r[k] += res
            rr = 0.0
            for q in range(d):
                p[q] = r[q]
                rr += r[q] * r[q]
            for _ in range(steps):
                if rr <= 1e-30:
                    break
                for q in range(d):
                    ap[q] = lam_vec[q] * p[q]
                for e in range(start, stop):
                    uj = other_factors[indices[e]]
                    dot = p[k]
                    for q in range(k):
                        dot += np.float64(uj[q]) * p[q]
                    for q in range(k):
                        ap[q] += dot * np.float64(uj[q])
                    ap[k] += dot
                pap = 0.0
                for q in range(d):
                    pap += p[q] * ap[q]
                alpha = rr / pap
                rr_next = 0.0
                for q in range(d):
                    x[q] += alpha * p[q]
                    r[q] -= alpha * ap[q]
                    rr_next += r[q] * r[q]
                beta = rr_next / rr
                rr = rr_next
                for q in range(d):
                    p[q] = r[q] + beta * p[q]
            for q in range(k):
                factors[i, q] = x[q]
            bias[i] = x[k]
            sse += _row_sse(indices, data, other_factors, other_bias, mu, start, stop, factors[i], bias[i])
        sse_parts[ch] = sse
    return factors, bias, sse_parts.sum()


def _check(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
           other_factors: np.ndarray, other_bias: np.ndarray) -> tuple[np.ndarray, ...]:
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    indices = np.ascontiguousarray(indices, dtype=np.int32)
    data = np.ascontiguousarray(data, dtype=np.float32)
    other_factors = np.ascontiguousarray(other_factors)
    if other_factors.dtype not in (np.float32, np.float64):
        other_factors = other_factors.astype(np.float32)
    other_bias = np.ascontiguousarray(other_bias, dtype=other_factors.dtype)
    # Read-only arrays (a block read from bytes, factors a Dask worker received) are another numba
    # type: one compiled signature is kept by copying them (cheap next to the solve).
    indptr, indices, data, other_factors, other_bias = (
        a if a.flags.writeable else a.copy() for a in (indptr, indices, data, other_factors, other_bias))
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
    threads: int | None = None,
    reg_per_rating: float = 0.0,
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
    ``reg_per_rating`` (unweighted only): λ_i = reg + reg_per_rating·n_i, a constant floor plus a
    per-rating part (the weighted form alone under-regularizes rows with few ratings).
    ``threads``: numba threads solving rows at once (default: numba's current setting, i.e. the
    cores); the result does not depend on it (each row is solved alone, bit for bit), except
    ``sse``'s summation order.
    """
    args = _check(indptr, indices, data, other_factors, other_bias)
    rb = -1.0 if reg_bias is None else float(reg_bias)
    with numba_threads(threads) as n_threads:
        bounds = row_ranges(args[0], 16 * n_threads, args[3].shape[1])
        reg0, reg_n = _reg_terms(reg, weighted, reg_per_rating)
        kernel = _solve_block_serial if n_threads == 1 else _solve_block_numba
        f, b, sse = kernel(*args, float(mu), reg0, reg_n, rb, bounds, dual_below(args[3].shape[1]))
    return f, b, float(sse)


def solve_block_cg(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    other_factors: np.ndarray,
    other_bias: np.ndarray,
    mu: float,
    reg: float,
    weighted: bool,
    reg_bias: float | None,
    start_factors: np.ndarray,
    start_bias: np.ndarray,
    steps: int = 3,
    threads: int | None = None,
    reg_per_rating: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, float]:
    """:func:`solve_block`'s system solved approximately: ``steps`` conjugate-gradient steps per
    row from the row's previous ``(start_factors, start_bias)`` (rows × K, rows), matrix-free
    (A p = Σ_j ũ_j(ũ_jᵀp) + Λp: 2·n_i·(K+1) FMAs a step instead of the Gram's n_i(K+1)²/2 and a
    Cholesky). CG minimizes the row's quadratic over a growing Krylov space from the start, so
    a step never increases the regularized loss; with steps ≥ K+1 it is exact (up to rounding).
    Same contract and return values as :func:`solve_block` otherwise."""
    args = _check(indptr, indices, data, other_factors, other_bias)
    n_rows, k = args[0].shape[0] - 1, args[3].shape[1]
    x0 = np.ascontiguousarray(start_factors, dtype=args[3].dtype)
    b0 = np.ascontiguousarray(start_bias, dtype=args[3].dtype)
    if x0.shape != (n_rows, k) or b0.shape != (n_rows,):
        raise ValueError(f"start_factors must be ({n_rows}, {k}) and start_bias ({n_rows},)")
    x0, b0 = (a if a.flags.writeable else a.copy() for a in (x0, b0))
    rb = -1.0 if reg_bias is None else float(reg_bias)
    with numba_threads(threads) as n_threads:
        bounds = row_ranges(args[0], 16 * n_threads, 2 * int(steps))
        reg0, reg_n = _reg_terms(reg, weighted, reg_per_rating)
        f, b, sse = _solve_block_cg_numba(*args, float(mu), reg0, reg_n, rb, bounds, x0, b0, int(steps))
    return f, b, float(sse)


def dual_below(rank: int) -> int:
    """Rows with fewer ratings than this are solved in the dual form (:func:`_dual_solve`): their
    n×n system is cheaper than the (K+1)² one."""
    return int(DUAL_BELOW_FRACTION * (rank + 1))


def _reg_terms(reg: float, weighted: bool, reg_per_rating: float) -> tuple[float, float]:
    """(constant, per-rating) parts of λ_i: (0, reg) weighted, else (reg, reg_per_rating)."""
    return (0.0, float(reg)) if weighted else (float(reg), float(reg_per_rating))


def row_ranges(indptr: np.ndarray, n_ranges: int, rank: int) -> np.ndarray:
    """Boundaries of ≤ ``n_ranges`` contiguous row ranges of about equal work, a row costing its
    ratings plus (K+1)/3 (its Cholesky factorization, in units of one rating's Gram update)."""
    n_rows = indptr.shape[0] - 1
    if n_rows <= 0:
        return np.zeros(1, dtype=np.int64)
    work = indptr.astype(np.float64) + np.arange(n_rows + 1) * ((rank + 1) / 3.0 + 1.0)
    cuts = np.searchsorted(work, np.linspace(0.0, work[-1], max(1, n_ranges) + 1))
    cuts[0], cuts[-1] = 0, n_rows
    return np.unique(np.clip(cuts, 0, n_rows)).astype(np.int64)


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
    reg_per_rating: float = 0.0,
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
        lam = reg * cols.size if weighted else reg + reg_per_rating * cols.size
        diag = np.full(k + 1, lam)
        diag[k] = lam if reg_bias is None else reg_bias
        x = np.linalg.solve(y.T @ y + np.diag(diag), y.T @ t)
        factors[i] = x[:k]
        bias[i] = x[k]
        stored = np.append(factors[i].astype(np.float64), np.float64(bias[i]))
        sse += float(np.sum((t - y @ stored) ** 2))
    return factors, bias, sse
