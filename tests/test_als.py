"""ALS: the kernel solves the spec's normal equations, matches its NumPy reference, never
raises the loss, recovers a planted low-rank matrix, and does not depend on blocking."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from factorflow.errors import ParameterError
from factorflow.factors import FactorArrays
from factorflow.models._solve import solve_block, solve_block_reference
from factorflow.models.als import (
    ALS,
    ALSConfig,
    half_sweep,
    init_factors,
    objective,
    train_csr_parts,
)
from factorflow.models.base import FactorModel


def random_csr(n_rows: int, n_cols: int, density: float, seed: int, empty_rows=(), empty_cols=()):
    rng = np.random.default_rng(seed)
    mask = rng.random((n_rows, n_cols)) < density
    mask[list(empty_rows), :] = False
    mask[:, list(empty_cols)] = False
    vals = rng.integers(1, 11, size=(n_rows, n_cols)) / 2.0
    return sp.csr_matrix(np.where(mask, vals, 0.0).astype(np.float32))


def block_args(csr: sp.csr_matrix):
    return csr.indptr.astype(np.int64), csr.indices.astype(np.int32), csr.data.astype(np.float32)


@pytest.mark.parametrize("weighted", [False, True])
def test_user_update_solves_the_spec_normal_equations(weighted):
    rng = np.random.default_rng(0)
    train = random_csr(5, 7, 0.6, seed=1, empty_rows=[3])
    k, reg, mu = 3, 0.7, 3.1
    u = rng.standard_normal((7, k)).astype(np.float32)
    c = rng.standard_normal(7).astype(np.float32) * 0.3
    w, b, _ = solve_block(*block_args(train), u, c, mu, reg, weighted)
    dense = train.toarray()
    for i in range(5):
        js = np.flatnonzero(dense[i])
        if js.size == 0:
            assert not w[i].any() and b[i] == 0.0
            continue
        lam = reg * js.size if weighted else reg
        a = np.zeros((k + 1, k + 1))
        rhs = np.zeros(k + 1)
        for j in js:
            ut = np.append(u[j].astype(np.float64), 1.0)
            a += np.outer(ut, ut)
            rhs += (dense[i, j] - c[j] - mu) * ut
        a += lam * np.eye(k + 1)
        x = np.linalg.solve(a, rhs)
        np.testing.assert_allclose(w[i], x[:k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b[i], x[k], rtol=1e-5, atol=1e-6)
        # The joint solution satisfies both of spec §5's conditional updates at once.
        uj = u[js].astype(np.float64)
        r = dense[i, js].astype(np.float64)
        w_spec = np.linalg.solve(uj.T @ uj + lam * np.eye(k), uj.T @ (r - b[i] - c[js] - mu))
        b_spec = np.sum(r - uj @ w[i] - c[js] - mu) / (js.size + lam)
        np.testing.assert_allclose(w[i], w_spec, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(b[i], b_spec, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("weighted,reg_bias", [(False, None), (True, None), (True, 2.5)])
@pytest.mark.parametrize("k", [1, 5])
def test_numba_kernel_matches_numpy_reference(weighted, reg_bias, k):
    train = random_csr(40, 30, 0.3, seed=k, empty_rows=[0, 17, 39], empty_cols=[5])
    rng = np.random.default_rng(k)
    other = rng.standard_normal((30, k)).astype(np.float32)
    other_bias = rng.standard_normal(30).astype(np.float32)
    f, b, sse = solve_block(*block_args(train), other, other_bias, 3.5, 0.3, weighted, reg_bias)
    f_ref, b_ref, sse_ref = solve_block_reference(*block_args(train), other, other_bias, 3.5, 0.3,
                                                  weighted, reg_bias)
    assert f.dtype == np.float32 and b.dtype == np.float32 and f.shape == (40, k)
    np.testing.assert_allclose(f, f_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b, b_ref, rtol=1e-5, atol=1e-5)
    assert sse == pytest.approx(sse_ref, rel=1e-5)
    assert not f[[0, 17, 39]].any() and not b[[0, 17, 39]].any()
    # sse is the block's squared error after the update.
    coo = train.tocoo()
    pred = (np.einsum("ij,ij->i", f[coo.row].astype(np.float64), other[coo.col].astype(np.float64))
            + b[coo.row] + other_bias[coo.col] + 3.5)
    assert sse == pytest.approx(float(np.sum((coo.data - pred) ** 2)), rel=1e-6)


@pytest.mark.parametrize("k", [2, 13, 64])
def test_fast_kernel_long_rows_threads_and_read_only_inputs_match_the_reference(k):
    """Rows longer than the float32 run (FLUSH), rows either side of the dual-form threshold,
    ranks off the SIMD width, 1 vs 2 threads and read-only inputs (a block read from bytes) all
    give the NumPy reference's solution; a zero bias penalty takes the primal solve."""
    from factorflow.models._solve import FLUSH, dual_below

    rng = np.random.default_rng(k)
    cut = dual_below(k)
    assert 1 <= cut <= k + 1
    lengths = np.array([0, 1, 3, 4, 5, 8, 9, cut - 1, cut, cut + 1, FLUSH - 1, FLUSH, FLUSH + 1, 3 * FLUSH + 7, 2000])
    n_other = 2500
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = np.concatenate([np.sort(rng.choice(n_other, n, replace=False)) for n in lengths]).astype(np.int32)
    data = (rng.integers(1, 11, size=indices.size) / 2.0).astype(np.float32)
    other = (rng.standard_normal((n_other, k)) * 0.4).astype(np.float32)
    ob = (rng.standard_normal(n_other) * 0.2).astype(np.float32)
    for weighted, reg, rb, rpr in ((False, 12.0, 3.0, 0.0), (True, 0.05, None, 0.0), (False, 6.0, 3.0, 0.05),
                                   (False, 6.0, 0.0, 0.02)):
        ref = solve_block_reference(indptr, indices, data, other, ob, 3.5, reg, weighted, rb, reg_per_rating=rpr)
        runs = [solve_block(indptr, indices, data, other, ob, 3.5, reg, weighted, rb, threads=t, reg_per_rating=rpr)
                for t in (1, 2)]
        frozen = [a.copy() for a in (indptr, indices, data, other, ob)]
        for a in frozen:
            a.flags.writeable = False
        runs.append(solve_block(*frozen, 3.5, reg, weighted, rb, reg_per_rating=rpr))
        for f, b, sse in runs:
            np.testing.assert_allclose(f, ref[0], rtol=2e-5, atol=2e-6)
            np.testing.assert_allclose(b, ref[1], rtol=2e-5, atol=2e-6)
            assert sse == pytest.approx(ref[2], rel=1e-6)
        assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][0], runs[2][0])


def test_blocking_does_not_change_the_result():
    train = random_csr(50, 20, 0.4, seed=3, empty_rows=[10])
    rng = np.random.default_rng(3)
    other = rng.standard_normal((20, 4)).astype(np.float32)
    ob = rng.standard_normal(20).astype(np.float32)
    whole = solve_block(*block_args(train), other, ob, 3.0, 0.2, True)
    parts = [solve_block(*block_args(train[lo:hi]), other, ob, 3.0, 0.2, True)
             for lo, hi in ((0, 11), (11, 30), (30, 50))]
    assert np.array_equal(whole[0], np.vstack([p[0] for p in parts]))
    assert np.array_equal(whole[1], np.concatenate([p[1] for p in parts]))
    assert whole[2] == pytest.approx(sum(p[2] for p in parts), rel=1e-12)
    again = solve_block(*block_args(train), other, ob, 3.0, 0.2, True)
    assert np.array_equal(whole[0], again[0]) and np.array_equal(whole[1], again[1])


@pytest.mark.parametrize("weighted,reg,rb", [(False, 2.0, None), (True, 0.1, None), (False, 2.0, 0.5)])
def test_objective_never_increases_between_half_sweeps(weighted, reg, rb):
    train = random_csr(60, 45, 0.25, seed=7, empty_rows=[2], empty_cols=[9])
    by_user, by_item, mu = train_csr_parts(train)
    cfg = ALSConfig(rank=4, reg=reg, weighted=weighted, seed=1, init_scale=0.5)
    w, b, u, c = init_factors(cfg, 60, 45)
    values = [objective(train, FactorArrays(w, u, b, c, mu), reg, weighted, rb)]
    for _ in range(5):
        w, b, _ = half_sweep(by_user, u, c, mu, reg, weighted, rb)
        values.append(objective(train, FactorArrays(w, u, b, c, mu), reg, weighted, rb))
        u, c, _ = half_sweep(by_item, w, b, mu, reg, weighted, rb)
        values.append(objective(train, FactorArrays(w, u, b, c, mu), reg, weighted, rb))
    diffs = np.diff(values)
    assert np.all(diffs <= 1e-6 * np.abs(values[:-1])), values
    assert values[-1] < 0.5 * values[0]


def test_fit_history_matches_objective_and_callback_is_merged():
    train = random_csr(30, 25, 0.3, seed=5)
    seen = []

    def cb(sweep, factors):
        seen.append(sweep)
        return {"test_rmse": float(sweep)}

    model = ALS(ALSConfig(rank=3, reg=0.2, sweeps=4, weighted=True)).fit(train, callback=cb)
    assert isinstance(model, FactorModel) and model.kind == "als"
    assert seen == [1, 2, 3, 4]
    assert [h["sweep"] for h in model.history] == [1, 2, 3, 4]
    last = model.history[-1]
    assert last["test_rmse"] == 4.0 and last["seconds"] >= 0
    fa = model.factors()
    assert last["objective"] == pytest.approx(objective(train, fa, 0.2, True, model.config.reg_bias), rel=1e-6)
    coo = train.tocoo()
    rmse = np.sqrt(np.mean((coo.data - fa.predict(coo.row, coo.col)) ** 2))
    assert last["train_rmse"] == pytest.approx(rmse, rel=1e-5)
    objs = [h["objective"] for h in model.history]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(objs[:-1], objs[1:], strict=True))
    assert model.params()["rank"] == 3


def test_planted_low_rank_matrix_is_recovered_to_the_noise_floor():
    rng = np.random.default_rng(11)
    n_u, n_i, k, sigma = 300, 200, 3, 0.1
    w = rng.standard_normal((n_u, k)) / np.sqrt(k)
    u = rng.standard_normal((n_i, k))
    b, c = 0.3 * rng.standard_normal(n_u), 0.3 * rng.standard_normal(n_i)
    full = w @ u.T + b[:, None] + c[None, :] + 3.0
    noisy = full + sigma * rng.standard_normal(full.shape)
    observed = rng.random(full.shape) < 0.4
    held = observed & (rng.random(full.shape) < 0.1)
    train_mask = observed & ~held
    rows, cols = np.nonzero(train_mask)
    train = sp.csr_matrix((noisy[rows, cols].astype(np.float32), (rows, cols)), shape=(n_u, n_i))
    model = ALS(ALSConfig(rank=k, reg=0.05, reg_per_rating=0.0, sweeps=20, weighted=False, seed=0)).fit(train)
    fa = model.factors()
    train_rmse = model.history[-1]["train_rmse"]
    hr, hc = np.nonzero(held)
    held_rmse = np.sqrt(np.mean((noisy[hr, hc] - fa.predict(hr, hc)) ** 2))
    clean_rmse = np.sqrt(np.mean((full[hr, hc] - fa.predict(hr, hc)) ** 2))
    # Fitting 4 free values per row against ~70 ratings leaves train RMSE just under σ;
    # held-out error is σ plus a small estimation error.
    assert 0.85 * sigma < train_rmse < 1.02 * sigma
    assert held_rmse < 1.15 * sigma
    assert clean_rmse < 0.5 * sigma


def test_same_seed_same_factors_and_seed_matters():
    train = random_csr(40, 30, 0.3, seed=2)
    a = ALS(ALSConfig(rank=4, sweeps=3, seed=9)).fit(train).factors()
    b = ALS(ALSConfig(rank=4, sweeps=3, seed=9)).fit(train).factors()
    c = ALS(ALSConfig(rank=4, sweeps=3, seed=10)).fit(train).factors()
    assert np.array_equal(a.user_factors, b.user_factors)
    assert np.array_equal(a.item_bias, b.item_bias)
    assert not np.array_equal(a.item_factors, c.item_factors)
    w1, _, u1, _ = init_factors(ALSConfig(rank=4, seed=9), 40, 30)
    w2, _, u2, _ = init_factors(ALSConfig(rank=4, seed=9), 40, 30)
    assert np.array_equal(w1, w2) and np.array_equal(u1, u2) and w1.dtype == np.float32


def test_users_and_items_without_ratings_keep_zero_factors_and_bias():
    train = random_csr(20, 15, 0.5, seed=4, empty_rows=[0, 19], empty_cols=[7])
    fa = ALS(ALSConfig(rank=3, sweeps=3)).fit(train).factors()
    assert fa.n_users == 20 and fa.n_items == 15
    assert not fa.user_factors[[0, 19]].any() and not fa.user_bias[[0, 19]].any()
    assert not fa.item_factors[7].any() and fa.item_bias[7] == 0.0
    pred = fa.predict(np.array([0, 3]), np.array([2, 7]))
    assert pred[0] == pytest.approx(fa.global_mean + fa.item_bias[2], rel=1e-6)
    assert pred[1] == pytest.approx(fa.global_mean + fa.user_bias[3], rel=1e-6)


def test_float64_dtype_is_honoured():
    train = random_csr(20, 15, 0.5, seed=4)
    fa = ALS(ALSConfig(rank=2, sweeps=2, dtype="float64")).fit(train).factors()
    assert fa.user_factors.dtype == np.float64 and fa.item_bias.dtype == np.float64


@pytest.mark.parametrize("field,value", [
    ("rank", 0), ("rank", 2.5), ("reg", -0.1), ("reg", float("nan")), ("sweeps", 0),
    ("weighted", "yes"), ("seed", -1), ("init_scale", 0.0), ("dtype", "int8"), ("reg_bias", -1.0),
])
def test_config_validation_names_the_parameter(field, value):
    with pytest.raises(ParameterError, match=rf"^{field}="):
        ALSConfig(**{field: value})


def test_defaults_on_ml_latest_small_beat_the_bias_baseline(ml_small_split):
    from factorflow.evaluation.metrics import rating_metrics
    from factorflow.models.baselines import BiasBaseline

    train, tu, ti, tr = ml_small_split
    als = rating_metrics(ALS().fit(train).factors(), tu, ti, tr)
    bias = rating_metrics(BiasBaseline().fit(train).factors(), tu, ti, tr)
    assert 0.84 < als["rmse"] < 0.855  # measured 0.8466 (seed 0; mean of seeds 0-2: 0.8438)
    assert als["rmse"] < bias["rmse"] - 0.01


def test_cg_solver_is_exact_with_enough_steps_and_never_raises_the_loss():
    """CG from any start: K+1 steps solve the row system (= the NumPy reference); 2 steps
    give a row loss no higher than the start's, and an ALS fit with solver='cg' descends."""
    from factorflow.models._solve import solve_block_cg

    k = 6
    train = random_csr(40, 35, 0.3, seed=11, empty_rows=[4])
    rng = np.random.default_rng(11)
    other = rng.standard_normal((35, k)).astype(np.float32)
    ob = (rng.standard_normal(35) * 0.3).astype(np.float32)
    x0 = (rng.standard_normal((40, k)) * 0.5).astype(np.float32)
    b0 = (rng.standard_normal(40) * 0.5).astype(np.float32)
    args = (*block_args(train), other, ob, 3.5, 0.8, False, 2.0)
    ref = solve_block_reference(*args)
    f, b, sse = solve_block_cg(*args, x0, b0, steps=3 * (k + 1))
    np.testing.assert_allclose(f, ref[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b, ref[1], rtol=1e-4, atol=1e-4)
    assert sse == pytest.approx(ref[2], rel=1e-4)

    def row_losses(f, b):
        coo = train.tocoo()
        pred = np.einsum("ij,ij->i", f[coo.row], other[coo.col]) + b[coo.row] + ob[coo.col] + 3.5
        data = np.bincount(coo.row, (coo.data - pred) ** 2, minlength=40)
        return data + 0.8 * (f.astype(np.float64) ** 2).sum(axis=1) + 2.0 * b.astype(np.float64) ** 2

    rows = np.diff(train.indptr) > 0
    start_loss = row_losses(x0, b0)
    f2, b2, _ = solve_block_cg(*args, x0, b0, steps=2)
    assert np.all(row_losses(f2, b2)[rows] <= start_loss[rows] + 1e-6)
    assert np.all(row_losses(f2, b2)[rows] >= row_losses(ref[0], ref[1])[rows] - 1e-6)

    full = random_csr(60, 45, 0.25, seed=7)
    hist = ALS(ALSConfig(rank=4, reg=2.0, sweeps=6, solver="cg", cg_steps=2, seed=1)).fit(full).history
    objs = [h["objective"] for h in hist]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(objs, objs[1:], strict=False))
    exact = ALS(ALSConfig(rank=4, reg=2.0, sweeps=6, seed=1)).fit(full).history[-1]["objective"]
    assert objs[-1] == pytest.approx(exact, rel=0.05)


def test_prefetched_gram_on_a_table_beyond_l2_matches_the_reference():
    """Other-side tables above PREFETCH_ABOVE_BYTES take the prefetching Gram loop: same answer."""
    from factorflow.models._solve import PREFETCH_ABOVE_BYTES

    k = 16
    n_other = PREFETCH_ABOVE_BYTES // (4 * k) + 1000
    rng = np.random.default_rng(5)
    lengths = np.array([3, 40, 300, 7])
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = np.concatenate([np.sort(rng.choice(n_other, n, replace=False)) for n in lengths]).astype(np.int32)
    data = (rng.integers(1, 11, size=indices.size) / 2.0).astype(np.float32)
    other = (rng.standard_normal((n_other, k)) * 0.4).astype(np.float32)
    ob = (rng.standard_normal(n_other) * 0.2).astype(np.float32)
    assert other.nbytes > PREFETCH_ABOVE_BYTES
    f, b, sse = solve_block(indptr, indices, data, other, ob, 3.5, 6.0, False, 3.0, reg_per_rating=0.02)
    ref = solve_block_reference(indptr, indices, data, other, ob, 3.5, 6.0, False, 3.0, reg_per_rating=0.02)
    np.testing.assert_allclose(f, ref[0], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(b, ref[1], rtol=2e-5, atol=2e-6)
    assert sse == pytest.approx(ref[2], rel=1e-6)
