"""Recommending: top-N, batch top-N, similar items, fold-in, fallback, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from factorflow.cli import main
from factorflow.errors import ParameterError
from factorflow.factors import FactorArrays
from factorflow.models.als import ALS, ALSConfig
from factorflow.serving import topn as rec
from factorflow.serving.scoring import Scorer
from factorflow.serving.similar import similar_items
from factorflow.storage import registry as reg


def make_factors(n_users=40, n_items=60, k=4, seed=0) -> FactorArrays:
    rng = np.random.default_rng(seed)
    return FactorArrays(
        user_factors=rng.normal(size=(n_users, k)).astype(np.float32),
        item_factors=rng.normal(size=(n_items, k)).astype(np.float32),
        user_bias=rng.normal(scale=0.3, size=n_users).astype(np.float32),
        item_bias=rng.normal(scale=0.3, size=n_items).astype(np.float32),
        global_mean=3.5,
    )


def make_seen(n_users, n_items, seed=1, density=0.2) -> sp.csr_matrix:
    m = sp.random(n_users, n_items, density=density, format="csr", random_state=seed)
    m.data[:] = 1.0
    return m


def brute_top(f: FactorArrays, u: int, n: int, exclude) -> tuple[np.ndarray, np.ndarray]:
    s = f.predict(np.full(f.n_items, u), np.arange(f.n_items))
    s[list(exclude)] = -np.inf
    order = sorted(np.flatnonzero(np.isfinite(s)), key=lambda j: (-s[j], j))[:n]
    return np.array(order), s[order]


def test_top_n_excludes_seen_and_matches_brute_force():
    f, seen = make_factors(), make_seen(40, 60)
    for u in range(0, 40, 7):
        ex = seen[u].indices
        items, scores = rec.top_n(f, u, 10, ex)
        want_i, want_s = brute_top(f, u, 10, ex)
        np.testing.assert_array_equal(items, want_i)
        np.testing.assert_allclose(scores, want_s, rtol=1e-5)
        assert not set(items) & set(ex)
        assert np.all(np.diff(scores) <= 0)


def test_top_n_ties_go_to_smaller_item_and_short_lists():
    f = make_factors(2, 8, k=2)
    f.item_factors[:] = 0
    f.item_bias[:] = 0
    f.item_bias[[6, 2]] = 1.0  # two tied winners, then six tied others
    items, scores = rec.top_n(f, 0, 4, np.array([0]))
    assert items.tolist() == [2, 6, 1, 3]
    items, _ = rec.top_n(f, 0, 10, np.arange(5))  # only 3 unseen items exist
    assert items.tolist() == [6, 5, 7]


def test_recommend_all_equals_brute_force_with_small_blocks():
    f, seen = make_factors(), make_seen(40, 60)
    calls = []
    t = rec.recommend_all(f, seen, 5, block_users=7, progress=lambda d, tot, m="": calls.append(d))
    assert t.schema.names == ["user_idx", "rank", "item_idx", "score"]
    assert calls[-1] == 40 and len(calls) == 6
    assert t.num_rows == 40 * 5
    d = t.to_pydict()
    for u in range(40):
        rows = [k for k in range(t.num_rows) if d["user_idx"][k] == u]
        want_i, want_s = brute_top(f, u, 5, seen[u].indices)
        assert [d["rank"][k] for k in rows] == [1, 2, 3, 4, 5]
        assert [d["item_idx"][k] for k in rows] == want_i.tolist()
        np.testing.assert_allclose([d["score"][k] for k in rows], want_s, rtol=1e-5)


def test_recommend_all_ties_and_nearly_full_rows():
    f = make_factors(3, 6, k=2)
    f.item_factors[:] = 0
    f.item_bias[:] = 0
    seen = sp.csr_matrix(np.array([[1, 1, 1, 1, 1, 0], [0] * 6, [1, 0, 0, 0, 0, 0]]))
    t = rec.recommend_all(f, seen, 3, block_users=2).to_pydict()
    by_user = {u: [i for uu, i in zip(t["user_idx"], t["item_idx"], strict=True) if uu == u] for u in range(3)}
    assert by_user == {0: [5], 1: [0, 1, 2], 2: [1, 2, 3]}


def test_score_users_is_the_batch_formula_bit_for_bit():
    f = make_factors(n_users=9, n_items=31, k=6, seed=3)
    who = np.array([4, 0, 8, 4])
    want = f.user_factors[who].astype(np.float32) @ np.ascontiguousarray(f.item_factors.T, dtype=np.float32)
    want += f.user_bias[who, None].astype(np.float32)
    want += (f.item_bias + np.float32(f.global_mean)).astype(np.float32)
    got = f.score_users(who)
    assert got.dtype == np.float32 and got.shape == (4, 31)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got[1], f.predict(np.zeros(31, int), np.arange(31)), rtol=1e-5)
    np.testing.assert_array_equal(f.score_pairs(who, who), f.predict(who, who))
    assert isinstance(f, Scorer)


def test_top_n_scores_equal_the_batch_file():
    f, seen = make_factors(), make_seen(40, 60)
    t = rec.recommend_all(f, seen, 6, block_users=5).to_pydict()
    for u in (0, 13, 39):
        items, scores = rec.top_n(f, u, 6, seen[u].indices)
        rows = [k for k in range(len(t["user_idx"])) if t["user_idx"][k] == u]
        assert items.tolist() == [t["item_idx"][k] for k in rows]
        assert scores.tolist() == [t["score"][k] for k in rows]  # exact: the same score_users


class DenseScorer:
    """A non-factor model: a fixed users×items table of scores (what a Keras model would give)."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table

    @property
    def n_users(self) -> int:
        return self.table.shape[0]

    @property
    def n_items(self) -> int:
        return self.table.shape[1]

    def score_pairs(self, users, items):
        return self.table[np.asarray(users), np.asarray(items)].astype(np.float64)

    def score_users(self, users):
        return self.table[np.asarray(users)].astype(np.float32)


def test_any_scorer_serves_top_n_and_metrics():
    from factorflow.evaluation.metrics import rating_metrics, topn_metrics

    f, seen = make_factors(), make_seen(40, 60)
    dense = DenseScorer(f.score_users(np.arange(40)))
    assert isinstance(dense, Scorer)
    allowed = np.arange(60) % 3 != 0
    a = rec.recommend_all(dense, seen, 4, allowed=allowed, block_users=9)
    b = rec.recommend_all(f, seen, 4, allowed=allowed)
    assert a.equals(b)
    ex = seen[7].indices
    assert rec.top_n(dense, 7, 5, ex).item_idx.tolist() == rec.top_n(f, 7, 5, ex).item_idx.tolist()
    u, i = np.array([0, 1, 2]), np.array([3, 4, 5])
    r = np.array([4.0, 2.0, 5.0])
    assert rating_metrics(dense, u, i, r) == pytest.approx(rating_metrics(f, u, i, r), rel=1e-6)
    assert topn_metrics(dense, seen, u, i, r, n=5) == topn_metrics(f, seen, u, i, r, n=5)


def test_similar_items_matches_brute_force_cosine():
    f = make_factors()
    f.item_factors[13] = 0  # an item with no train ratings
    v = f.item_factors.astype(np.float64)
    norm = np.linalg.norm(v, axis=1)
    j = 5
    cos = np.where(norm > 0, v @ v[j] / np.maximum(norm * norm[j], 1e-300), -np.inf)
    cos[j] = -np.inf
    want = np.argsort(-cos, kind="stable")[:8]
    items, scores = similar_items(f, j, 8)
    np.testing.assert_array_equal(items, want)
    np.testing.assert_allclose(scores, cos[want], rtol=1e-6)
    assert 13 not in similar_items(f, j, 59).item_idx and j not in items
    with pytest.raises(ValueError, match="zero factor vector"):
        similar_items(f, 13, 3)


@pytest.mark.parametrize("weighted", [False, True])
def test_fold_in_solves_normal_equations(weighted):
    f = make_factors(k=5)
    items = np.array([3, 17, 42, 8, 30, 55, 1])
    r = np.array([5.0, 3.5, 4.0, 1.0, 2.5, 4.5, 3.0])
    lam = 0.3 * len(items) if weighted else 0.3 + 0.05 * len(items)  # weighted: λ·n, reg_per_rating unused
    y = np.hstack([f.item_factors[items].astype(np.float64), np.ones((7, 1))])
    t = r - f.item_bias[items] - f.global_mean
    x = np.linalg.solve(y.T @ y + lam * np.eye(6), y.T @ t)
    als = ALS(ALSConfig(reg=0.3, weighted=weighted, reg_bias=None, reg_per_rating=0.05))
    w, b = als.fold_in(f, items, r)
    np.testing.assert_allclose(w, x[:5], rtol=1e-5, atol=1e-6)
    assert b == pytest.approx(x[5], rel=1e-6)  # float32 factors, like the published tables
    # the solution is the minimizer: perturbing it raises the regularized loss
    def loss(w_, b_):
        pred = f.item_factors[items] @ w_ + b_ + f.item_bias[items] + f.global_mean
        return np.sum((r - pred) ** 2) + lam * (w_ @ w_ + b_ * b_)
    assert loss(x[:5], x[5]) < loss(x[:5] + 0.01, x[5]) and loss(x[:5], x[5]) < loss(x[:5], x[5] + 0.01)
    w0, b0 = als.fold_in(f, np.array([], dtype=int), np.array([]))
    assert not w0.any() and b0 == 0.0


def test_fold_in_with_separate_bias_regularization():
    f = make_factors(k=5)
    items = np.array([3, 17, 42, 8, 30, 55, 1])
    r = np.array([5.0, 3.5, 4.0, 1.0, 2.5, 4.5, 3.0])
    y = np.hstack([f.item_factors[items].astype(np.float64), np.ones((7, 1))])
    t = r - f.item_bias[items] - f.global_mean
    x = np.linalg.solve(y.T @ y + np.diag([0.3] * 5 + [3.0]), y.T @ t)
    w, b = ALS(ALSConfig(reg=0.3, weighted=False, reg_bias=3.0, reg_per_rating=0.0)).fold_in(f, items, r)
    np.testing.assert_allclose(w, x[:5], rtol=1e-5, atol=1e-6)
    assert b == pytest.approx(x[5], rel=1e-5)


def test_fold_in_agrees_with_als_kernel():
    from factorflow.models._solve import solve_block as solve
    f = make_factors(k=4)
    items = np.array([2, 9, 31, 44, 50])
    r = np.array([4.0, 2.0, 5.0, 3.5, 1.5], dtype=np.float32)
    for weighted in (False, True):
        fac, bias, _ = solve(np.array([0, 5], dtype=np.int64), items.astype(np.int32), r,
                             f.item_factors, f.item_bias, f.global_mean, 0.2, weighted)
        w, b = ALS(ALSConfig(reg=0.2, weighted=weighted, reg_bias=None, reg_per_rating=0.0)).fold_in(f, items, r)
        np.testing.assert_allclose(w, fac[0], rtol=1e-4, atol=1e-5)
        assert b == pytest.approx(float(bias[0]), abs=1e-5)


def test_popular_fallback_prefers_well_rated_items():
    f = make_factors(3, 6, k=2)
    f.item_bias[:] = [0.9, 0.5, 0.1, -0.2, 2.0, 0.0]
    counts = np.array([50, 40, 30, 20, 1, 0])
    ranked = rec.popular_fallback(f, counts, 3, min_ratings=10)
    assert ranked.fallback and ranked.item_idx.tolist() == [0, 1, 2]
    np.testing.assert_allclose(ranked.scores, 3.5 + f.item_bias[[0, 1, 2]])
    # not enough qualifying items: filled from items with any train rating, then the rest
    assert rec.popular_fallback(f, counts, 6, min_ratings=25).item_idx.tolist() == [0, 1, 2, 4, 3, 5]
    assert rec.popular_fallback(f, None, 2).item_idx.tolist() == [4, 0]


# --- CLI -----------------------------------------------------------------------------------


@pytest.fixture()
def store(tmp_path):
    f = make_factors()
    seen = make_seen(40, 60)
    users = pa.array(np.arange(40) * 10 + 1, pa.int64())
    items = pa.array(np.arange(60) + 100, pa.int64())
    titles = pa.array([f"Title {j}" for j in range(60)])
    reg.publish(str(tmp_path), "als", f, users, items,
                {"kind": "als", "params": {"reg": 0.1, "weighted": False}},
                seen=seen, item_titles=titles)
    return str(tmp_path), f, seen


def test_cli_recommend_json_known_user(store, capsys):
    path, f, seen = store
    assert main(["recommend", "--store", path, "--model", "als", "--user", "71", "-n", "7",
                 "--json", "--min-ratings", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    u = 7  # raw id 71
    want_i, want_s = brute_top(f, u, 7, seen[u].indices)
    assert [r["item"] for r in out] == (want_i + 100).tolist()
    assert all(isinstance(r["item"], int) and isinstance(r["score"], float) for r in out)
    assert not {r["item"] - 100 for r in out} & set(seen[u].indices)
    np.testing.assert_allclose([r["score"] for r in out], want_s, rtol=1e-5)
    assert out[0]["title"] == f"Title {want_i[0]}" and "fallback" not in out[0]


def test_cli_recommend_unknown_user_falls_back(store, capsys):
    path, f, seen = store
    assert main(["recommend", "--store", path, "--model", "als", "--user", "99999", "-n", "5",
                 "--json"]) == 0
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("user 99999 is not in model als (version ")
    assert err[0].endswith("showing popular items instead (fallback)")
    out = json.loads(cap.out)
    want = rec.popular_fallback(f, np.bincount(seen.indices, minlength=60), 5)
    assert [r["item"] for r in out] == (want.item_idx + 100).tolist()
    assert all(r["fallback"] is True for r in out)


def test_cli_missing_model_exit_2_one_line(tmp_path, capsys):
    assert main(["recommend", "--store", str(tmp_path), "--model", "nope", "--user", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("factorflow: error: no published model 'nope'")


def test_cli_fold_in_ratings_and_unknown_items(store, capsys, tmp_path):
    path, f, _ = store
    assert main(["recommend", "--store", path, "--model", "als", "--ratings",
                 "100=5,105=1,130=4.5", "-n", "4", "--json", "--min-ratings", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    # the model's own fold-in: model.json's params over ALS's defaults (reg_bias 3); reg_per_rating, added
    # after such versions were published, is the 0 they were trained with (ALSConfig.ADDED_FIELDS)
    model = ALS(ALSConfig(reg=0.1, weighted=False, reg_per_rating=0.0))
    w, b = model.fold_in(f, np.array([0, 5, 30]), np.array([5, 1, 4.5]))
    want = rec.top_n_for_vector(f, w, b, 4, np.array([0, 5, 30]))
    assert [r["item"] for r in out] == (want.item_idx + 100).tolist()
    assert not {100, 105, 130} & {r["item"] for r in out}
    csv_path = tmp_path / "mine.csv"
    csv_path.write_text("movieId,rating\n100,5\n105,1\n130,4.5\n")
    assert main(["recommend", "--store", path, "--model", "als", "--ratings-file", str(csv_path),
                 "-n", "4", "--json", "--min-ratings", "0"]) == 0
    assert json.loads(capsys.readouterr().out) == out
    assert main(["recommend", "--store", path, "--model", "als", "--ratings", "100=5,7=3,abc=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"factorflow: error: --ratings: items not in model als (version "
                   f"{reg.current_version(path, 'als')}): 7, abc"]


def test_cli_fold_in_uses_the_models_own_regularization(tmp_path, capsys):
    """No hard-coded λ: a version whose params record none folds in with ALS's defaults."""
    f = make_factors()
    store = str(tmp_path)
    reg.publish(store, "m", f, pa.array(np.arange(40)), pa.array(np.arange(60) + 100), {"kind": "als", "params": {}})
    assert main(["recommend", "--store", store, "--model", "m", "--ratings", "100=5,105=1,130=4.5,101=3",
                 "-n", "60", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    idx, r = np.array([0, 5, 30, 1]), np.array([5, 1, 4.5, 3])
    w, b = ALS().fold_in(f, idx, r)
    assert ALS().config.reg == 6.0 and ALS().config.reg_per_rating == 0.02
    want = rec.top_n_for_vector(f, w, b, 60, idx)
    assert [o["item"] - 100 for o in out] == want.item_idx.tolist()
    np.testing.assert_allclose([o["score"] for o in out], want.scores, atol=1e-6)
    old = ALSConfig(reg=0.1, reg_bias=None, reg_per_rating=0.0)  # the old hard-coded default
    w_old, b_old = ALS(old).fold_in(f, idx, r)
    assert not np.allclose(w_old, w)


@pytest.mark.parametrize("kind", ["no-such-kind", None, "no-fold"])
def test_cli_fold_in_refuses_a_kind_that_cannot(tmp_path, capsys, monkeypatch, kind):
    from factorflow.models import registry

    store = str(tmp_path)
    body = {} if kind is None else {"kind": "global-mean" if kind == "no-fold" else kind, "params": {}}
    reg.publish(store, "m", make_factors(3, 4, k=2), pa.array([1, 2, 3]), pa.array([10, 20, 30, 40]), body)
    if kind == "no-fold":  # a registered kind without the FoldsIn capability
        monkeypatch.setattr(registry, "model_from_params", lambda k, p: object())
    assert main(["recommend", "--store", store, "--model", "m", "--ratings", "10=5"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    shown = {"no-fold": "global-mean"}.get(kind, kind)
    assert line.startswith(f"factorflow: error: --ratings: model m (kind {shown}) cannot fold in new ratings")
    from factorflow.serving.foldin import fold_in

    with pytest.raises(ParameterError, match="cannot fold in"):
        fold_in(reg.load_model(store, "m"), np.array([0]), np.array([5.0]))


def test_cli_table_output_and_similar(store, capsys, tmp_path):
    path, f, _ = store
    assert main(["recommend", "--store", path, "--model", "als", "--user", "1", "-n", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["rank", "item", "score", "title"] and len(lines) == 4
    assert main(["similar", "--store", path, "--model", "als", "--item", "105", "-n", "3",
                 "--json", "--min-ratings", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["item"] - 100 for r in out] == similar_items(f, 5, 3).item_idx.tolist()
    assert main(["similar", "--store", path, "--model", "als", "--item", "5"]) == 2
    assert "not in model als" in capsys.readouterr().err


def test_cli_titles_file(tmp_path, capsys):
    f = make_factors(3, 4, k=2)
    reg.publish(str(tmp_path), "m", f, pa.array([1, 2, 3]), pa.array([10, 20, 30, 40]), {})
    movies = tmp_path / "movies.csv"
    movies.write_text('movieId,title,genres\n10,"Heat, The (1995)",Action\n20,B,x\n30,C,x\n')
    assert main(["recommend", "--store", str(tmp_path), "--model", "m", "--user", "2", "-n", "4",
                 "--json", "--titles", str(movies)]) == 0
    out = json.loads(capsys.readouterr().out)
    titles = {r["item"]: r.get("title") for r in out}
    assert titles == {10: "Heat, The (1995)", 20: "B", 30: "C", 40: None}


def test_cli_min_ratings_restricts_candidates(store, capsys):
    path, f, seen = store
    counts = np.bincount(seen.indices, minlength=60)
    assert main(["recommend", "--store", path, "--model", "als", "--user", "71", "-n", "10",
                 "--json", "--min-ratings", "10"]) == 0
    out = json.loads(capsys.readouterr().out)
    want = rec.top_n(f, 7, 10, seen[7].indices, allowed=counts >= 10)
    assert [r["item"] - 100 for r in out] == want.item_idx.tolist()
    assert len(out) == 10 and all(counts[r["item"] - 100] >= 10 for r in out)
    assert 0 < (counts < 10).sum() and set(want.item_idx) != set(rec.top_n(f, 7, 10, seen[7].indices).item_idx)


def test_cli_version_flag_and_string_ids(tmp_path, capsys):
    store = str(tmp_path)
    f1, f2 = make_factors(3, 5, k=2, seed=1), make_factors(3, 5, k=2, seed=2)
    users, items = pa.array(["ann", "bob", "cy"]), pa.array(list("abcde"))
    v1 = reg.publish(store, "m", f1, users, items, {})
    reg.publish(store, "m", f2, users, items, {})
    assert main(["recommend", "--store", store, "--model", "m", "--user", "bob", "-n", "2",
                 "--json", "--version", v1]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["item"] for r in out] == [items[j].as_py() for j in rec.top_n(f1, 1, 2).item_idx]
    assert main(["recommend", "--store", store, "--model", "m", "--user", "bob", "--version",
                 "20000101T000000000000Z-000000"]) == 2
    assert "not a complete version" in capsys.readouterr().err
