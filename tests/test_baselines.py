"""Baselines: global mean and regularized user+item biases."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from factorflow.errors import ParameterError
from factorflow.evaluation.metrics import rating_metrics
from factorflow.models.base import FactorModel
from factorflow.models.baselines import BiasBaseline, GlobalMean


def small_train() -> sp.csr_matrix:
    # users × items; user 2 and item 3 have no ratings.
    dense = np.array([[5, 3, 0, 0], [4, 0, 1, 0], [0, 0, 0, 0], [0, 2, 2, 0]], np.float32)
    return sp.csr_matrix(dense)


def test_global_mean_predicts_the_train_mean():
    model = GlobalMean().fit(small_train())
    fa = model.factors()
    assert isinstance(model, FactorModel) and model.kind == "global-mean"
    assert fa.user_factors.shape == (4, 0) and fa.item_factors.shape == (4, 0)
    assert fa.global_mean == pytest.approx(17 / 6)
    assert np.allclose(fa.predict(np.array([0, 2]), np.array([3, 1])), 17 / 6)


def test_bias_first_item_step_is_the_damped_item_mean():
    train = small_train()
    fa = BiasBaseline(reg_user=1e6, reg_item=2.0, iterations=1).fit(train).factors()
    mu = 17 / 6
    # item 0 has ratings 5 and 4: c_0 = (5 + 4 - 2μ) / (2 + 2)
    assert fa.item_bias[0] == pytest.approx((9 - 2 * mu) / 4, rel=1e-6)
    assert fa.item_bias[3] == 0.0 and fa.user_bias[2] == 0.0
    assert np.abs(fa.user_bias).max() < 1e-5  # λ_u huge: user biases shrink to ~0


def test_bias_converges_to_the_exact_regularized_minimizer():
    rng = np.random.default_rng(0)
    dense = np.where(rng.random((15, 12)) < 0.4, rng.integers(1, 6, (15, 12)), 0).astype(np.float32)
    train = sp.csr_matrix(dense)
    lu, li = 3.0, 7.0
    model = BiasBaseline(reg_user=lu, reg_item=li, iterations=500).fit(train)
    fa = model.factors()
    coo = train.tocoo()
    mu = coo.data.mean()
    # Ridge least squares on one-hot user/item columns: [X; sqrt(Λ)] θ = [r − μ; 0]
    x = np.zeros((coo.nnz, 27))
    x[np.arange(coo.nnz), coo.row] = 1
    x[np.arange(coo.nnz), 15 + coo.col] = 1
    pen = np.diag(np.sqrt(np.r_[np.full(15, lu), np.full(12, li)]))
    theta = np.linalg.lstsq(np.vstack([x, pen]), np.r_[coo.data - mu, np.zeros(27)], rcond=None)[0]
    np.testing.assert_allclose(fa.user_bias, theta[:15], atol=1e-5)
    np.testing.assert_allclose(fa.item_bias, theta[15:], atol=1e-5)
    assert model.kind == "bias" and model.params()["reg_item"] == 7.0


def test_bias_baseline_on_ml_latest_small_beats_the_global_mean(ml_small_split):
    train, tu, ti, tr = ml_small_split
    bias = rating_metrics(BiasBaseline().fit(train).factors(), tu, ti, tr)
    mean = rating_metrics(GlobalMean().fit(train).factors(), tu, ti, tr)
    assert 1.03 < mean["rmse"] < 1.06
    assert 0.855 < bias["rmse"] < 0.875  # measured 0.8645 (seed 0; mean of seeds 0-2: 0.8617)


@pytest.mark.parametrize("kwargs", [{"reg_user": -1.0}, {"reg_item": float("inf")},
                                    {"iterations": 0}])
def test_bias_parameters_are_validated(kwargs):
    with pytest.raises(ParameterError, match=rf"^{next(iter(kwargs))}="):
        BiasBaseline(**kwargs)
