"""BPMF: the Gibbs conditional is the closed-form Gaussian, the Normal–Wishart step recovers its
prior, draws do not depend on blocking or workers, and the published tables are the sample mean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from factorflow.models._bpmf import sample_block, standard_normals, stream_key
from factorflow.models.bpmf import BPMF, BPMFConfig, kept_steps, sample_hyper, sample_predictions

DATA = Path(__file__).parent / "data" / "ml-latest-small" / "ratings.csv"
QUICK = BPMFConfig(rank=4, init_sweeps=2, burn_in=2, samples=6, seed=3)


def test_counter_based_normals_are_standard_normal():
    z = standard_normals(stream_key(1, 2, 0), np.int64(0), 100_000)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 4 / np.sqrt(len(z)) and abs(z.std() - 1) < 0.01
    other = standard_normals(stream_key(1, 2, 1), np.int64(0), 100_000)  # another side's stream
    assert abs(np.corrcoef(z, other)[0, 1]) < 4 / np.sqrt(len(z))
    np.testing.assert_array_equal(standard_normals(stream_key(1, 2, 0), np.int64(500), 10), z[500:510])


def test_one_rows_draws_match_its_closed_form_gaussian():
    """N identical rows (the same ratings of the same fixed items) are N independent draws of the
    conditional N(Λ*⁻¹(α Σ ũ(r − c − μ) + Λm), Λ*⁻¹); their mean and covariance match it within
    Monte-Carlo error (5 standard errors)."""
    rng = np.random.default_rng(0)
    k, n = 3, 40_000
    d = k + 1
    u = rng.normal(size=(25, k))
    c = rng.normal(size=25)
    items = np.array([1, 4, 7, 9, 12, 20])
    r = np.round(rng.normal(3.5, 1, size=len(items)) * 2) / 2
    mu, alpha = 3.5, 2.0
    m = rng.normal(size=d) * 0.2
    a = rng.normal(size=(d, d))
    lam = a @ a.T / d + np.eye(d)
    y = np.c_[u[items], np.ones(len(items))]
    prec = lam + alpha * y.T @ y
    cov = np.linalg.inv(prec)
    mean = cov @ (alpha * y.T @ (r - c[items] - mu) + lam @ m)

    indptr = np.arange(n + 1, dtype=np.int64) * len(items)
    f, b, _, mf, mb = sample_block(indptr, np.tile(items, n).astype(np.int32), np.tile(r, n).astype(np.float32),
                                   u, c, mu, alpha, m, lam, stream_key(9, 30, 0), np.int64(0), True)
    np.testing.assert_allclose(np.c_[mf, mb], np.tile(mean, (n, 1)), atol=1e-9)  # the conditional mean itself
    x = np.c_[f, b]
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(x.mean(axis=0) - mean) < 5 * sd / np.sqrt(n))
    cov_se = np.sqrt((np.outer(sd, sd) ** 2 + cov ** 2) / n)  # std error of a sample covariance entry
    assert np.all(np.abs(np.cov(x.T) - cov) < 5 * cov_se)


def test_normal_wishart_step_recovers_its_prior_without_data():
    """With no rows the draw is from the prior: E[Λ] = ν₀W₀, E[m] = μ₀ = 0 and, with ν₀ > D+1,
    Cov(m) = E[(β₀Λ)⁻¹] = W₀⁻¹ / (β₀(ν₀ − D − 1)) (ν₀ = 12 keeps the inverse-Wishart variance finite)."""
    cfg = BPMFConfig(rank=2, w0=0.5, nu0=12.0, beta0=2.0)
    rng = np.random.default_rng(1)
    n = 4000
    draws = [sample_hyper(np.zeros((0, cfg.dims)), cfg, rng) for _ in range(n)]
    lams = np.array([lam for _, lam in draws])
    ms = np.array([m for m, _ in draws])
    se_lam = np.sqrt(12.0 * 0.5**2 * (1 + np.eye(3)) / n)  # Var(Λ_ab) = ν(w_ab² + w_aa w_bb)
    assert np.all(np.abs(lams.mean(axis=0) - 12.0 * 0.5 * np.eye(3)) < 5 * se_lam)
    want = np.eye(3) / 0.5 / (2.0 * (12.0 - 3 - 1))
    assert np.all(np.abs(ms.mean(axis=0)) < 5 * np.sqrt(np.diag(want) / n))
    np.testing.assert_allclose(np.cov(ms.T), want, atol=0.15 * want[0, 0])


def test_normal_wishart_step_learns_the_rows_distribution():
    rng = np.random.default_rng(2)
    true_m = np.array([0.5, -0.3, 1.0])
    true_cov = np.array([[0.5, 0.1, 0.0], [0.1, 0.3, 0.05], [0.0, 0.05, 0.2]])
    x = rng.multivariate_normal(true_m, true_cov, size=20_000)
    m, lam = sample_hyper(x, BPMFConfig(rank=2), np.random.default_rng(3))
    np.testing.assert_allclose(m, true_m, atol=0.03)
    np.testing.assert_allclose(np.linalg.inv(lam), true_cov, atol=0.03)


def _train(seed=0, n_users=80, n_items=60, density=0.3):
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    r = np.clip(np.round((3.5 + rng.normal(0, 1, mask.shape)) * 2) / 2, 0.5, 5.0)
    return sp.csr_matrix(np.where(mask, r, 0.0))


def test_draws_do_not_depend_on_the_blocking():
    train = _train()
    model = BPMF(QUICK)
    w, b, u, c = model.init_sides(*train.shape)
    ctx = model.half_step_context(QUICK.init_sweeps + 1, "user", (w, b), (u, c))
    m = sp.csr_matrix(train, dtype=np.float32)
    whole = model.solve_rows(m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data, (u, c), 3.5, ctx, 0)
    parts = [model.solve_rows(m[lo:hi].indptr.astype(np.int64), m[lo:hi].indices.astype(np.int32), m[lo:hi].data,
                              (u, c), 3.5, ctx, lo) for lo, hi in ((0, 13), (13, 50), (50, 80))]
    np.testing.assert_array_equal(whole[0], np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(whole[1], np.concatenate([p[1] for p in parts]))


def test_published_tables_are_the_mean_of_the_kept_samples():
    train = _train(seed=4)
    model = BPMF(QUICK).fit(train)
    kept = model._kept
    assert len(kept) == len(kept_steps(QUICK)) == QUICK.samples  # thin 1: every sample kept
    f = model.factors()
    assert f.rank == QUICK.rank * len(kept)
    users, items = np.nonzero(train.toarray() >= 0)
    by_sample = np.array([np.einsum("pk,pk->p", w[users].astype(np.float64), u[items].astype(np.float64))
                          + b[users] + c[items] + f.global_mean for w, b, u, c in kept])
    np.testing.assert_allclose(f.predict(users, items), by_sample.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(sample_predictions(f, QUICK.rank, users, items).mean(axis=0),
                               by_sample.mean(axis=0), atol=1e-5)


def test_thinning_keeps_at_most_max_kept_samples_ending_at_the_last_sweep():
    cfg = BPMFConfig(samples=200, burn_in=20, init_sweeps=5)
    steps = kept_steps(cfg)
    assert cfg.effective_thin() == 13 and steps == list(range(225 - 14 * 13, 226, 13)) and len(steps) == 15
    assert kept_steps(BPMFConfig(samples=10, thin=3, init_sweeps=0, burn_in=0)) == [4, 7, 10]
    assert kept_steps(BPMFConfig(samples=100, thin=1, max_kept=16, init_sweeps=1, burn_in=2)) == list(range(88, 104))


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    from factorflow.data.ingest import ingest_source
    from factorflow.data.splits import make_split

    store = str(tmp_path_factory.mktemp("store"))
    return make_split(ingest_source(str(DATA), store, "ml"), "random", test_fraction=0.2, seed=7)


@pytest.mark.parametrize("n_workers,n_blocks", [(1, 4), (2, 7)])
def test_dask_draws_equal_the_serial_ones(split, n_workers, n_blocks):
    from factorflow.data.partitions import build_partitions
    from factorflow.parallel.block_driver import fit_blocks
    from factorflow.parallel.cluster import dask_client
    from factorflow.storage.splits import train_csr

    serial = BPMF(QUICK).fit(train_csr(split)).factors()
    with dask_client(n_workers=n_workers) as client:
        factors, history = fit_blocks(client, build_partitions(split, n_blocks), BPMF(QUICK))
    assert [h["phase"] for h in history] == ["als"] * 2 + ["burn-in"] * 2 + ["sample"] * 6
    for attr in ("user_factors", "item_factors", "user_bias", "item_bias"):
        np.testing.assert_allclose(getattr(factors, attr), getattr(serial, attr), atol=1e-6, err_msg=attr)


def test_recommend_uncertainty_is_the_spread_over_the_kept_samples(tmp_path, capsys):
    import json

    import pyarrow as pa

    from factorflow.cli import main
    from factorflow.models.als import ALS, ALSConfig
    from factorflow.storage import registry as published

    train = _train(seed=5)
    model = BPMF(QUICK).fit(train)
    f = model.factors()
    store = str(tmp_path / "store")
    ids = dict(user_ids=pa.array(np.arange(train.shape[0]) + 1), item_ids=pa.array(np.arange(train.shape[1]) + 1))
    published.publish(store, "b", f, model_json={"kind": "bpmf", "params": model.params(),
                                                 "rating_range": [0.5, 5.0]}, seen=train, **ids)
    assert main(["recommend", "--model", "b", "--user", "3", "-n", "4", "--uncertainty", "--json",
                 "--min-ratings", "0", "--store", store]) == 0
    rows = json.loads(capsys.readouterr().out)
    items = np.array([r["item"] for r in rows]) - 1
    per_sample = np.array([w[2].astype(np.float64) @ u[items].T.astype(np.float64) for w, _, u, _ in model._kept])
    np.testing.assert_allclose([r["std"] for r in rows], per_sample.std(axis=0), atol=1e-5)
    assert all(r["std"] > 0 for r in rows)

    als = ALS(ALSConfig(rank=2, sweeps=2)).fit(train)
    published.publish(store, "a", als.factors(), model_json={"kind": "als", "params": als.params()}, seen=train,
                      **ids)
    assert main(["recommend", "--model", "a", "--user", "3", "--uncertainty", "--store", store]) == 2
    assert "--uncertainty: model a (version" in capsys.readouterr().err


def test_the_fit_reports_its_kept_samples_for_model_json(split):
    from factorflow.pipeline.publish import model_json
    from factorflow.pipeline.train import train_model
    from factorflow.storage.datasets import SnapshotRef
    from factorflow.storage.runs import RunRef

    result = train_model(QUICK, split)
    assert result.fit["kept_samples"] == QUICK.samples and result.fit["thin"] == 1
    assert result.factors.rank == result.fit["published_rank"] == QUICK.samples * QUICK.rank
    run = RunRef("r", "r").trained(result.kind, result.params, 0, fit=result.fit)
    snap = SnapshotRef("s", "ml", "x", "p", {})
    body = model_json(run, result.factors, result.history, {"test": {}}, snap, split, None, (0.5, 5.0), [])
    assert body["fit"]["kept_sweeps"] == kept_steps(QUICK) and body["params"]["samples"] == QUICK.samples
    als = RunRef("r", "r").trained("als", {}, 0)
    assert "fit" not in model_json(als, result.factors, [], {"test": {}}, snap, split, None, (0.5, 5.0), [])


def test_thin_beyond_the_samples_is_refused_and_one_sample_is_always_kept():
    from factorflow.errors import ParameterError

    with pytest.raises(ParameterError, match=r"^thin=500: must be at most samples \(200\)"):
        BPMFConfig(thin=500)
    assert kept_steps(BPMFConfig(samples=5, thin=5, init_sweeps=1, burn_in=1)) == [7]
