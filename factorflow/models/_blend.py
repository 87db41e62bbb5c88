"""The maths of a blend of factor models (issue 12): the validation slice, the weights, the exact tables.

A blend of K factor models with non-negative weights aₖ and an intercept a₀ predicts

    r̂ᵢⱼ = a₀ + Σₖ aₖ (wₖᵢ·uₖⱼ + bₖᵢ + cₖⱼ + μₖ).

Because every aₖ ≥ 0, aₖ wₖᵢ·uₖⱼ = (√aₖ wₖᵢ)·(√aₖ uₖⱼ), so the sum of the K dot products is ONE
dot product of the concatenated factors:

    W̃ᵢ = [√a₁ w₁ᵢ, …, √a_K w_Kᵢ],   Ũⱼ = [√a₁ u₁ⱼ, …, √a_K u_Kⱼ],   W̃ᵢ·Ũⱼ = Σₖ aₖ wₖᵢ·uₖⱼ,

and the rest splits into a user part, an item part and a constant:

    b̃ᵢ = Σₖ aₖ bₖᵢ,   c̃ⱼ = Σₖ aₖ cₖⱼ,   μ̃ = a₀ + Σₖ aₖ μₖ,

so r̂ᵢⱼ = W̃ᵢ·Ũⱼ + b̃ᵢ + c̃ⱼ + μ̃ exactly: a blend is published and served as ordinary factor
tables of rank Σₖ Kₖ (:func:`blend_factors`). Negative weights would need a signed inner
product, so the weights are fitted under aₖ ≥ 0 (:func:`fit_blend_weights`).

Nothing here imports Prefect, Dask or Keras: arrays in, arrays out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.optimize import nnls

from factorflow.errors import ParameterError
from factorflow.factors import FactorArrays


def validation_mask(train: sp.csr_matrix, fraction: float, seed: int) -> np.ndarray:
    """A seeded, per-user stratified validation slice of the TRAIN matrix's stored entries.

    Returns a boolean mask over ``train.data`` (CSR order). Each user with n ≥ 2 ratings gives
    ``min(round(fraction·n), n − 1)`` of them, chosen uniformly at random, so every user keeps at
    least one training rating; users with one rating give none. The test split is never an input,
    so the slice cannot touch it.
    """
    if not 0.0 < fraction < 1.0:
        raise ParameterError(f"validation fraction={fraction!r}: must be between 0 and 1 (exclusive)")
    csr = sp.csr_matrix(train)
    rng = np.random.default_rng(seed)
    mask = np.zeros(csr.nnz, dtype=bool)
    counts = np.diff(csr.indptr)
    for u in np.flatnonzero(counts >= 2):
        n = int(counts[u])
        take = min(int(round(fraction * n)), n - 1)
        if take:
            start = int(csr.indptr[u])
            mask[start + rng.choice(n, size=take, replace=False)] = True
    return mask


def split_by_mask(train: sp.csr_matrix, mask: np.ndarray) -> tuple[sp.csr_matrix, tuple[np.ndarray, ...]]:
    """(the fit matrix without the masked entries, (users, items, ratings) of the masked ones)."""
    coo = sp.csr_matrix(train).tocoo()  # CSR → COO keeps the CSR order of ``data``
    keep = ~mask
    fit = sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=train.shape)
    return fit, (coo.row[mask].astype(np.int64), coo.col[mask].astype(np.int64), coo.data[mask].astype(np.float64))


def fit_blend_weights(predictions: np.ndarray, ratings: np.ndarray, reg: float = 1.0) -> tuple[float, np.ndarray]:
    """Non-negative ridge weights with a free intercept: ``(a₀, a)`` minimising

        ‖r − a₀ − P a‖² + reg ‖a‖²   subject to a ≥ 0,

    where ``P`` is (n ratings × K components) of component predictions. The intercept is not
    penalised: with P and r centred it is a₀ = r̄ − P̄·a exactly, and the penalised, constrained
    problem in ``a`` is a non-negative least squares on the stacked system [P − P̄; √reg·I] a ≈
    [r − r̄; 0] (solved exactly by scipy's NNLS).
    """
    p = np.asarray(predictions, dtype=np.float64)
    r = np.asarray(ratings, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != r.shape[0] or p.shape[0] == 0:
        raise ParameterError(f"predictions {p.shape} and ratings {r.shape}: need (n, K) and (n,) with n > 0")
    if reg < 0 or not np.isfinite(reg):
        raise ParameterError(f"blend reg={reg!r}: must be a finite number ≥ 0")
    if not (np.isfinite(p).all() and np.isfinite(r).all()):
        raise ParameterError("blend: a component predicted a non-finite value on the validation slice")
    p_mean, r_mean = p.mean(axis=0), r.mean()
    k = p.shape[1]
    a_mat = np.vstack([p - p_mean, np.sqrt(reg) * np.eye(k)])
    b_vec = np.concatenate([r - r_mean, np.zeros(k)])
    a, _ = nnls(a_mat, b_vec)
    return float(r_mean - p_mean @ a), a


def blend_factors(components: Sequence[FactorArrays], weights: Sequence[float], intercept: float) -> FactorArrays:
    """The exact factor tables of ``intercept + Σₖ weights[k] · components[k]`` (module docstring).

    Components with weight 0 contribute no columns. Raises ParameterError for a negative weight
    or components of different shapes.
    """
    a = np.asarray(weights, dtype=np.float64)
    if len(components) != len(a) or not len(components):
        raise ParameterError(f"blend: {len(components)} components and {len(a)} weights")
    if (a < 0).any() or not np.isfinite(a).all():
        raise ParameterError(f"blend weights {a.tolist()}: must be finite and ≥ 0 (a dot product needs √a)")
    n_u, n_i = components[0].n_users, components[0].n_items
    if any((c.n_users, c.n_items) != (n_u, n_i) for c in components):
        raise ParameterError("blend: components must have the same users and items (one snapshot and split)")
    used = [(w, c) for w, c in zip(a, components, strict=True) if w > 0]
    if used:
        user = np.hstack([np.sqrt(w) * c.user_factors.astype(np.float64) for w, c in used])
        item = np.hstack([np.sqrt(w) * c.item_factors.astype(np.float64) for w, c in used])
    else:  # only the intercept: rank 0 tables still score (an empty dot product is 0)
        user, item = np.zeros((n_u, 0)), np.zeros((n_i, 0))
    user_bias = sum((w * c.user_bias.astype(np.float64) for w, c in used), np.zeros(n_u))
    item_bias = sum((w * c.item_bias.astype(np.float64) for w, c in used), np.zeros(n_i))
    mu = float(intercept) + sum(float(w) * float(c.global_mean) for w, c in used)
    return FactorArrays(user_factors=user.astype(np.float32), item_factors=item.astype(np.float32),
                        user_bias=user_bias.astype(np.float32), item_bias=item_bias.astype(np.float32),
                        global_mean=mu)
