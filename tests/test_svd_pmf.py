"""The svd and pmf kinds: SVD is the rank-K truncation of the zero-filled residual matrix, PMF is
ALS with the biases pinned at zero (exact per-row minimizers, objective never increases)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from factorflow.errors import ParameterError
from factorflow.models import registry
from factorflow.models.als import ALS, ALSConfig, objective
from factorflow.models.baselines import BiasBaseline, BiasConfig
from factorflow.models.pmf import PMF, PMFConfig, pmf_objective
from factorflow.models.svd import SVD, SVDConfig

DATA = Path(__file__).parent / "data" / "ml-latest-small" / "ratings.csv"


def ratings(n_users=30, n_items=20, density=0.4, seed=0, empty_user=None) -> sp.csr_matrix:
    """Half-star ratings with user and item effects, ``density`` observed; optionally one user without ratings."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    if empty_user is not None:
        mask[empty_user] = False
    rows, cols = np.nonzero(mask)
    r = 3.5 + rng.normal(0, 0.5, n_users)[rows] + rng.normal(0, 0.5, n_items)[cols] + rng.normal(0, 0.8, len(rows))
    return sp.csr_matrix((np.clip(np.round(r * 2) / 2, 0.5, 5.0), (rows, cols)), shape=(n_users, n_items))


def dense_residual(train: sp.csr_matrix, mu: float, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """X: r − μ − b_i − c_j on the ratings, 0 elsewhere, built densely (independently of svd.residual_matrix)."""
    x = np.zeros(train.shape)
    coo = train.tocoo()
    x[coo.row, coo.col] = coo.data - mu - b[coo.row] - c[coo.col]
    return x


# --- svd ------------------------------------------------------------------------------------------


def test_svd_is_the_best_rank_k_approximation_of_the_zero_filled_residual_matrix():
    train = ratings()
    model = SVD(SVDConfig(rank=4, reg_user=2.0, reg_item=5.0)).fit(train)
    f = model.factors()
    bias = BiasBaseline(BiasConfig(reg_user=2.0, reg_item=5.0)).fit(train).factors()
    np.testing.assert_array_equal(f.user_bias, bias.user_bias)  # the bias baseline's biases are removed
    np.testing.assert_array_equal(f.item_bias, bias.item_bias)
    assert f.global_mean == bias.global_mean == pytest.approx(train.data.mean())

    x = dense_residual(train, bias.global_mean, bias.user_bias.astype(np.float64), bias.item_bias.astype(np.float64))
    p, s, qt = np.linalg.svd(x, full_matrices=False)
    best = (p[:, :4] * s[:4]) @ qt[:4]  # Eckart–Young: the best rank-4 approximation of X
    w, u = f.user_factors.astype(np.float64), f.item_factors.astype(np.float64)
    np.testing.assert_allclose(w @ u.T, best, atol=1e-5)
    np.testing.assert_allclose(model.singular_values, s[:4], rtol=1e-6)
    # Σ split evenly: W = P√Σ, U = Q√Σ, so WᵀW = UᵀU = Σ (orthogonal columns, norms² = σ).
    np.testing.assert_allclose(w.T @ w, np.diag(s[:4]), atol=1e-5)
    np.testing.assert_allclose(u.T @ u, np.diag(s[:4]), atol=1e-5)
    # Prediction = μ + b_i + c_j + w_iᵀu_j, so on an unrated entry it is the bias prediction plus the
    # rank-4 term fitted to a 0 there (the weakness is kept: the zeros count as residual ratings).
    users, items = np.nonzero(train.toarray() == 0)
    np.testing.assert_allclose(f.predict(users, items),
                               bias.predict(users, items) + best[users, items], atol=1e-5)


def test_svd_is_deterministic_for_a_seed_and_its_approximation_does_not_depend_on_it():
    train = ratings(seed=3)
    a = SVD(SVDConfig(rank=5, seed=7)).fit(train).factors()
    b = SVD(SVDConfig(rank=5, seed=7)).fit(train).factors()
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    c = SVD(SVDConfig(rank=5, seed=8)).fit(train).factors()
    np.testing.assert_allclose(a.user_factors.astype(np.float64) @ a.item_factors.T.astype(np.float64),
                               c.user_factors.astype(np.float64) @ c.item_factors.T.astype(np.float64), atol=1e-5)


def test_svd_fold_in_of_a_training_users_row_returns_that_users_factors():
    train = ratings(seed=4)
    model = SVD(SVDConfig(rank=4))
    f = model.fit(train).factors()
    for user in (0, 7, 19):
        row = train.getrow(user)
        w, b = model.fold_in(f, row.indices, row.data)
        assert b == pytest.approx(float(f.user_bias[user]), abs=1e-5)
        np.testing.assert_allclose(w, f.user_factors[user], atol=1e-4)
    w, b = model.fold_in(f, np.array([], dtype=np.int64), np.array([]))
    assert b == 0.0 and not w.any()


def test_svd_rank_must_be_below_the_matrix_size():
    train = ratings(n_users=8, n_items=6)
    with pytest.raises(ParameterError, match=r"^rank=6: must be < min\(n_users, n_items\) = 6"):
        SVD(SVDConfig(rank=6)).fit(train)
    with pytest.raises(ParameterError, match="^rank=0"):
        SVDConfig(rank=0)
    with pytest.raises(ParameterError, match="^reg_user=-1"):
        SVDConfig(reg_user=-1)


# --- pmf ------------------------------------------------------------------------------------------


def row_solves(csr: sp.csr_matrix, other: np.ndarray, mu: float, reg: float) -> np.ndarray:
    """Each row's exact minimizer of Σ_j (r_ij − μ − wᵀu_j)² + λ‖w‖²: (U_ΩᵀU_Ω + λI) w = U_Ωᵀ(r − μ)."""
    out = np.zeros((csr.shape[0], other.shape[1]))
    for i in range(csr.shape[0]):
        cols, r = csr.indices[csr.indptr[i]:csr.indptr[i + 1]], csr.data[csr.indptr[i]:csr.indptr[i + 1]]
        if cols.size:
            u = other[cols]
            out[i] = np.linalg.solve(u.T @ u + reg * np.eye(other.shape[1]), u.T @ (r - mu))
    return out


@pytest.mark.parametrize("center", [True, False])
def test_a_pmf_sweep_is_the_exact_row_minimizer_given_the_other_side(center):
    train = ratings(empty_user=3)
    cfg = PMFConfig(rank=3, reg=1.5, sweeps=2, center=center, dtype="float64", seed=5)
    w, _, u, _ = PMF(cfg).init_sides(*train.shape)
    mu = float(train.data.mean()) if center else 0.0
    by_item = train.T.tocsr()
    for _ in range(cfg.sweeps):
        w = row_solves(train, u, mu, cfg.reg)
        u = row_solves(by_item, w, mu, cfg.reg)
    f = PMF(cfg).fit(train).factors()
    np.testing.assert_allclose(f.user_factors, w, atol=1e-10)
    np.testing.assert_allclose(f.item_factors, u, atol=1e-10)
    assert not f.user_factors[3].any()  # no ratings: zero factors, prediction μ
    assert not f.user_bias.any() and not f.item_bias.any()
    assert f.global_mean == mu


def test_pmf_is_als_with_the_biases_pinned_at_zero():
    """The same init and λ: ALS whose bias penalty is huge (b, c ≈ 0) is PMF centred by μ."""
    train = ratings(seed=2)
    pmf = PMF(PMFConfig(rank=3, reg=2.0, sweeps=4, seed=9, dtype="float64")).fit(train).factors()
    als = ALS(ALSConfig(rank=3, reg=2.0, reg_per_rating=0.0, sweeps=4, seed=9, dtype="float64", reg_bias=1e12)
              ).fit(train).factors()
    assert np.abs(als.user_bias).max() < 1e-9 and np.abs(als.item_bias).max() < 1e-9
    np.testing.assert_allclose(pmf.user_factors, als.user_factors, atol=1e-8)
    np.testing.assert_allclose(pmf.item_factors, als.item_factors, atol=1e-8)
    # and with zero biases the ALS loss (spec §5, reg_bias None) is the PMF loss
    assert objective(train, pmf, 2.0, False) == pytest.approx(pmf_objective(train, pmf, 2.0), rel=1e-12)


@pytest.mark.parametrize("center", [True, False])
def test_pmf_objective_never_increases_and_the_history_reports_it(center):
    train = ratings(n_users=60, n_items=40, seed=6)
    model = PMF(PMFConfig(rank=4, reg=1.0, sweeps=8, center=center))
    seen = []
    model.fit(train, callback=lambda s, f: seen.append(f.global_mean) or {})
    objectives = [h["objective"] for h in model.history]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(objectives[:-1], objectives[1:], strict=True))
    assert objectives[-1] < objectives[0]
    f = model.factors()
    assert objectives[-1] == pytest.approx(pmf_objective(train, f, 1.0), rel=1e-5)
    assert seen == [f.global_mean] * 8  # the callback scores with the model's μ (0 when uncentred)


def test_pmf_fold_in_is_the_exact_minimizer_of_the_users_loss():
    train = ratings(seed=8)
    model = PMF(PMFConfig(rank=3, reg=2.5, sweeps=3))
    f = model.fit(train).factors()
    row = train.getrow(4)
    w, b = model.fold_in(f, row.indices, row.data)
    want = row_solves(row.tocsr(), f.item_factors.astype(np.float64), f.global_mean, 2.5)[0]
    assert b == 0.0
    np.testing.assert_allclose(w, want, atol=1e-5)
    half = model.solve_rows(row.indptr.astype(np.int64), row.indices.astype(np.int32), row.data.astype(np.float32),
                            (f.item_factors, f.item_bias), f.global_mean)
    np.testing.assert_array_equal(w, half[0][0])  # the user half-sweep itself, on one row


def test_pmf_kernel_matches_the_numpy_reference():
    from factorflow.models._solve_nobias import solve_block_nobias, solve_block_nobias_reference

    train = ratings(empty_user=0).astype(np.float32)
    rng = np.random.default_rng(1)
    other, other_bias = rng.normal(size=(20, 4)).astype(np.float32), rng.normal(size=20).astype(np.float32)
    args = (train.indptr.astype(np.int64), train.indices.astype(np.int32), train.data, other, other_bias, 3.2, 0.7)
    f, sse = solve_block_nobias(*args)
    f_ref, sse_ref = solve_block_nobias_reference(*args)
    np.testing.assert_allclose(f, f_ref, atol=1e-5)
    assert sse == pytest.approx(sse_ref, rel=1e-5)
    assert f.dtype == np.float32 and not f[0].any()


def test_pmf_config_is_validated_and_its_options_merge_with_als():
    with pytest.raises(ParameterError, match="^reg=0"):
        PMFConfig(reg=0)
    with pytest.raises(ParameterError, match="^center='yes'"):
        PMFConfig(center="yes")
    with pytest.raises(ParameterError, match="^--rank=0"):
        registry.make_config("pmf", {"rank": 0}, as_options=True)
    assert registry.make_config("pmf", {"seed": 3, "rank": 7}).seed == 3

    from factorflow.models.base import config_options, option_name

    als = {f.name: option_name(f) for f in config_options(ALSConfig)}
    for cls in (PMFConfig, SVDConfig):
        for f in config_options(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
            if f.name in als:
                assert option_name(f) == als[f.name]  # one --rank, --reg, --sweeps, --model-seed


# --- pmf on the Dask block driver -------------------------------------------------------------------


def test_pmf_on_the_dask_block_driver_equals_the_serial_fit(tmp_path):
    """Uncentred, the driver's μ (the partitions' train mean) must not leak into the model."""
    from factorflow.data.ingest import ingest_source
    from factorflow.data.partitions import build_partitions
    from factorflow.data.splits import make_split
    from factorflow.parallel.block_driver import fit_blocks
    from factorflow.parallel.cluster import dask_client
    from factorflow.storage.splits import train_csr

    split = make_split(ingest_source(str(DATA), str(tmp_path), "ml"), "random", test_fraction=0.2, seed=1)
    cfg = PMFConfig(rank=6, reg=8.0, sweeps=2, center=False)
    serial = PMF(cfg).fit(train_csr(split))
    model, seen = PMF(cfg), []
    with dask_client(n_workers=2) as client:
        fit_blocks(client, build_partitions(split, 5), model, callback=lambda s, f: seen.append(f.global_mean) or {})
    assert seen == [0.0, 0.0]  # the per-step callback scores with μ = 0 (PMF.end_step), not the driver's mean
    got, want = model.factors(), serial.factors()
    np.testing.assert_allclose(got.user_factors, want.user_factors, atol=1e-6)
    np.testing.assert_allclose(got.item_factors, want.item_factors, atol=1e-6)
    assert got.global_mean == want.global_mean == 0.0 and not got.user_bias.any()
    np.testing.assert_allclose([h["objective"] for h in model.history], [h["objective"] for h in serial.history],
                               rtol=1e-6)
