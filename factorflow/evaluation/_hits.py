"""Compiled sums of the top-N metrics for :func:`factorflow.evaluation.metrics.topn_metrics_at` (numba)."""

from __future__ import annotations

from numba import njit

from factorflow.serving._select import _is_seen as _in_sorted  # j in a sorted slice, binary search


@njit(cache=True, nogil=True)
def add_topn_sums(top_i, counts, e0, ptr, items, n_relevant, ns, discounts, ideal, sums):  # pragma: no cover
    """Add one block's precision, recall and NDCG terms at each cut-off to ``sums`` (len(ns) × 3).

    Row r of the block is evaluated user ``e0 + r``: its ranked items ``top_i[r, :counts[r]]``,
    its distinct relevant items ``items[ptr[e]:ptr[e + 1]]`` (sorted), ``n_relevant[e]`` relevant
    test rows. At cut-off k: hits = ranked items among the first k that are relevant;
    precision += hits / k, recall += hits / n_relevant, NDCG += Σ_hits discounts[rank] /
    ideal[min(n_relevant, k) − 1].
    """
    for r in range(top_i.shape[0]):
        e = e0 + r
        lo, hi = ptr[e], ptr[e + 1]
        n_rel = n_relevant[e]
        c = counts[r]
        for a in range(ns.shape[0]):
            k = ns[a]
            n_hit = 0
            dcg = 0.0
            for p in range(min(k, c)):
                if _in_sorted(items, lo, hi, top_i[r, p]):
                    n_hit += 1
                    dcg += discounts[p]
            sums[a, 0] += n_hit / k
            sums[a, 1] += n_hit / n_rel
            sums[a, 2] += dcg / ideal[min(n_rel, k) - 1]
