"""Evaluation metrics on hand-computed tiny cases."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from factorflow.evaluation.metrics import evaluate, rating_metrics, topn_metrics
from factorflow.factors import FactorArrays
from factorflow.models.als import ALS, ALSConfig


def tiny_factors() -> FactorArrays:
    # user 1 is unknown (zero factors and bias), item 2 is unknown.
    return FactorArrays(
        user_factors=np.array([[1.0], [0.0]], np.float32),
        item_factors=np.array([[2.0], [1.0], [0.0]], np.float32),
        user_bias=np.array([0.5, 0.0], np.float32),
        item_bias=np.array([0.1, -0.2, 0.0], np.float32),
        global_mean=3.0,
    )


def test_rating_metrics_hand_computed_with_clipping_and_cold_rows():
    # predictions 5.6 -> clipped 5.0, 4.3, 3.1 (μ + c), 3.0 (μ); errors 1.0, -0.2, 0.1, 1.0
    m = rating_metrics(tiny_factors(), np.array([0, 0, 1, 1]), np.array([0, 1, 0, 2]),
                       np.array([4.0, 4.5, 3.0, 2.0]), cold=np.array([False, False, True, True]))
    assert m["n"] == 4
    assert m["rmse"] == pytest.approx(math.sqrt(2.05 / 4), rel=1e-6)
    assert m["mae"] == pytest.approx(2.3 / 4, rel=1e-6)
    assert m["warm"] == pytest.approx({"rmse": math.sqrt(1.04 / 2), "mae": 0.6, "n": 2}, rel=1e-6)
    assert m["cold"] == pytest.approx({"rmse": math.sqrt(1.01 / 2), "mae": 0.55, "n": 2}, rel=1e-6)
    lo = rating_metrics(tiny_factors(), np.array([1]), np.array([2]), np.array([5.0]),
                        rating_range=(1.0, 2.5))
    assert lo["rmse"] == pytest.approx(2.5) and "warm" not in lo


def ranking_case():
    fa = FactorArrays(
        user_factors=np.array([[1.0], [-1.0], [0.0]], np.float32),
        item_factors=np.array([[5.0], [4.0], [3.0], [2.0], [1.0]], np.float32),
        user_bias=np.zeros(3, np.float32), item_bias=np.zeros(5, np.float32), global_mean=0.0)
    train = sp.csr_matrix((np.ones(2, np.float32), ([0, 1], [0, 4])), shape=(3, 5))
    users = np.array([0, 0, 0, 1, 1, 2])
    items = np.array([2, 4, 3, 3, 0, 1])
    ratings = np.array([5.0, 4.5, 2.0, 4.0, 5.0, 3.0])
    return fa, train, users, items, ratings


@pytest.mark.parametrize("batch_users", [1, 1024])
def test_topn_hand_computed(batch_users):
    fa, train, users, items, ratings = ranking_case()
    # user 0 ranks unseen items 1,2,3,4: top-2 = [1, 2], relevant {2, 4}: hit at rank 2.
    # user 1 ranks unseen items 3,2,1,0: top-2 = [3, 2], relevant {3 (=4.0), 0}: hit at rank 1.
    # user 2 has no relevant test item and is not evaluated.
    m = topn_metrics(fa, train, users, items, ratings, n=2, batch_users=batch_users)
    a = 1 / math.log2(3)
    assert m["n_users_evaluated"] == 2
    assert m["precision@2"] == pytest.approx(0.5)
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx((a / (1 + a) + 1 / (1 + a)) / 2)
    only0 = topn_metrics(fa, train, users[:3], items[:3], ratings[:3], n=2)
    assert only0["ndcg@2"] == pytest.approx(a / (1 + a))
    m3 = topn_metrics(fa, train, users[:3], items[:3], ratings[:3], n=3)
    # top-3 = [1, 2, 3]: one hit of 2 relevant; precision 1/3, recall 1/2.
    assert m3["precision@3"] == pytest.approx(1 / 3) and m3["recall@3"] == pytest.approx(0.5)


def test_topn_ties_break_by_item_index_and_seen_items_are_excluded():
    fa = FactorArrays(np.zeros((1, 0), np.float32), np.zeros((4, 0), np.float32),
                      np.zeros(1, np.float32), np.zeros(4, np.float32), 3.0)
    train = sp.csr_matrix((np.ones(1, np.float32), ([0], [0])), shape=(1, 4))
    # all scores tie: top-1 among unseen {1,2,3} is item 1.
    hit = topn_metrics(fa, train, np.array([0]), np.array([1]), np.array([5.0]), n=1)
    miss = topn_metrics(fa, train, np.array([0]), np.array([2]), np.array([5.0]), n=1)
    assert hit["precision@1"] == 1.0 and miss["precision@1"] == 0.0
    none = topn_metrics(fa, train, np.array([0]), np.array([2]), np.array([1.0]), n=1)
    assert none["n_users_evaluated"] == 0 and none["ndcg@1"] == 0.0


def test_evaluate_on_a_fitted_model_is_nan_free_for_unknown_users_and_items():
    rng = np.random.default_rng(0)
    dense = np.where(rng.random((12, 10)) < 0.5, rng.integers(1, 6, (12, 10)), 0).astype(np.float32)
    dense[10:, :] = 0  # users 10, 11 unknown
    dense[:, 9] = 0  # item 9 unknown
    train = sp.csr_matrix(dense)
    fa = ALS(ALSConfig(rank=2, sweeps=3)).fit(train).factors()
    test = {"user_idx": np.array([0, 10, 11, 1], np.int32), "item_idx": np.array([9, 0, 9, 2], np.int32),
            "rating": np.array([4.0, 5.0, 3.0, 4.5], np.float32),
            "cold_user": np.array([False, True, True, False]),
            "cold_item": np.array([True, False, True, False])}
    m = evaluate(fa, train, test)
    assert m["n"] == 4 and m["cold"]["n"] == 3 and m["warm"]["n"] == 1
    assert all(np.isfinite(m[k]) for k in ("rmse", "mae", "precision@10", "recall@10", "ndcg@10"))
    assert m["n_users_evaluated"] == 3
    assert evaluate(fa, train, pa.table(test)) == m
