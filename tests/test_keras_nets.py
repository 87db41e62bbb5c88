"""keras-deep and keras-residual (factorflow.models.keras_nets): train on TensorFlow (and JAX), beat the
bias baseline, publish a network that round-trips through a .keras file, export their embeddings as
tables, keep their best epoch, and refuse bad configs in one line naming the field."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp

from factorflow.errors import ParameterError
from factorflow.models import registry
from factorflow.models.base import FoldsIn, MemoryBounded, NetworkScored
from factorflow.models.baselines import BiasBaseline
from factorflow.models.keras_nets import KerasDeep, KerasDeepConfig, KerasResidual, KerasResidualConfig, _triples

N_USERS, N_ITEMS, RANK = 160, 120, 3
EMPTY = 2  # users and items past N_USERS / N_ITEMS with no ratings at all
#: Small, quick configs per kind (a larger lr than the ml-latest-small defaults: few epochs).
SMALL = {
    "keras-deep": {"rank": 16, "hidden": "64", "init_scale": 0.1, "lr": 0.01, "batch_size": 256, "epochs": 8,
                   "reg": 0.005, "dropout": 0.0, "weight_decay": 0.0, "seed": 3},
    "keras-residual": {"rank": 4, "hidden": "16", "init_scale": 0.01, "lr": 0.02, "batch_size": 256, "epochs": 8,
                       "reg": 0.01, "dropout": 0.0, "weight_decay": 0.0, "seed": 3},
}
CLASSES = {"keras-deep": (KerasDeep, KerasDeepConfig), "keras-residual": (KerasResidual, KerasResidualConfig)}


def planted(seed: int = 5):
    """r = 3.5 + b + c + w·u + noise on half stars, 40% dense, plus EMPTY users and items with no
    ratings; (train CSR, (users, items, ratings) test)."""
    rng = np.random.default_rng(seed)
    w, u = rng.normal(0, 0.6, (N_USERS, RANK)), rng.normal(0, 0.6, (N_ITEMS, RANK))
    b, c = rng.normal(0, 0.3, N_USERS), rng.normal(0, 0.4, N_ITEMS)
    rows, cols = np.nonzero(rng.random((N_USERS, N_ITEMS)) < 0.4)
    r = 3.5 + b[rows] + c[cols] + np.einsum("ij,ij->i", w[rows], u[cols]) + rng.normal(0, 0.3, len(rows))
    r = np.clip(np.round(r * 2) / 2, 0.5, 5.0)
    test = rng.random(len(rows)) < 0.2
    train = sp.csr_matrix((r[~test], (rows[~test], cols[~test])), shape=(N_USERS + EMPTY, N_ITEMS + EMPTY))
    return train, (rows[test], cols[test], r[test])


def rmse(scorer, test) -> float:
    """Held-out RMSE of clipped predictions through a Scorer (tables or a network)."""
    users, items, r = test
    return float(np.sqrt(np.mean((np.clip(scorer.score_pairs(users, items), 0.5, 5.0) - r) ** 2)))


def make(kind: str, **over):
    model_cls, config_cls = CLASSES[kind]
    return model_cls(config_cls(**{**SMALL[kind], **over}))


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def fitted(data):
    train, test = data
    return {kind: make(kind).fit(train, callback=lambda s, scorer: {"test_rmse": rmse(scorer, test)})
            for kind in CLASSES}


@pytest.mark.parametrize("kind", list(CLASSES))
def test_trains_on_tensorflow_and_beats_the_bias_baseline(kind, data, fitted):
    import keras

    from factorflow.serving.network import NetworkScorer, model_scorer

    assert keras.backend.backend() == "tensorflow"
    train, test = data
    model = fitted[kind]
    assert isinstance(model, NetworkScored) and isinstance(model, MemoryBounded)
    assert not registry.supports(kind, FoldsIn)
    scorer = model_scorer(model)
    assert isinstance(scorer, NetworkScorer)
    bias = rmse(BiasBaseline().fit(train).factors(), test)
    got = rmse(scorer, test)
    assert got < bias - 0.05, f"{kind} {got:.4f} vs bias {bias:.4f}"
    h = model.history
    assert [row["epoch"] for row in h] == list(range(1, len(h) + 1))
    assert all({"train_rmse", "val_rmse", "seconds", "test_rmse"} <= set(row) for row in h)
    assert h[-1]["train_rmse"] < h[0]["train_rmse"]
    # the callback scored the network of each epoch: the kept epoch's row is what the model predicts
    assert h[model.best_epoch - 1]["test_rmse"] == pytest.approx(got, abs=1e-6)
    info = model.fit_info()
    assert info["best_epoch"] == model.best_epoch and info["epochs_run"] == len(h)
    assert info["hidden"] == [int(w) for w in SMALL[kind]["hidden"].split(",")]
    assert info["parameters"] == model.network().count_params()
    need = type(model).min_fit_bytes(model.config, N_USERS + EMPTY, N_ITEMS + EMPTY)
    assert need == 16 * model.network().count_params()


@pytest.mark.parametrize("kind", list(CLASSES))
def test_network_round_trips_through_a_keras_file(kind, fitted):
    from factorflow.serving.network import NetworkScorer, network_from_bytes, network_to_bytes

    model = fitted[kind]
    net = model.network()
    assert [t.name for t in net.inputs] == ["user", "item"]
    loaded = network_from_bytes(network_to_bytes(net))
    f = model.factors()
    n_users, n_items = N_USERS + EMPTY, N_ITEMS + EMPTY
    users, items = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    users, items = users.ravel(), items.ravel()
    want = model.predict(users, items)
    assert want.dtype == np.float64 and want.shape == (n_users * n_items,) and np.isfinite(want).all()
    scorer = NetworkScorer(loaded, f.n_users, f.n_items, f.global_mean)
    np.testing.assert_allclose(scorer.score_pairs(users, items), want, atol=1e-5, rtol=0)
    who = np.array([0, 7, n_users - 1])  # the last user has no ratings
    np.testing.assert_allclose(scorer.score_users(who), want.reshape(n_users, n_items)[who], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", list(CLASSES))
def test_tables_hold_the_embeddings_and_unseen_rows_are_zero(kind, data, fitted):
    train, _ = data
    model = fitted[kind]
    f, net = model.factors(), model.network()
    assert f.user_factors.dtype == np.float32 and f.rank == model.config.rank
    np.testing.assert_array_equal(f.user_factors, net.get_layer("user_factors").get_weights()[0])
    np.testing.assert_array_equal(f.item_factors, net.get_layer("item_factors").get_weights()[0])
    assert f.global_mean == pytest.approx(train.data.mean())
    if kind == "keras-residual":
        np.testing.assert_array_equal(f.user_bias, net.get_layer("user_bias").get_weights()[0][:, 0])
        assert f.item_bias.any()
    else:
        assert not f.user_bias.any() and not f.item_bias.any()

    # users and items with no ratings: zero rows in the network and the tables
    assert f.user_factors[:N_USERS].any(axis=1).all() and f.item_factors[:N_ITEMS].any(axis=1).all()
    for table in (f.user_factors[N_USERS:], f.item_factors[N_ITEMS:], f.user_bias[N_USERS:], f.item_bias[N_ITEMS:]):
        assert not table.any()
    assert not net.get_layer("user_factors").get_weights()[0][N_USERS:].any()
    assert not net.get_layer("item_factors").get_weights()[0][N_ITEMS:].any()


def test_early_stopping_keeps_the_epoch_with_the_best_validation_rmse(data):
    train, _ = data
    train = sp.vstack([train[:60], sp.csr_matrix((train.shape[0] - 60, train.shape[1]))]).tocsr()  # 60 users
    cfg = KerasDeepConfig(rank=32, hidden="128", reg=0.0, lr=0.02, batch_size=64, epochs=20, patience=2, seed=1)
    model = KerasDeep(cfg).fit(train)
    val = [row["val_rmse"] for row in model.history]
    assert len(val) < cfg.epochs, "expected an unregularized wide network on few ratings to overfit and stop early"
    assert model.best_epoch == 1 + int(np.argmin(val)) and len(val) == model.best_epoch + cfg.patience
    users, items, r, _ = _triples(train)  # the fit's validation slice: the same seeded shuffle
    hold = np.random.default_rng(cfg.seed).permutation(len(r))[: round(cfg.validation_fraction * len(r))]
    kept = np.sqrt(np.mean((model.predict(users[hold], items[hold]) - r[hold]) ** 2))
    assert kept == pytest.approx(min(val), abs=1e-6)


@pytest.mark.parametrize("kind", list(CLASSES))
def test_config_round_trips_through_json_and_normalizes_hidden(kind):
    _, config_cls = CLASSES[kind]
    cfg = config_cls(hidden=" 128, 64 ,8")
    assert cfg.hidden == "128,64,8"
    assert config_cls(hidden=(128, 64, 8)) == cfg == config_cls(hidden=[128, 64, 8])
    params = json.loads(json.dumps(registry.make_model(cfg).params(), allow_nan=False))
    assert params["hidden"] == "128,64,8" and registry.make_config(kind, params) == cfg
    assert KerasDeep.min_fit_bytes(KerasDeepConfig(rank=2, hidden="3"), 10, 20) == 16 * (30 * 2 + 4 * 3 + 3 + 3 + 1)


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("hidden", "abc", "comma-separated"), ("hidden", "", "comma-separated"), ("hidden", "64,", "comma-separated"),
    ("hidden", "64,0", "integers >= 1"), ("hidden", [], "comma-separated"), ("hidden", 64, "comma-separated"),
    ("activation", "softmaxx", "relu or"), ("dropout", 1.0, "[0, 1)"), ("dropout", -0.1, "[0, 1)"),
    ("reg", -1.0, ">= 0"), ("weight_decay", math.nan, ">= 0"), ("rank", 0, ">= 1"), ("init_scale", 0.0, "> 0"),
    ("lr", 0, "> 0"), ("epochs", 0, ">= 1"), ("optimizer", "lbfgs", "adam"),
])
@pytest.mark.parametrize("kind", list(CLASSES))
def test_bad_config_is_one_line_naming_the_field(kind, field, value, rule):
    _, config_cls = CLASSES[kind]
    with pytest.raises(ParameterError) as err:
        config_cls(**{field: value})
    msg = str(err.value)
    assert msg.startswith(f"{field}=") and rule in msg and "\n" not in msg
    option = "--" + ("model-seed" if field == "seed" else field.replace("_", "-"))
    with pytest.raises(ParameterError, match="^" + option + "="):
        registry.make_config(kind, {field: value}, as_options=True)


def test_runs_on_the_jax_backend_too():
    """keras-residual on KERAS_BACKEND=jax (the backend is fixed per process: a subprocess). Its
    network holds every layer keras-deep's does (embeddings, concatenation, the Dense stack, the
    squeezed Dense(1)) plus the MF branch; one kind keeps JAX's per-op compilation cost to one fit.
    Dropout and the kernel decay are on, so their JAX paths run too."""
    script = textwrap.dedent("""
        import json, keras, numpy as np
        from tests.test_keras_nets import planted, rmse, make
        from factorflow.models.baselines import BiasBaseline
        from factorflow.serving.network import model_scorer, network_from_bytes, network_to_bytes
        train, test = planted()
        out = {"backend": keras.backend.backend(), "bias": rmse(BiasBaseline().fit(train).factors(), test)}
        for kind in ["keras-residual"]:
            m = make(kind, dropout=0.1, weight_decay=1e-4).fit(train)
            loaded = network_from_bytes(network_to_bytes(m.network()))
            u, i = test[0].astype(np.int32), test[1].astype(np.int32)
            gap = float(np.abs(np.asarray(loaded.predict({"user": u, "item": i}, verbose=0), np.float64)
                               + m.factors().global_mean - m.predict(u, i)).max())
            out[kind] = {"rmse": rmse(model_scorer(m), test), "gap": gap}
        print(json.dumps(out))
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["backend"] == "jax"
    assert res["keras-residual"]["rmse"] < res["bias"] - 0.05, res
    assert res["keras-residual"]["gap"] < 1e-5, res
