"""Evaluation of a fitted model on a test split (pure NumPy), through the Scorer interface.

Every function takes a :class:`~factorflow.serving.scoring.Scorer` (a
:class:`~factorflow.factors.FactorArrays`, or any model that scores (user, item) pairs).
Rating metrics: RMSE and MAE of r̂ (``score_pairs``; for factor models w·u + b + c + μ)
clipped to the rating range. Users or items absent from train have zero factors and bias, so
they fall back to μ plus the known bias: never NaN. Top-N metrics (``score_users``): for each
test user with at least one relevant test item (rating ≥ ``relevant_at``), rank every item not
seen in train by score and compute precision@n, recall@n and NDCG@n (binary relevance,
DCG = Σ rel_k / log2(k+1), ideal DCG from min(#relevant, n) hits), averaged over those users.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from factorflow.errors import ParameterError
from factorflow.factors import FactorArrays

if TYPE_CHECKING:
    from factorflow.serving.scoring import Scorer

__all__ = ["Relevance", "evaluate", "rating_metrics", "relevance", "topn_metrics", "topn_metrics_at",
           "train_rating_metrics"]


def _errors(err: np.ndarray) -> dict[str, float | int | None]:
    n = int(err.size)
    if n == 0:
        return {"rmse": None, "mae": None, "n": 0}  # JSON null: nothing to average
    return {"rmse": float(np.sqrt(np.dot(err, err) / n)), "mae": float(np.mean(np.abs(err))), "n": n}


def _from_sums(sums: np.ndarray) -> dict[str, float | int | None]:
    """:func:`_errors` from (Σ e², Σ |e|, count)."""
    n = int(sums[2])
    if n == 0:
        return {"rmse": None, "mae": None, "n": 0}
    return {"rmse": float(np.sqrt(sums[0] / n)), "mae": float(sums[1] / n), "n": n}


def _in_range(idx: np.ndarray, size: int) -> bool:
    return idx.size == 0 or (int(idx.min()) >= 0 and int(idx.max()) < size)


def rating_metrics(
    scorer: Scorer,
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    *,
    rating_range: tuple[float, float] = (0.5, 5.0),
    cold: np.ndarray | None = None,
) -> dict[str, Any]:
    """``{rmse, mae, n}`` of clipped predictions; with ``cold`` (bool per row) also ``warm``/``cold``.

    An empty subset reports ``n = 0`` and rmse/mae ``None`` (no rows; stays valid JSON). Factor
    tables are scored and summed in one compiled pass (``factorflow.evaluation._errors``:
    the predictions never exist as an array); any other scorer through ``score_pairs``.
    """
    lo, hi = float(rating_range[0]), float(rating_range[1])
    if type(scorer) is FactorArrays:
        u, i = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        r = np.asarray(ratings)
        if u.shape == i.shape == r.shape and u.ndim == 1 and _in_range(u, scorer.n_users) and _in_range(
                i, scorer.n_items):
            from factorflow.evaluation._errors import pair_error_sums

            group = np.zeros(0, np.uint8) if cold is None else np.asarray(cold, dtype=bool).astype(np.uint8)
            w, v = np.ascontiguousarray(scorer.user_factors), np.ascontiguousarray(scorer.item_factors)
            sums = pair_error_sums(w, v, scorer.user_bias, scorer.item_bias, float(scorer.global_mean), u, i, r,
                                   lo, hi, group, 1 if cold is None else 2)
            out: dict[str, Any] = dict(_from_sums(sums.sum(axis=0)))
            if cold is not None:
                out["warm"], out["cold"] = _from_sums(sums[0]), _from_sums(sums[1])
            return out
    err = np.clip(scorer.score_pairs(users, items), lo, hi).astype(np.float64, copy=False)
    err -= np.asarray(ratings)  # in place: clip made a new array (float64 arithmetic, as before)
    out = dict(_errors(err))
    if cold is not None:
        cold = np.asarray(cold, dtype=bool)
        out["warm"] = _errors(err[~cold])
        out["cold"] = _errors(err[cold])
    return out


def train_rating_metrics(scorer: Scorer, train_csr: sp.spmatrix, *,
                         rating_range: tuple[float, float] = (0.5, 5.0)) -> dict[str, Any]:
    """:func:`rating_metrics` of every rating of a users × items CSR (e.g. the train RMSE); factor
    tables in one compiled pass over the CSR (no arrays of users, pairs or predictions)."""
    train = sp.csr_matrix(train_csr)
    if type(scorer) is FactorArrays and train.shape[0] <= scorer.n_users and train.shape[1] <= scorer.n_items:
        from factorflow.evaluation._errors import CHUNKS, csr_error_sums

        indptr = train.indptr.astype(np.int64, copy=False)
        bounds = np.searchsorted(indptr, np.linspace(0, train.nnz, CHUNKS + 1), side="left").astype(np.int64)
        bounds[0], bounds[-1] = 0, train.shape[0]
        w, v = np.ascontiguousarray(scorer.user_factors), np.ascontiguousarray(scorer.item_factors)
        sums = csr_error_sums(w, v, scorer.user_bias, scorer.item_bias, float(scorer.global_mean), indptr,
                              train.indices, train.data, float(rating_range[0]), float(rating_range[1]), bounds)
        return dict(_from_sums(sums[0]))
    users = np.repeat(np.arange(train.shape[0], dtype=np.int64), np.diff(train.indptr))
    return rating_metrics(scorer, users, train.indices, train.data, rating_range=rating_range)


@dataclass(frozen=True)
class Relevance:
    """The top-N metrics' view of a test part: who is ranked and which items count as hits.

    ``users`` (int64, ascending): the test users with at least one relevant test row (rating ≥
    ``relevant_at``); ``n_relevant``: each one's number of relevant rows; ``items[ptr[e]:ptr[e+1]]``:
    user ``users[e]``'s distinct relevant items, sorted. Made once by :func:`relevance` and reused
    for every model evaluated on the same test part.
    """

    users: np.ndarray
    n_relevant: np.ndarray
    ptr: np.ndarray
    items: np.ndarray


def relevance(test_users: np.ndarray, test_items: np.ndarray, test_ratings: np.ndarray, *,
              relevant_at: float = 4.0) -> Relevance:
    """:class:`Relevance` of a test part (one sort of the relevant (user, item) keys)."""
    test_users = np.asarray(test_users, dtype=np.int64)
    test_items = np.asarray(test_items, dtype=np.int64)
    rel_mask = np.asarray(test_ratings, dtype=np.float64) >= relevant_at
    ru, ri = test_users[rel_mask], test_items[rel_mask]
    width = int(ri.max()) + 1 if ri.size else 1
    keys = np.sort(ru * width + ri)
    users = keys // width
    starts = _run_starts(users)
    n_relevant = np.diff(np.append(starts, keys.size))
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if keys.size else keys
    users = keys // width
    starts = _run_starts(users)
    return Relevance(users[starts], n_relevant.astype(np.int64), np.append(starts, keys.size).astype(np.int64),
                     keys - users * width)


def _run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Positions where a new value starts in a sorted array."""
    if sorted_values.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])


def topn_metrics(
    scorer: Scorer,
    train_csr: sp.spmatrix,
    test_users: np.ndarray,
    test_items: np.ndarray,
    test_ratings: np.ndarray,
    *,
    n: int = 10,
    relevant_at: float = 4.0,
    batch_users: int = 4096,
) -> dict[str, Any]:
    """precision@n, recall@n, ndcg@n over test users with ≥1 relevant item; scores in user blocks.

    Candidates are all items the user did not rate in train, ranked exactly as the batch
    recommendations rank them (:func:`factorflow.serving.topn.top_n_blocks` over
    ``scorer.score_users``; ties → the lower item index). Relevance is binary (test rating ≥
    ``relevant_at``); DCG = Σ hit_k / log2(k + 1) over ranks k = 1..n and the ideal DCG places
    min(#relevant, n) hits first. Also returns ``n_users_evaluated``.
    """
    return topn_metrics_at(scorer, train_csr, test_users, test_items, test_ratings, ns=(n,),
                           relevant_at=relevant_at, batch_users=batch_users)


def topn_metrics_at(
    scorer: Scorer,
    train_csr: sp.spmatrix,
    test_users: np.ndarray,
    test_items: np.ndarray,
    test_ratings: np.ndarray,
    *,
    ns: Sequence[int] = (10,),
    relevant_at: float = 4.0,
    batch_users: int = 4096,
    prepared: Relevance | None = None,
) -> dict[str, Any]:
    """:func:`topn_metrics` at every n in ``ns`` from one ranking of each user's top max(ns).

    The ranking is a strict order (score desc, then index asc), so each user's top n is the
    first n of its top max(ns): one scoring pass gives every cut-off, with the same values as
    separate calls. Keys: ``precision@n, recall@n, ndcg@n`` per n (in the order given), and
    ``n_users_evaluated`` after the first n's keys. ``prepared``: the test part's
    :func:`relevance`, when it is already made (then the test arrays are not read).
    """
    from factorflow.evaluation._hits import add_topn_sums
    from factorflow.serving.topn import top_n_blocks

    ns = [int(k) for k in ns]
    if not ns or min(ns) < 1:
        raise ParameterError(f"ns={ns}: needs at least one cut-off, each >= 1")
    rel = prepared if prepared is not None else relevance(test_users, test_items, test_ratings,
                                                          relevant_at=relevant_at)
    train = sp.csr_matrix(train_csr)
    n_users, n_items = scorer.n_users, scorer.n_items
    m = int(rel.users.size)
    sums = np.zeros((len(ns), 3))  # precision, recall, ndcg
    if m:
        if train.shape != (n_users, n_items):  # test users beyond the train matrix
            train = sp.csr_matrix((train.data, train.indices, np.append(
                train.indptr, np.full(n_users - train.shape[0], train.nnz))),
                shape=(n_users, n_items))
        top = max(ns)
        discounts = 1.0 / np.log2(np.arange(2, top + 2))
        ideal = np.cumsum(discounts)
        cutoffs = np.array(ns, dtype=np.int64)
        done = 0
        for who, top_i, _, counts in top_n_blocks(scorer, train, top, users=rel.users, block_users=batch_users):
            add_topn_sums(top_i, counts, done, rel.ptr, rel.items, rel.n_relevant, cutoffs, discounts, ideal, sums)
            done += len(who)
    out: dict[str, Any] = {}
    for a, k in enumerate(ns):
        p, r, g = (float(v) / m if m else 0.0 for v in sums[a])
        out.update({f"precision@{k}": p, f"recall@{k}": r, f"ndcg@{k}": g})
        out.setdefault("n_users_evaluated", m)
    return out


def _column(test: Any, name: str) -> np.ndarray:
    if isinstance(test, Mapping):
        return np.asarray(test[name])
    return test.column(name).to_numpy()  # pyarrow.Table


def evaluate(
    scorer: Scorer,
    train_csr: sp.spmatrix,
    test: Any,
    rating_range: tuple[float, float] = (0.5, 5.0),
    *,
    n: int = 10,
    relevant_at: float = 4.0,
    also_at: Sequence[int] = (),
    prepared: Relevance | None = None,
) -> dict[str, Any]:
    """Rating and top-N metrics on ``test`` (dict of arrays or pyarrow table: user_idx, item_idx,
    rating, and optionally cold_user, cold_item) in one flat dict; the top-N keys at ``n`` and at
    each cut-off in ``also_at``, all from one ranking pass (:func:`topn_metrics_at`).
    ``prepared``: ``test``'s :func:`relevance` at ``relevant_at``, to reuse it across models."""
    users = _column(test, "user_idx")
    items = _column(test, "item_idx")
    ratings = _column(test, "rating")
    names = test.keys() if isinstance(test, Mapping) else test.column_names
    cold = None
    if "cold_user" in names and "cold_item" in names:
        cold = _column(test, "cold_user").astype(bool) | _column(test, "cold_item").astype(bool)
    out = rating_metrics(scorer, users, items, ratings, rating_range=rating_range, cold=cold)
    ns = [int(n)] + [int(k) for k in also_at if int(k) != int(n)]
    out.update(topn_metrics_at(scorer, train_csr, users, items, ratings, ns=list(dict.fromkeys(ns)),
                               relevant_at=relevant_at, prepared=prepared))
    return out
