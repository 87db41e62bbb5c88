"""The plain reference for the fast top-N, scoring and metric paths (not collected: no ``test_`` prefix).

These are the implementations as they were before the fast paths (issue 11, item 4), in plain
NumPy: score a block with ``scorer.score_users``, write -inf over disallowed and seen items, rank
each row by (score desc, item index asc) skipping non-finite scores; the top-N metrics over those
blocks; pair scores by a chunked float64 ``einsum``. The fast paths must give the same items in the
same order with bit-identical scores where the arithmetic is exact, scores equal to float32
rounding and items up to near-ties otherwise (``tests/test_topn_fast.py``), and the same metrics
to 1e-12.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

BLOCK_BUDGET = 1 << 24


def rank_row(s: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` finite entries of one row: by score desc, then index asc."""
    ok = np.flatnonzero(np.isfinite(s))
    order = np.lexsort((ok, -s[ok].astype(np.float64)))[:n]
    return ok[order], s[ok[order]]


def top_n_blocks(scorer, seen_csr, n, *, users=None, block_users=2048, allowed=None):
    """Yield ``(users, top_i, top_s, counts)`` per block, as ``serving.topn.top_n_blocks`` did."""
    n_u, n_i = scorer.n_users, scorer.n_items
    if seen_csr is not None:
        seen_csr = sp.csr_matrix(seen_csr)
    users = np.arange(n_u) if users is None else np.asarray(users, dtype=np.int64)
    n = min(int(n), n_i)
    block = max(1, min(int(block_users), BLOCK_BUDGET // max(n_i, 1)))
    disallowed = None if allowed is None else ~np.asarray(allowed, dtype=bool)
    for lo in range(0, len(users), block):
        who = users[lo:lo + block]
        s = scorer.score_users(who)
        if disallowed is not None:
            s[:, disallowed] = -np.inf
        if seen_csr is not None:
            sub = seen_csr[who]
            rows = np.repeat(np.arange(len(who)), np.diff(sub.indptr))
            s[rows, sub.indices] = -np.inf
        top_i = np.zeros((len(who), n), dtype=np.int32)
        top_s = np.full((len(who), n), -np.inf, dtype=np.float32)
        counts = np.zeros(len(who), dtype=np.int64)
        for r in range(len(who)):
            items, scores = rank_row(s[r], n)
            counts[r] = len(items)
            top_i[r, :len(items)] = items
            top_s[r, :len(items)] = scores
        yield who, top_i, top_s, counts


def recommend_rows(scorer, seen_csr, n, *, block_users=2048, allowed=None) -> dict[str, np.ndarray]:
    """The batch table's columns (user_idx, rank, item_idx, score) from :func:`top_n_blocks`."""
    cols: dict[str, list] = {"user_idx": [], "rank": [], "item_idx": [], "score": []}
    for who, top_i, top_s, counts in top_n_blocks(scorer, seen_csr, n, block_users=block_users, allowed=allowed):
        for r, u in enumerate(who):
            c = int(counts[r])
            cols["user_idx"] += [int(u)] * c
            cols["rank"] += list(range(1, c + 1))
            cols["item_idx"] += top_i[r, :c].tolist()
            cols["score"] += top_s[r, :c].tolist()
    return {k: np.asarray(v) for k, v in cols.items()}


def topn_metrics(scorer, train_csr, test_users, test_items, test_ratings, *, n=10, relevant_at=4.0,
                 batch_users=1024) -> dict:
    """precision/recall/ndcg@n over test users with ≥1 relevant item, as ``evaluation.metrics`` did."""
    train = sp.csr_matrix(train_csr)
    test_users = np.asarray(test_users, dtype=np.int64)
    test_items = np.asarray(test_items, dtype=np.int64)
    rel = np.asarray(test_ratings, dtype=np.float64) >= relevant_at
    ru, ri = test_users[rel], test_items[rel]
    n_users, n_items = scorer.n_users, scorer.n_items
    relevant = set(zip(ru.tolist(), ri.tolist(), strict=True))
    eval_users, n_relevant = np.unique(ru, return_counts=True)
    if eval_users.size == 0:
        return {f"precision@{n}": 0.0, f"recall@{n}": 0.0, f"ndcg@{n}": 0.0, "n_users_evaluated": 0}
    if train.shape != (n_users, n_items):
        train = sp.csr_matrix((train.data, train.indices, np.append(
            train.indptr, np.full(n_users - train.shape[0], train.nnz))), shape=(n_users, n_items))
    discounts = 1.0 / np.log2(np.arange(2, n + 2))
    ideal = np.cumsum(discounts)
    prec = rec = ndcg = 0.0
    done = 0
    for who, top_i, _, counts in top_n_blocks(scorer, train, n, users=eval_users, block_users=batch_users):
        for r, u in enumerate(who):
            hits = np.array([(int(u), int(j)) in relevant for j in top_i[r, :counts[r]]], dtype=bool)
            n_rel = n_relevant[done + r]
            prec += hits.sum() / n
            rec += hits.sum() / n_rel
            ndcg += float((hits * discounts[:len(hits)]).sum()) / ideal[min(n_rel, n) - 1]
        done += len(who)
    m = eval_users.size
    return {f"precision@{n}": prec / m, f"recall@{n}": rec / m, f"ndcg@{n}": ndcg / m, "n_users_evaluated": int(m)}


def predict(f, users, items) -> np.ndarray:
    """r̂ = w·u + b + c + μ per pair in float64, as ``FactorArrays.predict`` did (einsum)."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    out = np.einsum("ij,ij->i", f.user_factors[users].astype(np.float64), f.item_factors[items].astype(np.float64))
    out += f.user_bias[users]
    out += f.item_bias[items]
    out += f.global_mean
    return out
