"""keras-mf (factorflow.models.keras_mf): trains on TensorFlow and on JAX, beats the bias baseline,
exports tables that predict what the Keras model predicts, and keeps its best epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp

from factorflow.models.baselines import BiasBaseline
from factorflow.models.keras_mf import KerasMF, KerasMFConfig, _triples

N_USERS, N_ITEMS, RANK = 200, 150, 3
SMALL = {"rank": 4, "epochs": 12, "lr": 0.01, "batch_size": 128, "reg": 0.02, "seed": 3}


def planted(seed: int = 5):
    """r = 3.5 + b + c + w·u + noise on half stars, 35% dense; (train CSR, (users, items, ratings) test)."""
    rng = np.random.default_rng(seed)
    w, u = rng.normal(0, 0.6, (N_USERS, RANK)), rng.normal(0, 0.6, (N_ITEMS, RANK))
    b, c = rng.normal(0, 0.3, N_USERS), rng.normal(0, 0.4, N_ITEMS)
    rows, cols = np.nonzero(rng.random((N_USERS, N_ITEMS)) < 0.35)
    r = 3.5 + b[rows] + c[cols] + np.einsum("ij,ij->i", w[rows], u[cols]) + rng.normal(0, 0.3, len(rows))
    r = np.clip(np.round(r * 2) / 2, 0.5, 5.0)
    test = rng.random(len(rows)) < 0.2
    train = sp.csr_matrix((r[~test], (rows[~test], cols[~test])), shape=(N_USERS, N_ITEMS))
    return train, (rows[test], cols[test], r[test])


def rmse(factors, test) -> float:
    users, items, r = test
    return float(np.sqrt(np.mean((np.clip(factors.predict(users, items), 0.5, 5.0) - r) ** 2)))


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def fitted(data):
    train, test = data
    return KerasMF(KerasMFConfig(**SMALL)).fit(train, callback=lambda s, f: {"test_rmse": rmse(f, test)})


def test_trains_on_tensorflow_and_beats_the_bias_baseline(data, fitted):
    import keras

    assert keras.backend.backend() == "tensorflow"
    train, test = data
    bias = rmse(BiasBaseline().fit(train).factors(), test)
    got = rmse(fitted.factors(), test)
    assert got < bias - 0.05, f"keras-mf {got:.4f} vs bias {bias:.4f}"
    h = fitted.history
    assert [row["epoch"] for row in h] == list(range(1, len(h) + 1))
    assert all({"train_rmse", "val_rmse", "seconds", "test_rmse"} <= set(row) for row in h)
    assert h[-1]["train_rmse"] < h[0]["train_rmse"]


def test_exported_tables_predict_what_the_keras_model_predicts(data, fitted):
    f = fitted.factors()
    users, items = np.meshgrid(np.arange(N_USERS), np.arange(N_ITEMS), indexing="ij")
    users, items = users.ravel(), items.ravel()
    np.testing.assert_allclose(f.predict(users, items), fitted.predict(users, items), atol=1e-4, rtol=0)
    assert f.user_factors.dtype == np.float32 and f.global_mean == pytest.approx(data[0].data.mean())


def test_unseen_rows_have_zero_factors_and_fold_in_is_the_exact_ridge_minimizer(data, fitted):
    train, _ = data
    wide = sp.csr_matrix((train.data, train.indices, train.indptr), shape=(N_USERS, N_ITEMS + 2))
    model = KerasMF(KerasMFConfig(**{**SMALL, "epochs": 1})).fit(wide)
    f = model.factors()
    assert not f.item_factors[N_ITEMS:].any() and not f.item_bias[N_ITEMS:].any()

    f = fitted.factors()
    row = train.getrow(9)
    items, r = row.indices, row.data.astype(np.float64)
    w, b = fitted.fold_in(f, items, r)
    lam = fitted.config.reg * len(items)

    def loss(x):  # the user's part of the training objective (module docstring)
        pred = f.item_factors[items].astype(np.float64) @ x[:-1] + x[-1] + f.item_bias[items] + f.global_mean
        return float(((r - pred) ** 2).sum() + lam * (x @ x))

    x = np.append(w.astype(np.float64), b)
    rng = np.random.default_rng(0)
    assert all(loss(x) <= loss(x + 1e-3 * rng.standard_normal(len(x))) for _ in range(20))


def test_early_stopping_keeps_the_epoch_with_the_best_validation_rmse(data):
    train, _ = data
    cfg = KerasMFConfig(rank=16, reg=0.0, lr=0.03, batch_size=64, epochs=30, patience=2, seed=1)
    model = KerasMF(cfg).fit(train)
    val = [row["val_rmse"] for row in model.history]
    assert len(val) < cfg.epochs, "expected an unregularized fit to overfit and stop early"
    assert model.best_epoch == 1 + int(np.argmin(val)) and len(val) == model.best_epoch + cfg.patience
    users, items, r, _ = _triples(train)  # the fit's validation slice: the same seeded shuffle
    hold = np.random.default_rng(cfg.seed).permutation(len(r))[: round(cfg.validation_fraction * len(r))]
    kept = np.sqrt(np.mean((model.factors().predict(users[hold], items[hold]) - r[hold]) ** 2))
    assert kept == pytest.approx(min(val), abs=1e-9)


def test_runs_on_the_jax_backend_too(tmp_path):
    """The same code on KERAS_BACKEND=jax (the backend is fixed per process: a subprocess)."""
    script = textwrap.dedent("""
        import json, keras, numpy as np
        from tests.test_keras_mf import planted, rmse, SMALL
        from factorflow.models.baselines import BiasBaseline
        from factorflow.models.keras_mf import KerasMF, KerasMFConfig
        train, test = planted()
        m = KerasMF(KerasMFConfig(**SMALL)).fit(train)
        users, items = np.nonzero(train.toarray() >= 0)
        gap = float(np.abs(m.factors().predict(users, items) - m.predict(users, items)).max())
        print(json.dumps({"backend": keras.backend.backend(), "rmse": rmse(m.factors(), test), "gap": gap,
                          "bias": rmse(BiasBaseline().fit(train).factors(), test), "epochs": len(m.history)}))
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["backend"] == "jax"
    assert res["rmse"] < res["bias"] - 0.05, res
    assert res["gap"] < 1e-4
