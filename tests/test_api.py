"""The Python API (factorflow.load_model, factorflow.retrain) on a model published from ml-latest-small."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp
from cli_env import seed_prefect_home

import factorflow
from factorflow.errors import NotFoundError, ParameterError
from factorflow.models.als import ALS, ALSConfig
from factorflow.storage import registry as reg

DATA = Path(__file__).parent / "data" / "ml-latest-small"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """ALS (rank 4, 3 sweeps) fitted on the ratings of users 1–120 and published with titles."""
    import pandas as pd

    from factorflow.serving.titles import titles_for

    df = pd.read_csv(DATA / "ratings.csv")
    df = df[df["userId"] <= 120]
    user_ids, u = np.unique(df["userId"].to_numpy(), return_inverse=True)
    item_ids, i = np.unique(df["movieId"].to_numpy(), return_inverse=True)
    train = sp.csr_matrix((df["rating"].to_numpy(np.float32), (u, i)), shape=(len(user_ids), len(item_ids)))
    model = ALS(ALSConfig(rank=4, sweeps=3)).fit(train)
    f = model.factors()
    items = pa.array(item_ids, pa.int64())
    store = str(tmp_path_factory.mktemp("api") / "store")
    body = {"kind": "als", "params": model.params(), "rating_range": [0.5, 5.0],
            "metrics": {"test": {"rmse": 0.9}}}
    version = reg.publish(store, "als", f, pa.array(user_ids, pa.int64()), items, body, seen=train,
                          item_titles=titles_for(str(DATA / "movies.csv"), items))
    return {"store": store, "version": version, "factors": f, "train": train, "user_ids": user_ids,
            "item_ids": item_ids, "params": model.params()}


@pytest.fixture(scope="module")
def model(published):
    return factorflow.load_model(published["store"], "als")


def test_attributes_come_from_model_json(model, published):
    assert (model.name, model.version, model.kind) == ("als", published["version"], "als")
    assert model.params == published["params"] and model.params["reg"] == 6.0
    assert model.metrics == {"test": {"rmse": 0.9}} and model.rating_range == (0.5, 5.0)
    assert (model.n_users, model.n_items) == published["train"].shape
    assert factorflow.load_model(published["store"], "als", published["version"]).version == model.version
    with pytest.raises(NotFoundError, match="no published model 'nope'"):
        factorflow.load_model(published["store"], "nope")


def test_predict_is_mu_plus_biases_plus_dot_for_raw_ids(model, published):
    f, uid, iid = published["factors"], published["user_ids"], published["item_ids"]
    ui, ii = np.array([0, 5, 77, 119, 3]), np.array([0, 10, 200, 33, 999])
    want = (f.global_mean + f.user_bias[ui].astype(np.float64) + f.item_bias[ii]
            + np.einsum("ij,ij->i", f.user_factors[ui].astype(np.float64), f.item_factors[ii].astype(np.float64)))
    got = model.predict(uid[ui], iid[ii])
    assert got.dtype == np.float64 and got.shape == (5,)
    np.testing.assert_allclose(got, np.clip(want, 0.5, 5.0), rtol=1e-6)
    # strings are parsed like the CLI's --user; unknown ids are cold: μ plus the known bias
    assert model.predict([str(uid[5])], [int(iid[10])])[0] == pytest.approx(got[1])
    cold = model.predict([uid[0], 999_999], [999_999, iid[0]])
    np.testing.assert_allclose(cold, [f.global_mean + f.user_bias[0], f.global_mean + f.item_bias[0]], rtol=1e-6)
    with pytest.raises(NotFoundError, match="user 999999"):
        model.predict([999_999], [iid[0]], strict=True)
    with pytest.raises(ParameterError, match="lengths 2 and 1"):
        model.predict(uid[:2], iid[:1])


def test_recommend_excludes_seen_items_and_ranks_by_score(model, published):
    f, train, iid = published["factors"], published["train"], published["item_ids"]
    user = 7
    rows = model.recommend(int(published["user_ids"][user]), n=8)
    assert len(rows) == 8 and [set(r) for r in rows] == [{"item", "score", "title", "fallback"}] * 8
    seen = set(iid[train[user].indices].tolist())
    assert not seen & {r["item"] for r in rows}
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True) and not any(r["fallback"] for r in rows)
    # the same list as brute force over the allowed (≥ 5 train ratings), unseen items
    s = f.predict(np.full(f.n_items, user), np.arange(f.n_items))
    s[train[user].indices] = -np.inf
    s[np.bincount(train.indices, minlength=f.n_items) < 5] = -np.inf
    want = np.lexsort((np.arange(f.n_items), -s))[:8]
    assert [r["item"] for r in rows] == iid[want].tolist()
    np.testing.assert_allclose(scores, s[want], rtol=1e-5)
    assert all(isinstance(r["title"], str) for r in rows)
    again = model.recommend(int(published["user_ids"][user]), n=8, exclude_seen=False)
    assert {r["item"] for r in again} & seen  # a well-liked seen item comes back


def test_unknown_user_gets_the_flagged_fallback(model):
    rows = model.recommend(999_999, n=5)
    assert len(rows) == 5 and all(r["fallback"] is True for r in rows)
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    with pytest.raises(ParameterError, match="n=0"):
        model.recommend(1, n=0)


def test_similar_excludes_the_item_itself(model, published):
    f, iid = published["factors"], published["item_ids"]
    j = int(np.argmax(np.bincount(published["train"].indices)))  # the most rated item
    rows = model.similar(int(iid[j]), n=6, min_ratings=0)
    assert len(rows) == 6 and int(iid[j]) not in {r["item"] for r in rows}
    v = f.item_factors.astype(np.float64)
    cos = v @ v[j] / (np.linalg.norm(v, axis=1) * np.linalg.norm(v[j]))
    cos[j] = -np.inf
    assert [r["item"] for r in rows] == iid[np.argsort(-cos, kind="stable")[:6]].tolist()
    with pytest.raises(NotFoundError, match="item 999999: not in model als"):
        model.similar(999_999)


def test_fold_in_uses_the_models_own_regularization(model, published):
    f, iid, params = published["factors"], published["item_ids"], published["params"]
    idx = np.array([3, 40, 41, 100, 250, 7])
    r = np.array([5.0, 4.0, 1.5, 3.0, 4.5, 2.0])
    rows = model.fold_in({int(iid[j]): float(x) for j, x in zip(idx, r, strict=True)}, n=10, min_ratings=0)
    # the normal equations with the published λ = reg + reg_per_rating·n (factors) and λ_bias (bias)
    assert params["weighted"] is False and params["reg_per_rating"] > 0
    y = np.hstack([f.item_factors[idx].astype(np.float64), np.ones((len(idx), 1))])
    lam = np.diag([params["reg"] + params["reg_per_rating"] * len(idx)] * f.rank + [params["reg_bias"]])
    x = np.linalg.solve(y.T @ y + lam, y.T @ (r - f.item_bias[idx] - f.global_mean))
    s = f.item_factors.astype(np.float64) @ x[:-1] + x[-1] + f.item_bias + f.global_mean
    s[idx] = -np.inf
    want = np.lexsort((np.arange(f.n_items), -s))[:10]
    assert [r_["item"] for r_ in rows] == iid[want].tolist()
    np.testing.assert_allclose([r_["score"] for r_ in rows], s[want], rtol=1e-5)
    assert not {int(iid[j]) for j in idx} & {r_["item"] for r_ in rows}
    pairs = [(int(iid[j]), float(x_)) for j, x_ in zip(idx, r, strict=True)]
    assert model.fold_in(pairs, n=10, min_ratings=0) == rows


def test_fold_in_refuses_unknown_items_and_bad_ratings_in_one_line(model):
    with pytest.raises(NotFoundError) as err:
        model.fold_in({1: 5.0, 999_999: 4.0, "abc": 3.0})
    msg = str(err.value)
    assert msg == f"ratings: items not in model als (version {model.version}): 999999, abc" and "\n" not in msg
    with pytest.raises(ParameterError, match=r"ratings: ratings outside the scale 0.5..5 of model als .*: 1=9"):
        model.fold_in({1: 9.0})
    with pytest.raises(ParameterError, match="at least one"):
        model.fold_in({})


def test_retrain_refuses_bad_options_before_anything_runs(tmp_path):
    store = tmp_path / "store"
    with pytest.raises(ParameterError, match=r"^rank: model bias does not take it \(it takes: reg_user"):
        factorflow.retrain("missing.csv", str(store), model="bias", rank=3)
    with pytest.raises(ParameterError, match=r"^model_seed=-1: must be an integer >= 0"):
        factorflow.retrain("missing.csv", str(store), model_seed=-1)
    with pytest.raises(ParameterError, match=r"^test_fraction=1.5: Input should be less than 1"):
        factorflow.retrain("missing.csv", str(store), model="bias", test_fraction=1.5)
    with pytest.raises(ParameterError, match=r"^workers=0: "):
        factorflow.retrain("missing.csv", str(store), model="bias", workers=0)
    with pytest.raises(ParameterError, match=r"^model='nope': must be one of"):
        factorflow.retrain("missing.csv", str(store), model="nope")
    with pytest.raises(Exception, match="missing.csv: file not found"):
        factorflow.retrain("missing.csv", str(store), model="bias")
    assert not store.exists()


def test_import_factorflow_stays_light():
    code = ("import sys, factorflow; heavy = [m for m in ('numpy', 'pyarrow', 'prefect') if m in sys.modules]; "
            "assert not heavy, heavy; assert callable(factorflow.load_model) and 'numpy' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.slow
def test_retrain_end_to_end_publishes_a_current_version(tmp_path, monkeypatch):
    import prefect.settings as ps

    from factorflow.data.synth import write_synthetic_csv

    src = tmp_path / "ratings.csv"
    write_synthetic_csv(str(src), 300, 200, 15_000, seed=3)
    home = tmp_path / "prefect"
    seed_prefect_home(home)  # a migrated empty database: the private server starts as on a second run
    for var in ("PREFECT_API_URL", "PREFECT_PROFILES_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(home))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    store = str(tmp_path / "store")
    # Prefect read its settings when first imported (maybe by an earlier test): point them here too
    with ps.temporary_settings(updates={ps.PREFECT_HOME: str(home)}, restore_defaults={ps.PREFECT_API_URL}):
        summary = factorflow.retrain(str(src), store, model="bias", name="api-bias", reg_user=2.0, top_n=5)
    assert summary["model"] == "api-bias" and summary["kind"] == "bias"
    assert summary["params"]["reg_user"] == 2.0 and summary["metrics"]["test"]["rmse"] < 1.5
    assert reg.current_version(store, "api-bias") == summary["version"]
    assert (home / "prefect.db").exists()
    m = factorflow.load_model(store, "api-bias")
    assert m.version == summary["version"] and m.kind == "bias" and m.params["reg_user"] == 2.0
    assert m.metrics["test"]["rmse"] == pytest.approx(summary["metrics"]["test"]["rmse"])
    rows = m.recommend(1, n=5)
    assert len(rows) == 5 and not any(r["fallback"] for r in rows)
    assert len(m.fold_in({1: 5.0, 2: 1.0}, n=3)) == 3
