"""Similar items: the highest cosine between published item factor vectors (pure, no I/O).

Needs factor vectors, so it takes :class:`~factorflow.factors.FactorArrays`, not a scorer.
For a blend the item vectors are the stacked [√aₖ uₖⱼ]ₖ, so the inner product of two items is
Σₖ aₖ uₖⱼ·uₖₗ — the components' item geometries weighted by the blend weights — and the cosine
ranks the items the blended model scores alike for every user (biases aside).
Ties go to the smaller item index, as in :mod:`factorflow.serving.topn`.
"""

from __future__ import annotations

import numpy as np

from factorflow.errors import ParameterError, check_param
from factorflow.factors import FactorArrays
from factorflow.serving.topn import Ranked, rank_scores


def similar_items(factors: FactorArrays, item_idx: int, n: int, *,
                  allowed: np.ndarray | None = None) -> Ranked:
    """The ``n`` items with the highest cosine between item factor vectors (self excluded).

    Items with a zero vector (no train ratings) are never returned; asking for one raises.
    ``allowed`` optionally restricts the candidates (boolean mask over items).
    """
    check_param(0 <= int(item_idx) < factors.n_items, "item_idx", item_idx,
                f"in [0, {factors.n_items})")
    check_param(int(n) >= 0, "n", n, ">= 0")
    v = factors.item_factors.astype(np.float64)
    norms = np.linalg.norm(v, axis=1)
    q = norms[item_idx]
    if q == 0:
        raise ParameterError(f"item_idx={item_idx}: the item has a zero factor vector (no train "
                             "ratings), so it has no cosine neighbours")
    cos = np.full(len(v), -np.inf)
    ok = norms > 0
    cos[ok] = (v[ok] @ v[item_idx]) / (norms[ok] * q)
    cos[item_idx] = -np.inf
    if allowed is not None:
        cos[~np.asarray(allowed, dtype=bool)] = -np.inf
    items, s = rank_scores(cos, int(n))
    return Ranked(items, s)
