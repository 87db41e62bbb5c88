"""The fast top-N, pair-scoring and metric paths equal the plain reference (tests/topn_reference.py).

Every path of ``serving.topn.top_n_blocks`` is checked against the reference (score the block with
``score_users``, write -inf over excluded items, rank each row by score then index): the
factor-table path (cache-sized tiles on single-threaded BLAS, biases added in the compiled
selection), the rank-0 path (the baselines: one global order for all users) and the generic
``Scorer`` path (networks, mapped champions). Where the arithmetic is exact (quantized tables, the
baselines, given score tables) items, order and score bits must be identical and the metrics equal
to 1e-12. Random factor tables: a tile's BLAS product may round the last bit differently from the
reference's block, so scores must agree to float32 rounding and items may differ only where their
exact scores are within that of each other (:func:`assert_near_tie_equal`).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import topn_reference as ref

from factorflow.evaluation.metrics import evaluate, rating_metrics, topn_metrics, topn_metrics_at
from factorflow.factors import FactorArrays
from factorflow.models.baselines import BiasBaseline, GlobalMean
from factorflow.serving import topn


def factors(n_users=57, n_items=83, k=5, seed=0, quantize=None) -> FactorArrays:
    """Random tables; ``quantize`` rounds everything to multiples of it (many exact ties)."""
    rng = np.random.default_rng(seed)
    parts = [rng.normal(size=(n_users, k)), rng.normal(size=(n_items, k)),
             rng.normal(scale=0.3, size=n_users), rng.normal(scale=0.3, size=n_items)]
    if quantize:
        parts = [np.round(p / quantize) * quantize for p in parts]
    w, v, b, c = (p.astype(np.float32) for p in parts)
    return FactorArrays(w, v, b, c, 3.5)


def seen_matrix(n_users, n_items, density=0.2, seed=1, shuffle=False) -> sp.csr_matrix:
    m = sp.random(n_users, n_items, density=density, format="csr", random_state=seed, dtype=np.float32)
    m.data[:] = 4.0
    if shuffle:  # unsorted column indices within rows
        m = sp.csr_matrix((m.data.copy(), m.indices.copy(), m.indptr.copy()), shape=m.shape)
        for r in range(m.shape[0]):
            lo, hi = m.indptr[r], m.indptr[r + 1]
            m.indices[lo:hi] = m.indices[lo:hi][::-1]
        m.has_sorted_indices = False
    return m


NEAR_TIE = 1e-5  # relative: scores this close may come in either order when the arithmetic is inexact


def assert_same_blocks(scorer, seen, n, *, exact=True, **kw):
    """The fast blocks equal the reference's: bit for bit when ``exact``, else up to near-ties."""
    got = list(topn.top_n_blocks(scorer, seen, n, **kw))
    kw.pop("progress", None)
    want = list(ref.top_n_blocks(scorer, seen, n, **kw))
    assert len(got) == len(want)
    for (gu, gi, gs, gc), (wu, wi, ws, wc) in zip(got, want, strict=True):
        np.testing.assert_array_equal(gu, wu)
        np.testing.assert_array_equal(gc, wc)
        filled = np.arange(gi.shape[1])[None, :] < gc[:, None]
        assert np.all(gs[~filled] == -np.inf)
        if exact:
            np.testing.assert_array_equal(gi[filled], wi[filled])
            # bit for bit, including the sign of zero
            np.testing.assert_array_equal(gs[filled].view(np.int32), ws[filled].view(np.int32))
        else:
            assert_near_tie_equal(scorer, seen, kw.get("allowed"), gu, gi, gs, gc, wi, ws)
    return got


def assert_near_tie_equal(f, seen, allowed, users, gi, gs, counts, wi, ws):
    """Per row: the same number of items, scores equal to float32 rounding position by position, and
    wherever the items differ the fast path's item scores (exactly, in float64) within
    :data:`NEAR_TIE` of the reference's score at that position; every item unseen, allowed, once."""
    seen = None if seen is None else sp.csr_matrix(seen)
    for r, u in enumerate(users):
        c = int(counts[r])
        items = gi[r, :c]
        assert len(set(items.tolist())) == c
        if seen is not None:
            assert not np.isin(items, seen.indices[seen.indptr[u]:seen.indptr[u + 1]]).any()
        if allowed is not None:
            assert np.asarray(allowed, bool)[items].all()
        tol = NEAR_TIE * np.maximum(1.0, np.abs(ws[r, :c].astype(np.float64)))
        assert np.all(np.abs(gs[r, :c].astype(np.float64) - ws[r, :c]) <= tol)
        exact = f.predict(np.full(c, u), items)  # float64
        assert np.all(np.abs(exact - gs[r, :c]) <= tol)
        differ = items != wi[r, :c]
        assert np.all(np.abs(exact[differ] - ws[r, :c][differ]) <= tol[differ])


class DenseScorer:
    """A non-factor Scorer: a fixed table of scores (what a network gives), any float dtype."""

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
        return self.table[np.asarray(users)].copy()


# --- the factor-table path ------------------------------------------------------------------------


@pytest.mark.parametrize("block_users", [1, 7, 64, 2048])
@pytest.mark.parametrize("quantize", [None, 0.5])
def test_factor_path_equals_reference(block_users, quantize):
    f = factors(quantize=quantize)
    seen = seen_matrix(57, 83)
    exact = quantize is not None  # quantized tables: every product exact, whatever the blocking
    assert_same_blocks(f, seen, 10, block_users=block_users, exact=exact)
    assert_same_blocks(f, None, 4, block_users=block_users, exact=exact)
    allowed = np.arange(83) % 4 != 1
    assert_same_blocks(f, seen, 6, block_users=block_users, allowed=allowed, exact=exact)


@pytest.mark.parametrize("quantize", [None, 0.5])
def test_factor_path_over_many_tiles(monkeypatch, quantize):
    """Small tiles, so each user's list is carried across item tiles (seen items in several tiles)
    and a block's tiles go to every thread."""
    monkeypatch.setattr(topn, "TILE_USERS", 8)
    monkeypatch.setattr(topn, "TILE_ITEMS", 16)
    f = factors(quantize=quantize)
    seen = seen_matrix(57, 83, density=0.4, seed=2, shuffle=True)
    exact = quantize is not None
    assert_same_blocks(f, seen, 10, block_users=30, exact=exact)
    assert_same_blocks(f, seen, 83, block_users=57, exact=exact, allowed=np.arange(83) % 5 != 3)
    assert_same_blocks(f, None, 1, users=np.array([56, 3, 3, 20]), block_users=3, exact=exact)


def test_factor_path_users_subset_long_lists_and_unsorted_seen():
    f = factors(quantize=0.25)
    seen = seen_matrix(57, 83, density=0.6, shuffle=True)
    users = np.array([5, 0, 56, 5, 12, 33, 40])
    assert_same_blocks(f, seen, 83, users=users, block_users=3)  # n = every item: the whole order
    assert_same_blocks(f, seen, 30, users=users, block_users=4, allowed=np.arange(83) < 50)
    full = sp.csr_matrix(np.ones((57, 83), np.float32))  # everything seen: empty lists
    for _, _, _, counts in topn.top_n_blocks(f, full, 5):
        assert not counts.any()


def test_factor_path_at_a_realistic_rank_and_size():
    """K = 64, more items and users than one tile holds: the reference's scores to float32
    rounding, its items up to near-ties; quantized, exactly its items and bits."""
    f = factors(n_users=300, n_items=2500, k=64, seed=3)
    seen = seen_matrix(300, 2500, density=0.05, seed=4)
    assert_same_blocks(f, seen, 10, block_users=256, exact=False)
    assert_same_blocks(f, seen, 10, users=np.arange(3, 300, 2), block_users=100, exact=False)
    q = factors(n_users=300, n_items=2500, k=64, seed=3, quantize=0.25)
    assert_same_blocks(q, seen, 10, block_users=300, allowed=np.arange(2500) % 7 != 0)


def test_non_finite_factor_scores_are_never_ranked():
    f = factors(quantize=0.5)
    f.item_bias[[3, 9]] = [np.inf, -np.inf]
    f.item_bias[11] = np.nan
    f.user_bias[4] = np.nan
    got = assert_same_blocks(f, seen_matrix(57, 83), 12, block_users=16)
    counts = np.concatenate([c for *_, c in got])
    items = np.concatenate([i for _, i, _, _ in got])
    assert counts[4] == 0 and not np.isin(items[counts > 0][:, :3], [3, 9, 11]).any()


# --- the rank-0 path (baselines) --------------------------------------------------------------------


def rank0(user_bias, item_bias, mu) -> FactorArrays:
    nu, ni = len(user_bias), len(item_bias)
    return FactorArrays(np.zeros((nu, 0), np.float32), np.zeros((ni, 0), np.float32),
                        np.asarray(user_bias, np.float32), np.asarray(item_bias, np.float32), mu)


@pytest.mark.parametrize("block_users", [1, 10, 2048])
def test_baselines_use_one_global_order_equal_to_scoring(block_users):
    rng = np.random.default_rng(5)
    train = seen_matrix(60, 90, density=0.3, seed=6)
    train.data[:] = rng.integers(1, 11, train.nnz) / 2
    for model in (GlobalMean(), BiasBaseline(), BiasBaseline(reg_user=0.0, reg_item=0.0)):
        f = model.fit(train).factors()
        assert f.rank == 0
        assert_same_blocks(f, train, 10, block_users=block_users)
        assert_same_blocks(f, train, 90, block_users=block_users, allowed=np.arange(90) % 3 > 0)
    quantized = rank0(np.round(rng.normal(size=60) * 4) / 4, np.round(rng.normal(size=90) * 4) / 4, 3.0)
    assert_same_blocks(quantized, train, 7, block_users=block_users)


def test_baseline_ties_made_by_rounding_are_settled_by_index():
    """Distinct c_j + μ one ulp apart collapse to one score once a large b_u is added: the order
    must then be by item index, exactly as ranking the scored row does."""
    ni = 40
    rng = np.random.default_rng(7)
    c = (np.float32(1.0) + np.arange(ni, dtype=np.float32) * np.spacing(np.float32(1.0)))[rng.permutation(ni)]
    c[[4, 17, 30]] = c[5]  # exact duplicates too
    b = np.array([0.0, 3.0, 5.0, 1000.0, -0.0, -3.0, 2.0**20, -(2.0**21)], np.float32)
    f = rank0(b, c, 0.0)
    seen = sp.csr_matrix((np.ones(6, np.float32), ([0, 1, 1, 3, 3, 6], [2, 5, 9, 0, 39, 1])), shape=(8, ni))
    for n in (1, 3, 10, 40):
        assert_same_blocks(f, seen, n, block_users=3)
    top = next(topn.top_n_blocks(f, seen, 5, users=np.array([3])))[1][0]
    assert top.tolist() == [1, 2, 3, 4, 5]  # every score ties at b = 1000: smallest unseen indices


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference scores inf + -inf
def test_baseline_with_non_finite_biases():
    f = rank0([0.5, np.inf, np.nan, -np.inf, 1e38], [1.0, np.inf, -2.0, np.nan, 3e38, -np.inf], 0.0)
    for n in (1, 2, 6):
        assert_same_blocks(f, None, n, block_users=2)


# --- the generic Scorer path ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_any_scorer_equals_reference_with_non_finite_scores(dtype):
    rng = np.random.default_rng(8)
    table = np.round(rng.normal(size=(45, 70)) * 3).astype(dtype)  # many ties
    table[2, [5, 6, 7]] = [np.nan, np.inf, -np.inf]
    table[9] = np.nan
    scorer = DenseScorer(table)
    seen = seen_matrix(45, 70, density=0.25, seed=9, shuffle=True)
    for block_users in (1, 8, 2048):
        assert_same_blocks(scorer, seen, 9, block_users=block_users)
        assert_same_blocks(scorer, seen, 70, block_users=block_users, allowed=np.arange(70) % 5 != 0)


def test_network_and_mapped_scorers_go_through_the_generic_path():
    from factorflow.pipeline.champion import MappedScorer
    from factorflow.serving.network import NetworkScorer

    f = factors(n_users=30, n_items=50, k=3, quantize=0.5)

    class Net:  # a stand-in for a Keras network: predict({"user", "item"}) -> r̂ - μ
        def predict(self, x, batch_size=None, verbose=0):
            u, i = x["user"].astype(np.int64), x["item"].astype(np.int64)
            return (f.predict(u, i) - f.global_mean).astype(np.float32)[:, None]

    net = NetworkScorer(Net(), 30, 50, f.global_mean)
    seen = seen_matrix(30, 50, seed=10)
    assert_same_blocks(net, seen, 8, block_users=7)
    user_map, item_map = np.r_[np.arange(25), -1, -1, 3, 2, -1], np.r_[np.arange(45)[::-1], -1, -1, 0, 1, -1]
    fallback = rank0(np.zeros(30), np.linspace(-1, 1, 50), f.global_mean)
    mapped = MappedScorer(net, user_map, item_map, fallback)
    assert_same_blocks(mapped, seen, 8, block_users=6, allowed=np.arange(50) != 7)
    u, i = np.nonzero(seen.toarray())
    r = np.where(np.arange(len(u)) % 3 == 0, 5.0, 2.0)
    assert topn_metrics(net, seen, u, i, r, n=5) == pytest.approx(ref.topn_metrics(net, seen, u, i, r, n=5),
                                                                  abs=1e-12)


# --- the batch table, the metrics, pair scores ----------------------------------------------------


def test_recommend_all_equals_reference_rows():
    f = factors(quantize=0.5)
    seen = seen_matrix(57, 83)
    allowed = np.arange(83) % 6 != 2
    for scorer in (f, rank0(f.user_bias, f.item_bias, 3.5), DenseScorer(f.score_users(np.arange(57)))):
        t = topn.recommend_all(scorer, seen, 9, allowed=allowed, block_users=5)
        want = ref.recommend_rows(scorer, seen, 9, allowed=allowed, block_users=5)
        for name in ("user_idx", "rank", "item_idx"):
            np.testing.assert_array_equal(t.column(name).to_numpy(), want[name])
        np.testing.assert_array_equal(t.column("score").to_numpy(), want["score"].astype(np.float32))


def test_topn_metrics_equal_reference_for_models_and_baselines():
    rng = np.random.default_rng(11)
    n_u, n_i = 70, 120
    train = seen_matrix(n_u, n_i, density=0.15, seed=12)
    train.data[:] = rng.integers(1, 11, train.nnz) / 2
    test = sp.random(n_u, n_i, density=0.1, format="coo", random_state=13)
    test_u, test_i = test.row.astype(np.int64), test.col.astype(np.int64)
    test_r = rng.integers(1, 11, len(test_u)) / 2
    scorers = [factors(n_u, n_i, k=4, seed=14), factors(n_u, n_i, k=4, seed=15, quantize=0.5),
               GlobalMean().fit(train).factors(), BiasBaseline().fit(train).factors()]
    for f in scorers:
        for n, batch in ((10, 1024), (3, 7), (40, 16)):
            got = topn_metrics(f, train, test_u, test_i, test_r, n=n, batch_users=batch)
            want = ref.topn_metrics(f, train, test_u, test_i, test_r, n=n, batch_users=batch)
            assert list(got) == list(want)
            assert got == pytest.approx(want, abs=1e-12, rel=1e-12)
            assert got["n_users_evaluated"] == want["n_users_evaluated"] > 0
        both = topn_metrics_at(f, train, test_u, test_i, test_r, ns=(10, 3, 25))
        assert list(both) == ["precision@10", "recall@10", "ndcg@10", "n_users_evaluated",
                              "precision@3", "recall@3", "ndcg@3", "precision@25", "recall@25", "ndcg@25"]
        for n in (10, 3, 25):
            one = topn_metrics(f, train, test_u, test_i, test_r, n=n)
            assert {k: both[k] for k in one} == pytest.approx(one, abs=1e-12, rel=1e-12)


def test_relevance_index_counts_rows_and_matches_distinct_items():
    """Duplicate test rows count in n_relevant (recall's denominator) but hit once, as in the
    reference; a prepared index gives the same metrics without the test arrays."""
    from factorflow.evaluation.metrics import relevance

    f = factors(30, 50, k=3, seed=22, quantize=0.5)
    train = seen_matrix(30, 50, seed=23)
    u = np.array([4, 4, 4, 9, 2, 2, 29, 9, 4])
    i = np.array([7, 7, 49, 0, 3, 8, 1, 0, 11])
    r = np.array([5.0, 4.5, 4.0, 4.0, 1.0, 4.5, 3.5, 5.0, 2.0])
    rel = relevance(u, i, r)
    assert rel.users.tolist() == [2, 4, 9] and rel.n_relevant.tolist() == [1, 3, 2]
    assert [rel.items[rel.ptr[e]:rel.ptr[e + 1]].tolist() for e in range(3)] == [[8], [7, 49], [0]]
    want = ref.topn_metrics(f, train, u, i, r, n=20)
    assert topn_metrics(f, train, u, i, r, n=20) == pytest.approx(want, abs=1e-12)
    empty = np.array([], int)
    assert topn_metrics_at(f, train, empty, empty, empty, ns=(20,), prepared=rel) == pytest.approx(want, abs=1e-12)
    assert relevance(empty, empty, np.array([])).users.size == 0


def test_evaluate_also_at_adds_cut_offs_from_one_pass():
    f = factors(40, 60, k=3, seed=16)
    train = seen_matrix(40, 60, seed=17)
    rng = np.random.default_rng(18)
    test = {"user_idx": rng.integers(0, 40, 200), "item_idx": rng.integers(0, 60, 200),
            "rating": rng.integers(1, 11, 200) / 2.0}
    m = evaluate(f, train, test, also_at=(20, 10))
    assert m == pytest.approx({**evaluate(f, train, test), **topn_metrics(f, train, test["user_idx"],
                                                                          test["item_idx"], test["rating"], n=20)},
                              abs=1e-12)


def test_predict_equals_the_einsum_reference():
    f = factors(200, 150, k=64, seed=19)
    rng = np.random.default_rng(20)
    u, i = rng.integers(0, 200, 5000), rng.integers(0, 150, 5000)
    np.testing.assert_allclose(f.predict(u, i), ref.predict(f, u, i), rtol=1e-14, atol=1e-13)
    np.testing.assert_array_equal(f.score_pairs(u, i), f.predict(u, i))
    np.testing.assert_allclose(f.predict([-1, 3], [0, -150]), ref.predict(f, [199, 3], [0, 0]), rtol=1e-14)
    assert f.predict(np.array([], int), np.array([], int)).shape == (0,)
    with pytest.raises(IndexError, match="out of bounds"):
        f.predict([200], [0])
    with pytest.raises(IndexError, match="out of bounds"):
        f.predict([0], [-151])
    f64 = FactorArrays(f.user_factors.astype(np.float64), f.item_factors.astype(np.float64),
                       f.user_bias.astype(np.float64), f.item_bias.astype(np.float64), 3.5)
    np.testing.assert_allclose(f64.predict(u, i), ref.predict(f64, u, i), rtol=1e-14, atol=1e-13)
    r = np.clip(rng.normal(3.5, 1, 5000), 0.5, 5)
    got = rating_metrics(f, u, i, r, cold=u % 7 == 0)
    pred = np.clip(ref.predict(f, u, i), 0.5, 5.0) - r
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean(pred**2)), abs=1e-12)
    assert got["mae"] == pytest.approx(np.mean(np.abs(pred)), abs=1e-12)


def test_compiled_rating_metrics_equal_the_scored_pairs():
    """Factor tables: errors summed in one compiled pass (pairs, or a CSR) equal clipping the
    reference predictions; warm/cold groups, an empty group, NaN scores and negative indices."""
    from factorflow.evaluation.metrics import train_rating_metrics

    f = factors(60, 90, k=8, seed=25)
    rng = np.random.default_rng(26)
    u, i = rng.integers(0, 60, 4000), rng.integers(0, 90, 4000)
    r = rng.integers(1, 11, 4000) / 2.0
    pred = np.clip(ref.predict(f, u, i), 1.0, 4.5) - r

    def want(mask):
        e = pred[mask]
        return {"rmse": np.sqrt(np.mean(e**2)), "mae": np.mean(np.abs(e)), "n": int(mask.sum())}

    cold = u % 5 == 0
    got = rating_metrics(f, u, i, r.astype(np.float32), rating_range=(1.0, 4.5), cold=cold)
    assert {k: got[k] for k in ("rmse", "mae", "n")} == pytest.approx(want(np.ones(4000, bool)), rel=1e-12)
    assert got["warm"] == pytest.approx(want(~cold), rel=1e-12) and got["cold"] == pytest.approx(want(cold), rel=1e-12)
    assert rating_metrics(f, u, i, r, cold=np.zeros(4000, bool))["cold"] == {"rmse": None, "mae": None, "n": 0}
    neg = rating_metrics(f, u - 60, i, r, rating_range=(1.0, 4.5))  # NumPy's indexing: the generic path
    assert neg == pytest.approx(want(np.ones(4000, bool)), rel=1e-12)
    train = seen_matrix(60, 90, density=0.3, seed=27)
    train.data[:] = rng.integers(1, 11, train.nnz) / 2
    tu = np.repeat(np.arange(60), np.diff(train.indptr))
    assert train_rating_metrics(f, train) == pytest.approx(
        rating_metrics(DenseScorer(f.score_users(np.arange(60)).astype(np.float64)), tu, train.indices, train.data),
        rel=1e-6)  # float32 table scores against float64 pairs
    assert train_rating_metrics(f, train) == pytest.approx(rating_metrics(f, tu, train.indices, train.data), rel=1e-12)
    f.user_bias[3] = np.nan  # a NaN score stays NaN through the clip, as np.clip keeps it
    assert np.isnan(rating_metrics(f, np.array([3, 4]), np.array([0, 0]), np.array([3.0, 3.0]))["rmse"])


def test_score_users_parts_compose_to_score_users():
    f = factors(20, 33, k=6, seed=21)
    who = np.array([3, 0, 19, 3])
    item_t, offset = f.item_terms()
    buf = np.empty((4, 33), np.float32)
    prod = f.user_products(who, item_t, out=buf)
    assert prod is buf
    np.testing.assert_array_equal((prod + f.user_bias[who, None]) + offset, f.score_users(who))


def test_bad_users_and_allowed_are_one_line_errors():
    from factorflow.errors import ParameterError

    f = factors()
    with pytest.raises(ParameterError, match=r"users: indices must be in \[0, 57\)"):
        next(topn.top_n_blocks(f, None, 3, users=np.array([0, 57])))
    with pytest.raises(ParameterError, match="allowed: shape"):
        next(topn.top_n_blocks(f, None, 3, allowed=np.ones(5, bool)))


def test_single_threaded_blas_scope_restores_the_thread_count():
    from factorflow.serving import _blas

    lib = _blas.openblas()
    if lib is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS found in this process")
    before = lib.get_threads()
    with _blas.single_threaded_blas() as blas:
        assert blas is lib and lib.get_threads() == 1
        with _blas.single_threaded_blas():  # an overlapping scope (another thread's) ...
            assert lib.get_threads() == 1
        assert lib.get_threads() == 1  # ... does not restore the count while the first is open
    assert lib.get_threads() == before


def test_tiles_without_openblas_and_with_a_32_bit_int_cblas(monkeypatch):
    """Another BLAS: the same tiles through np.matmul on one thread. An LP64 OpenBLAS (SciPy's own,
    when loaded) drives the compiled kernel as NumPy's ILP64 one does."""
    import contextlib

    import scipy.linalg  # noqa: F401 - loads SciPy's OpenBLAS

    from factorflow.serving import _blas

    monkeypatch.setattr(topn, "TILE_USERS", 8)
    monkeypatch.setattr(topn, "TILE_ITEMS", 16)
    f = factors(quantize=0.5)
    seen = seen_matrix(57, 83, density=0.3, seed=24)
    allowed = np.arange(83) % 3 != 0
    monkeypatch.setattr(topn, "single_threaded_blas", lambda: contextlib.nullcontext(None))
    assert_same_blocks(f, seen, 10, block_users=20, allowed=allowed)
    lp64 = [p for p in _blas._candidates() if "scipy.libs" in p]
    lib = _blas._load(lp64[0]) if lp64 else None
    if lib is None:
        pytest.skip("SciPy's OpenBLAS not found")
    assert lib.sgemm.argtypes[3] is not _blas.openblas().sgemm.argtypes[3]  # int32 here, int64 in NumPy's
    monkeypatch.setattr(topn, "single_threaded_blas", lambda: contextlib.nullcontext(lib))
    assert_same_blocks(f, seen, 10, block_users=20, allowed=allowed)
