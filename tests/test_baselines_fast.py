"""The compiled bias-baseline fit equals its plain NumPy form (``np.bincount`` sweeps over the COO)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from factorflow.models.baselines import BiasBaseline, GlobalMean


def bincount_fit(train, reg_user, reg_item, iterations):
    """The NumPy fit as it was: alternating exact updates, items first, from b = 0."""
    coo = sp.coo_matrix(train)
    n_u, n_i = coo.shape
    r = coo.data.astype(np.float64)
    mu = float(r.mean()) if r.size else 0.0
    n_user, n_item = np.bincount(coo.row, minlength=n_u), np.bincount(coo.col, minlength=n_i)
    b, c = np.zeros(n_u), np.zeros(n_i)
    for _ in range(iterations):
        c = np.bincount(coo.col, r - mu - b[coo.row], minlength=n_i) / np.maximum(n_item + reg_item, 1e-12)
        b = np.bincount(coo.row, r - mu - c[coo.col], minlength=n_u) / np.maximum(n_user + reg_user, 1e-12)
    return b, c, mu


@pytest.mark.parametrize(("reg_user", "reg_item", "iterations"), [(3.0, 3.0, 10), (0.0, 0.0, 3), (1.5, 25.0, 1)])
def test_compiled_bias_fit_equals_the_bincount_sweeps(reg_user, reg_item, iterations):
    rng = np.random.default_rng(0)
    m = sp.random(300, 170, density=0.08, format="csr", random_state=1, dtype=np.float32)
    m.data[:] = rng.integers(1, 11, m.nnz) / 2
    m = sp.vstack([m, sp.csr_matrix((5, 170), dtype=np.float32)]).tocsr()  # users with no ratings
    b, c, mu = bincount_fit(m, reg_user, reg_item, iterations)
    f = BiasBaseline(reg_user=reg_user, reg_item=reg_item, iterations=iterations).fit(m).factors()
    assert f.global_mean == pytest.approx(mu, rel=1e-15)
    np.testing.assert_allclose(f.user_bias, b.astype(np.float32), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(f.item_bias, c.astype(np.float32), rtol=1e-6, atol=1e-7)
    # the float64 sums before the float32 tables: the same to 1e-12
    from factorflow.models._bias_fit import bias_sweeps

    b64, c64 = bias_sweeps(m.indptr.astype(np.int64), m.indices, m.data, 170, mu, reg_user, reg_item, iterations)
    np.testing.assert_allclose(b64, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c64, c, rtol=1e-12, atol=1e-14)
    assert (b64[-5:] == 0).all() and GlobalMean().fit(m).factors().global_mean == f.global_mean


def test_bias_fit_of_an_empty_matrix_is_all_zero():
    f = BiasBaseline().fit(sp.csr_matrix((4, 3), dtype=np.float32)).factors()
    assert f.global_mean == 0.0 and not f.user_bias.any() and not f.item_bias.any()
