"""The contract every registered model kind meets; a new kind joins by registering.

Parametrized over :func:`factorflow.models.registry.kinds`: each kind fits a small planted
low-rank dataset, beats the global mean on held-out ratings (the global mean matches itself),
has finite factors, round-trips its params through JSON to the same config, and survives
publish → ``factorflow recommend``. Capabilities are checked where declared: a block kernel
must not depend on the blocking; fold-in must be the exact minimizer for a user it saw.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from factorflow.models import registry
from factorflow.models.base import BlockAlternating, FactorModel, FoldsIn, NetworkScored
from factorflow.serving.network import model_scorer

KINDS = registry.kinds()
#: Small, quick hyper-parameters per kind (a kind not listed runs with its defaults).
QUICK = {"als": {"rank": 4, "sweeps": 6, "reg": 2.0}, "pmf": {"rank": 5, "sweeps": 6, "reg": 2.0},
         "bpmf": {"rank": 3, "init_sweeps": 3, "burn_in": 3, "samples": 8},
         "keras-mf": {"rank": 4, "epochs": 6, "lr": 0.01, "batch_size": 128, "reg": 0.02},
         "i-autorec": {"hidden": 16, "epochs": 8, "lr": 0.003, "batch_size": 16},
         "u-autorec": {"hidden": 16, "epochs": 8, "lr": 0.003, "batch_size": 16},
         "keras-deep": {"rank": 16, "hidden": "64", "init_scale": 0.1, "epochs": 8, "lr": 0.01, "batch_size": 256,
                        "reg": 0.005, "dropout": 0.0, "weight_decay": 0.0},
         "keras-residual": {"rank": 4, "hidden": "16", "init_scale": 0.01, "epochs": 6, "lr": 0.02, "batch_size": 256,
                            "reg": 0.01, "dropout": 0.0, "weight_decay": 0.0}}
QUICK["blend"] = {"components": [{"kind": "als", **QUICK["als"]}, {"kind": "svd", "rank": 3}]}
N_USERS, N_ITEMS, RANK = 240, 160, 3


@pytest.fixture(scope="module")
def data():
    """Planted r = μ + b + c + w·u + noise on half-star ratings, 35% dense, random 80/20 split."""
    rng = np.random.default_rng(11)
    w = rng.normal(0, 0.6, (N_USERS, RANK))
    u = rng.normal(0, 0.6, (N_ITEMS, RANK))
    b, c = rng.normal(0, 0.3, N_USERS), rng.normal(0, 0.4, N_ITEMS)
    rows, cols = np.nonzero(rng.random((N_USERS, N_ITEMS)) < 0.35)
    r = 3.5 + b[rows] + c[cols] + np.einsum("ij,ij->i", w[rows], u[cols]) + rng.normal(0, 0.3, len(rows))
    r = np.clip(np.round(r * 2) / 2, 0.5, 5.0)
    test = rng.random(len(rows)) < 0.2
    train = sp.csr_matrix((r[~test], (rows[~test], cols[~test])), shape=(N_USERS, N_ITEMS))
    return train, (rows[test], cols[test], r[test])


def _fit(kind, train, **kw):
    model = registry.make_model(registry.make_config(kind, QUICK.get(kind, {})))
    return model.fit(train, **kw)


def _rmse(scorer, test):
    """Held-out RMSE of clipped predictions through a Scorer: factor tables, or a network kind's
    network (:func:`factorflow.serving.network.model_scorer`)."""
    users, items, r = test
    return float(np.sqrt(np.mean((np.clip(scorer.score_pairs(users, items), 0.5, 5.0) - r) ** 2)))


@pytest.fixture(scope="module")
def fitted(data):
    train, _ = data
    return {kind: _fit(kind, train) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_fits_with_finite_factors_and_beats_the_global_mean(kind, data, fitted):
    model = fitted[kind]
    assert isinstance(model, FactorModel) and model.kind == kind
    f = model.factors()
    assert (f.n_users, f.n_items) == (N_USERS, N_ITEMS)
    for a in (f.user_factors, f.item_factors, f.user_bias, f.item_bias, np.array([f.global_mean])):
        assert np.isfinite(a).all()
    mean = _rmse(fitted["global-mean"].factors(), data[1])
    got = _rmse(model_scorer(model), data[1])
    if kind == "global-mean":
        assert got == pytest.approx(mean)
    else:
        assert got < mean - 0.05, f"{kind}: test RMSE {got:.4f} vs global mean {mean:.4f}"


@pytest.mark.parametrize("kind", KINDS)
def test_params_round_trip_through_json_to_the_same_config(kind, fitted):
    model = fitted[kind]
    params = json.loads(json.dumps(model.params(), allow_nan=False))
    assert registry.make_config(kind, params) == model.config
    assert registry.model_from_params(kind, params).params() == model.params()
    with pytest.raises(Exception, match=f"model {kind} does not take"):
        registry.make_config(kind, {**params, "no_such_option": 1})


@pytest.mark.parametrize("kind", KINDS)
def test_iterative_history_has_one_row_per_step_with_the_callback(kind, data):
    train, (tu, ti, tr) = data
    seen = []
    model = _fit(kind, train, callback=lambda step, f: seen.append(step) or {"test_rmse": _rmse(f, (tu, ti, tr))})
    unit = getattr(model, "step_unit", None)
    if unit is None:
        assert model.history == [] and seen == []  # closed form: no steps
        return
    assert seen and seen == list(range(1, len(model.history) + 1))
    assert [h[unit] for h in model.history] == seen
    assert all(np.isfinite(h["train_rmse"]) and np.isfinite(h["test_rmse"]) for h in model.history)
    final = _rmse(model_scorer(model), (tu, ti, tr))
    if isinstance(model, BlockAlternating):  # a fixed number of steps; the last one is the model
        assert len(seen) == model.n_steps()
        assert model.history[-1]["test_rmse"] == pytest.approx(final)
    else:  # early stopping may restore the weights of an earlier step
        assert any(h["test_rmse"] == pytest.approx(final, abs=1e-6) for h in model.history)


@pytest.mark.parametrize("kind", [k for k in KINDS if registry.supports(k, BlockAlternating)])
def test_block_kernel_does_not_depend_on_the_blocking(kind, data, fitted):
    train, _ = data
    model, f = fitted[kind], fitted[kind].factors()
    m = sp.csr_matrix(train, dtype=np.float32)
    whole = model.solve_rows(m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data,
                             (f.item_factors, f.item_bias), f.global_mean)
    halves = []
    for lo, hi in ((0, 97), (97, N_USERS)):
        sub = m[lo:hi]
        halves.append(model.solve_rows(sub.indptr.astype(np.int64), sub.indices.astype(np.int32), sub.data,
                                       (f.item_factors, f.item_bias), f.global_mean))
    np.testing.assert_array_equal(whole[0], np.concatenate([h[0] for h in halves]))
    np.testing.assert_array_equal(whole[1], np.concatenate([h[1] for h in halves]))
    assert whole[2] == pytest.approx(sum(h[2] for h in halves))
    assert whole[3] == pytest.approx(sum(h[3] for h in halves))


@pytest.mark.parametrize("kind", [k for k in KINDS if registry.supports(k, FoldsIn)])
def test_fold_in_learns_from_the_users_ratings(kind, data, fitted):
    """Folding in a user's own train ratings fits them better than an unknown user's (0, 0)
    (the global mean learns nothing about users: its fold-in is (0, 0) itself)."""
    train, _ = data
    model, f = fitted[kind], fitted[kind].factors()
    row = train.getrow(5)
    items, r = row.indices, row.data.astype(np.float64)
    w, b = model.fold_in(f, items, r)
    assert w.shape == (f.rank,) and np.isfinite(w).all() and np.isfinite(b)

    def loss(w_, b_):  # the user's squared error against fixed items (the model's penalty is ≥ 0)
        pred = f.item_factors[items].astype(np.float64) @ w_ + b_ + f.item_bias[items] + f.global_mean
        return float(((r - pred) ** 2).sum())

    base = loss(np.zeros(f.rank), 0.0)
    if kind == "global-mean":
        assert loss(w.astype(np.float64), b) == base
    else:
        assert loss(w.astype(np.float64), b) < base
    with pytest.raises(Exception, match="item_idx"):
        model.fold_in(f, np.array([N_ITEMS + 3]), np.array([4.0]))


@pytest.mark.parametrize("kind", KINDS)
def test_publish_then_recommend_round_trip(kind, data, fitted, tmp_path, capsys):
    from factorflow.cli import main
    from factorflow.storage import registry as published

    train, _ = data
    model, f = fitted[kind], fitted[kind].factors()
    store = str(tmp_path / "store")
    user_ids = pa.array(np.arange(N_USERS) + 1000)
    item_ids = pa.array(np.arange(N_ITEMS) + 1)
    body = {"kind": kind, "params": model.params(), "rating_range": [0.5, 5.0]}
    if getattr(model, "fit_info", None):  # model.json "fit", as the flow records it (a blend's weights)
        body["fit"] = model.fit_info()
    files = {}
    if isinstance(model, NetworkScored):  # r̂ is the network: publish it beside the tables, as the flow does
        from factorflow.serving.network import SERVING_NETWORK, network_to_bytes
        from factorflow.storage.layout import NETWORK_FILE

        body["serving"], files[NETWORK_FILE] = SERVING_NETWORK, network_to_bytes(model.network())
    version = published.publish(store, f"m-{kind}", f, user_ids, item_ids, body, seen=train, extra_files=files)
    assert published.current_version(store, f"m-{kind}") == version

    user = 7
    assert main(["recommend", "--model", f"m-{kind}", "--user", str(1000 + user), "-n", "5", "--json",
                 "--min-ratings", "0", "--store", store]) == 0
    rows = json.loads(capsys.readouterr().out)
    if isinstance(model, NetworkScored):
        scores = model_scorer(model).score_users(np.array([user]))[0]
    else:
        scores = f.predict(np.full(N_ITEMS, user), np.arange(N_ITEMS)).astype(np.float32)
    scores[train.getrow(user).indices] = -np.inf
    want = np.lexsort((np.arange(N_ITEMS), -scores))[:5] + 1
    assert [r["item"] for r in rows] == want.tolist()
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)

    if registry.supports(kind, FoldsIn):
        assert main(["recommend", "--model", f"m-{kind}", "--ratings", "1=5,2=1", "-n", "3", "--json",
                     "--min-ratings", "0", "--store", store]) == 0
        folded = json.loads(capsys.readouterr().out)
        assert len(folded) == 3 and {1, 2}.isdisjoint(r["item"] for r in folded)
