"""The blend's maths (models/_blend.py): exact tables, non-negative ridge weights, the validation slice."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import minimize

from factorflow.errors import ParameterError
from factorflow.factors import FactorArrays
from factorflow.models._blend import blend_factors, fit_blend_weights, split_by_mask, validation_mask


def _component(rng: np.random.Generator, n_u: int, n_i: int, k: int) -> FactorArrays:
    f32 = np.float32
    return FactorArrays(rng.normal(0, 0.5, (n_u, k)).astype(f32), rng.normal(0, 0.5, (n_i, k)).astype(f32),
                        rng.normal(0, 0.3, n_u).astype(f32), rng.normal(0, 0.3, n_i).astype(f32),
                        float(rng.uniform(3, 4)))


def test_blended_tables_predict_the_weighted_sum_of_the_components():
    rng = np.random.default_rng(0)
    comps = [_component(rng, 40, 30, k) for k in (5, 3, 8, 2)]
    weights, intercept = [0.45, 0.0, 0.35, 0.2], -0.12
    blend = blend_factors(comps, weights, intercept)
    assert blend.rank == 5 + 8 + 2  # a zero weight adds no columns
    u, i = np.meshgrid(np.arange(40), np.arange(30), indexing="ij")
    u, i = u.ravel(), i.ravel()
    expected = intercept + sum(w * c.predict(u, i) for w, c in zip(weights, comps, strict=True))
    np.testing.assert_allclose(blend.predict(u, i), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(blend.score_users(np.array([3]))[0], expected.reshape(40, 30)[3], atol=1e-5)


def test_negative_weights_and_mismatched_components_are_refused():
    rng = np.random.default_rng(1)
    a, b = _component(rng, 10, 8, 2), _component(rng, 10, 8, 3)
    with pytest.raises(ParameterError, match="≥ 0"):
        blend_factors([a, b], [0.5, -0.1], 0.0)
    with pytest.raises(ParameterError, match="same users and items"):
        blend_factors([a, _component(rng, 11, 8, 2)], [0.5, 0.5], 0.0)
    with pytest.raises(ParameterError, match="2 components and 1 weights"):
        blend_factors([a, b], [1.0], 0.0)


def test_weights_recover_a_planted_non_negative_blend():
    rng = np.random.default_rng(2)
    p = rng.normal(3.5, 1.0, (5000, 3))
    r = 0.3 + p @ np.array([0.5, 0.0, 0.4]) + rng.normal(0, 0.01, 5000)
    a0, a = fit_blend_weights(p, r, reg=0.0)
    np.testing.assert_allclose(a, [0.5, 0.0, 0.4], atol=2e-3)
    assert a0 == pytest.approx(0.3, abs=0.02)


def test_weights_are_the_constrained_ridge_minimiser():
    """Against a bounded quasi-Newton solve of the same objective (intercept free, a ≥ 0)."""
    rng = np.random.default_rng(3)
    truth = rng.normal(3.5, 1.0, 800)
    p = np.column_stack([truth + rng.normal(0, s, 800) for s in (0.6, 0.8, 1.0)])
    p[:, 2] = 7.0 - p[:, 2]  # anti-correlated: its unconstrained weight would be negative
    reg = 25.0

    def objective(x: np.ndarray) -> float:
        e = truth - x[0] - p @ x[1:]
        return float(e @ e + reg * x[1:] @ x[1:])

    a0, a = fit_blend_weights(p, truth, reg=reg)
    ref = minimize(objective, np.r_[0.0, np.full(3, 0.3)], method="L-BFGS-B",
                   bounds=[(None, None)] + [(0, None)] * 3, options={"ftol": 1e-14, "gtol": 1e-10})
    assert a[2] == 0.0 and (a >= 0).all()
    assert objective(np.r_[a0, a]) <= ref.fun + 1e-6 * abs(ref.fun)
    np.testing.assert_allclose(np.r_[a0, a], ref.x, atol=1e-3)


def test_weights_refuse_bad_input():
    with pytest.raises(ParameterError, match="non-finite"):
        fit_blend_weights(np.array([[1.0, np.nan]]), np.array([1.0]))
    with pytest.raises(ParameterError, match="reg"):
        fit_blend_weights(np.ones((3, 2)), np.ones(3), reg=-1)
    with pytest.raises(ParameterError, match=r"need \(n, K\)"):
        fit_blend_weights(np.ones((3, 2)), np.ones(4))


def _ratings(seed: int = 4) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """A random train/test split of a random rating matrix (disjoint pairs)."""
    rng = np.random.default_rng(seed)
    dense = (rng.random((60, 50)) < 0.3) * rng.integers(1, 6, (60, 50))
    dense[7, :] = 0
    dense[7, 3] = 4  # a user with one rating
    test = (rng.random(dense.shape) < 0.2) & (dense > 0)
    test[7, 3] = False
    return sp.csr_matrix(np.where(test, 0, dense).astype(np.float32)), sp.csr_matrix(np.where(test, dense, 0))


def test_validation_slice_is_per_user_stratified_seeded_and_never_the_test_split():
    train, test = _ratings()
    mask = validation_mask(train, 0.1, seed=42)
    fit, (vu, vi, vr) = split_by_mask(train, mask)
    counts = np.diff(train.indptr)
    per_user = np.bincount(vu, minlength=train.shape[0])
    np.testing.assert_array_equal(per_user, [min(round(0.1 * n), n - 1) if n >= 2 else 0 for n in counts])
    assert (np.diff(fit.indptr) >= 1)[counts >= 1].all()  # every user keeps a training rating
    # the slice is part of TRAIN (same ratings) and disjoint from the test split
    np.testing.assert_array_equal(np.asarray(train[vu, vi]).ravel(), vr)
    assert not np.asarray(test[vu, vi]).ravel().any()
    assert fit.nnz + len(vr) == train.nnz and (fit.multiply(sp.csr_matrix((vr, (vu, vi)), shape=train.shape))).nnz == 0
    np.testing.assert_array_equal(validation_mask(train, 0.1, seed=42), mask)
    assert not np.array_equal(validation_mask(train, 0.1, seed=43), mask)
    with pytest.raises(ParameterError, match="fraction"):
        validation_mask(train, 1.0, seed=0)
