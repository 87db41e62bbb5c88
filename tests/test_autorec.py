"""I-AutoRec and U-AutoRec (factorflow.models.autorec): the masked loss ignores unobserved entries,
the batches cover every row once per epoch, the exported tables predict what the Keras autoencoder
predicts, both kinds beat the bias baseline (TensorFlow and JAX), cold rows fall back to μ + biases,
and I-AutoRec's fold-in is the exact minimizer it claims to be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp

from factorflow.errors import ParameterError
from factorflow.models import registry
from factorflow.models._row_batches import RowBatches, dense_rows, row_csr
from factorflow.models.autorec import IAutoRec, IAutoRecConfig, UAutoRec, UAutoRecConfig, masked_sse
from factorflow.models.base import FoldsIn, MemoryBounded
from factorflow.models.baselines import BiasBaseline

N_USERS, N_ITEMS, RANK = 150, 110, 3
COLD = 2  # trailing users and items with no rating at all
SMALL = {"hidden": 24, "epochs": 10, "lr": 3e-3, "batch_size": 16, "reg": 1.0, "patience": 4, "seed": 3}


def planted(seed: int = 5):
    """r = 3.5 + b + c + w·u + noise on half stars, 40% dense; the last COLD users and items have no
    rating. (train CSR, (users, items, ratings) test)."""
    rng = np.random.default_rng(seed)
    w, u = rng.normal(0, 0.6, (N_USERS, RANK)), rng.normal(0, 0.6, (N_ITEMS, RANK))
    b, c = rng.normal(0, 0.3, N_USERS), rng.normal(0, 0.4, N_ITEMS)
    rows, cols = np.nonzero(rng.random((N_USERS - COLD, N_ITEMS - COLD)) < 0.4)
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
    cb = lambda s, f: {"test_rmse": rmse(f, test)}  # noqa: E731
    return {"i-autorec": IAutoRec(IAutoRecConfig(**SMALL)).fit(train, callback=cb),
            "u-autorec": UAutoRec(UAutoRecConfig(**SMALL)).fit(train, callback=cb)}


def test_masked_loss_ignores_unobserved_targets_and_their_gradient():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    t = rng.normal(size=(6, 9)).astype(np.float32)
    m = (rng.random((6, 9)) < 0.4).astype(np.float32)
    m[0] = 0.0  # a row with nothing observed
    pred = tf.Variable(rng.normal(size=(6, 9)).astype(np.float32))

    def loss_and_grad(target):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(masked_sse(tf.constant(np.stack([target, m], -1)), pred))
        return float(loss), tape.gradient(loss, pred).numpy()

    loss, grad = loss_and_grad(t)
    assert loss == pytest.approx(float((m * (t - pred.numpy()) ** 2).sum()), rel=1e-6)
    assert not grad[m == 0].any()  # unobserved reconstruction entries get no gradient
    changed = t.copy()
    changed[m == 0] = rng.normal(0, 100, int((m == 0).sum()))
    changed[0, :3] = [np.inf, -np.inf, np.nan]
    loss2, grad2 = loss_and_grad(changed)
    assert loss2 == loss and np.array_equal(grad2, grad)
    observed = t.copy()
    observed[m == 1] += 1.0  # the test can fail: observed targets do move the loss
    assert loss_and_grad(observed)[0] != loss


def test_unobserved_targets_change_no_weight_gradient_of_the_training_loss():
    """The compiled model's whole loss (masked data term + L2) and its gradient w.r.t. every weight
    do not depend on targets at unobserved positions; at observed positions they do."""
    import tensorflow as tf

    cols, rows = 12, 5
    model = IAutoRec(IAutoRecConfig(hidden=4, input_dropout=0.0, seed=1))._build(cols, n_obs=20, n_rows=rows)
    rng = np.random.default_rng(1)
    mask = (rng.random((rows, cols)) < 0.35).astype(np.float32)
    x = (rng.normal(size=(rows, cols)) * mask).astype(np.float32)

    def grads(target):
        y = tf.constant(np.stack([target, mask], -1))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss(y, model(x, training=True))) + tf.add_n(model.losses)
        return float(loss), [g.numpy() for g in tape.gradient(loss, model.trainable_weights)]

    base_loss, base = grads(x)
    noisy = x + (1 - mask) * rng.normal(0, 10, x.shape).astype(np.float32)
    loss, got = grads(noisy)
    assert loss == base_loss and all(np.array_equal(a, b) for a, b in zip(got, base, strict=True))
    loss, got = grads(x + mask)
    assert loss != base_loss and not all(np.array_equal(a, b) for a, b in zip(got, base, strict=True))


def test_batches_yield_every_row_exactly_once_per_epoch_with_its_stored_entries():
    rng = np.random.default_rng(2)
    n_rows, n_cols = 53, 7
    dense = np.where(rng.random((n_rows, n_cols)) < 0.3, rng.normal(size=(n_rows, n_cols)), 0.0).astype(np.float32)
    dense[:, 0] = np.arange(n_rows) + 1  # the row's id, readable from the batch
    r, c = np.nonzero(dense)
    r, c = np.append(r, 4), np.append(c, 6 if dense[4, 6] == 0 else 5)
    dense[4, c[-1]] = 0.0
    values = np.append(dense[r[:-1], c[:-1]], 0.0)  # one stored zero: observed, so masked in
    m = row_csr(r, c, values, (n_rows, n_cols))
    mask = np.zeros_like(dense)
    mask[r, c] = 1.0
    batches = RowBatches(m, 8, np.random.default_rng(9))
    assert len(batches) == 7
    orders = []
    for _ in range(2):
        batches.shuffle()
        seen = []
        for k in range(len(batches)):
            x, y = batches[k]
            ids = x[:, 0].astype(int) - 1
            assert len(ids) <= 8
            np.testing.assert_array_equal(x, dense[ids])
            np.testing.assert_array_equal(y[..., 0], dense[ids])
            np.testing.assert_array_equal(y[..., 1], mask[ids])
            seen.extend(ids)
        assert sorted(seen) == list(range(n_rows))
        orders.append(seen)
    assert orders[0] != orders[1]  # reshuffled
    again = RowBatches(m, 8, np.random.default_rng(9))
    again.shuffle()
    assert [int(i) for k in range(len(again)) for i in again[k][0][:, 0] - 1] == orders[0]  # seeded
    some = RowBatches(m, 2, np.random.default_rng(1), rows=np.array([3, 10, 4, 50, 8]))  # the fit: non-empty rows
    some.shuffle()
    assert len(some) == 3 and sorted(int(i) for k in range(3) for i in some[k][0][:, 0] - 1) == [3, 4, 8, 10, 50]
    v, mk = dense_rows(m, np.array([4, 4, 0]))
    assert mk[0, c[-1]] == 1.0 and v[0, c[-1]] == 0.0 and np.array_equal(v[0], v[1])


@pytest.mark.parametrize("kind", ["i-autorec", "u-autorec"])
def test_trains_on_tensorflow_and_beats_the_bias_baseline(kind, data, fitted):
    import keras

    assert keras.backend.backend() == "tensorflow"
    train, test = data
    model = fitted[kind]
    bias = rmse(BiasBaseline().fit(train).factors(), test)
    got = rmse(model.factors(), test)
    assert got < bias - 0.05, f"{kind} {got:.4f} vs bias {bias:.4f}"
    h = model.history
    assert [row["epoch"] for row in h] == list(range(1, len(h) + 1))
    assert all({"train_rmse", "val_rmse", "seconds", "test_rmse"} <= set(row) for row in h)
    assert h[-1]["train_rmse"] < h[0]["train_rmse"]
    assert model.best_epoch == 1 + int(np.argmin([row["val_rmse"] for row in h]))
    assert any(row["test_rmse"] == pytest.approx(got, abs=1e-6) for row in h)  # the kept epoch's tables
    info = json.loads(json.dumps(model.fit_info()))
    assert info["best_epoch"] == model.best_epoch and info["epochs_run"] == len(h)
    assert info["hidden"] == SMALL["hidden"] and info["rank"] == model.factors().rank == SMALL["hidden"] + 1
    assert "W_i·h_j + b_out,i" in info["serving"] if kind == "i-autorec" else "W_j·h_i + b_out,j" in info["serving"]


@pytest.mark.parametrize("kind", ["i-autorec", "u-autorec"])
def test_exported_tables_predict_what_the_keras_model_predicts(kind, fitted):
    model = fitted[kind]
    f = model.factors()
    users, items = (a.ravel() for a in np.meshgrid(np.arange(N_USERS), np.arange(N_ITEMS), indexing="ij"))
    np.testing.assert_allclose(f.predict(users, items), model.predict(users, items), atol=1e-4, rtol=0)
    # and the Keras model really is the reconstruction of the training rows: one row by hand
    row = 7
    x = model._inputs
    dense, _ = dense_rows(x, np.array([row]))
    rec = np.asarray(model.keras_model.predict_on_batch(dense))[0]
    other = np.arange(N_USERS if kind == "i-autorec" else N_ITEMS)
    u, i = (other, np.full_like(other, row)) if kind == "i-autorec" else (np.full_like(other, row), other)
    np.testing.assert_allclose(model.predict(u, i) - f.global_mean - f.user_bias[u] - f.item_bias[i], rec,
                               atol=1e-5)


@pytest.mark.parametrize("kind", ["i-autorec", "u-autorec"])
def test_cold_users_and_items_get_the_mean_plus_bias_fallback(kind, fitted):
    model = fitted[kind]
    f = model.factors()
    cold_u, cold_i = np.arange(N_USERS - COLD, N_USERS), np.arange(N_ITEMS - COLD, N_ITEMS)
    assert not f.user_factors[cold_u].any() and not f.item_factors[cold_i].any()
    assert not f.user_bias[cold_u].any() and not f.item_bias[cold_i].any()
    items = np.arange(N_ITEMS)
    for u in cold_u:  # a cold user: μ + c_j, in the tables and in the model
        want = f.global_mean + f.item_bias[items].astype(np.float64)
        np.testing.assert_allclose(f.predict(np.full(N_ITEMS, u), items), want, atol=1e-6)
        np.testing.assert_allclose(model.predict(np.full(N_ITEMS, u), items), want, atol=1e-6)
    users = np.arange(N_USERS)
    for j in cold_i:  # a cold item: μ + b_i
        want = f.global_mean + f.user_bias[users].astype(np.float64)
        np.testing.assert_allclose(f.predict(users, np.full(N_USERS, j)), want, atol=1e-6)
        np.testing.assert_allclose(model.predict(users, np.full(N_USERS, j)), want, atol=1e-6)
    assert f.user_bias[:N_USERS - COLD].any() and f.item_bias[:N_ITEMS - COLD].any()  # center=bias


def test_i_autorec_fold_in_is_the_exact_minimizer_of_the_new_decoder_row(data, fitted):
    train, _ = data
    model = fitted["i-autorec"]
    f = model.factors()
    row = train.getrow(9)
    items, r = row.indices, row.data.astype(np.float64)
    w, b = model.fold_in(f, items, r)
    assert w.shape == (f.rank,) and w.dtype == np.float32
    mu, c, u = f.global_mean, f.item_bias[items].astype(np.float64), f.item_factors[items].astype(np.float64)
    assert b == pytest.approx((r - mu - c).sum() / (len(items) + model.config.bias_reg))
    lam = model.config.reg

    def loss(x):  # the new row's part of J: its squared error + λ/2 ‖W_i‖² (b_out unpenalized)
        return float(((r - mu - b - c - u @ x) ** 2).sum() + lam / 2 * (x[:-1] @ x[:-1]))

    x = w.astype(np.float64)
    rng = np.random.default_rng(0)
    assert all(loss(x) <= loss(x + 1e-3 * rng.standard_normal(len(x))) for _ in range(20))
    assert loss(x) < loss(np.zeros_like(x))
    w0, b0 = model.fold_in(f, np.array([], np.int64), np.array([]))
    assert not w0.any() and b0 == 0.0
    with pytest.raises(ParameterError, match="item_idx"):
        model.fold_in(f, np.array([N_ITEMS + 1]), np.array([4.0]))


def test_a_seed_gives_the_same_fit(data):
    """Initial weights, dropout and the batch order all come from the seed (Keras's own shuffling
    of a PyDataset's batches is off)."""
    train, _ = data
    cfg = {**SMALL, "epochs": 2, "input_dropout": 0.3, "hidden": 8}
    a, b = (UAutoRec(UAutoRecConfig(**cfg)).fit(train).factors() for _ in range(2))
    assert np.array_equal(a.user_factors, b.user_factors) and np.array_equal(a.item_factors, b.item_factors)


def test_capabilities_and_config_validation():
    assert registry.supports("i-autorec", FoldsIn) and not registry.supports("u-autorec", FoldsIn)
    assert registry.supports("i-autorec", MemoryBounded) and registry.supports("u-autorec", MemoryBounded)
    cfg = IAutoRecConfig()
    ml20m = IAutoRec.min_fit_bytes(cfg, 138_493, 26_744)
    assert 2**30 < ml20m < 8 * 2**30  # bounded at the MovieLens-20M shape: no users×items array
    assert UAutoRec.min_fit_bytes(UAutoRecConfig(), 138_493, 26_744) < ml20m
    with pytest.raises(ParameterError, match="--activation="):
        registry.make_config("i-autorec", {"activation": "softmax"}, as_options=True)
    for bad in ({"hidden": 0}, {"input_dropout": 1.0}, {"center": "median"}, {"reg": -1}, {"batch_size": 0}):
        with pytest.raises(ParameterError, match=next(iter(bad))):
            UAutoRecConfig(**bad)
    with pytest.raises(ParameterError, match="kind"):
        UAutoRecConfig(kind="i-autorec")


def test_runs_on_the_jax_backend_too():
    """Both kinds on KERAS_BACKEND=jax (the backend is fixed per process: a subprocess)."""
    script = textwrap.dedent("""
        import json, keras, numpy as np
        from tests.test_autorec import planted, rmse, SMALL, N_USERS, N_ITEMS
        from factorflow.models.baselines import BiasBaseline
        from factorflow.models.autorec import IAutoRec, IAutoRecConfig, UAutoRec, UAutoRecConfig
        train, test = planted()
        users, items = (a.ravel() for a in np.meshgrid(np.arange(N_USERS), np.arange(N_ITEMS), indexing="ij"))
        out = {"backend": keras.backend.backend(), "bias": rmse(BiasBaseline().fit(train).factors(), test)}
        for cls, cfg in ((IAutoRec, IAutoRecConfig), (UAutoRec, UAutoRecConfig)):
            m = cls(cfg(**{**SMALL, "epochs": 6})).fit(train)
            gap = float(np.abs(m.factors().predict(users, items) - m.predict(users, items)).max())
            out[m.kind] = {"rmse": rmse(m.factors(), test), "gap": gap}
        print(json.dumps(out))
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["backend"] == "jax"
    for kind in ("i-autorec", "u-autorec"):
        assert res[kind]["rmse"] < res["bias"] - 0.05, res
        assert res[kind]["gap"] < 1e-4, res
