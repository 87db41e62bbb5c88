"""The publish gate: what keeps a degenerate model from becoming CURRENT."""

from __future__ import annotations

from typing import Any

import numpy as np

from factorflow.factors import FactorArrays


def publish_blockers(metrics: dict[str, Any], factors: FactorArrays, kind: str) -> list[str]:
    """Why a fitted model must not become CURRENT; empty when it may.

    A model is published only with finite factors, biases and μ; a non-empty test set with at
    least one warm row (user and item both in train, so the fitted parameters were evaluated);
    a finite test RMSE; and a test RMSE no worse than the global-mean baseline's on the same
    split (a model that cannot beat predicting μ for everyone has learnt nothing usable).
    """
    reasons = []
    arrays = {"user factors": factors.user_factors, "item factors": factors.item_factors,
              "user biases": factors.user_bias, "item biases": factors.item_bias,
              "global mean": np.asarray([factors.global_mean])}
    bad = [name for name, a in arrays.items() if not np.isfinite(a).all()]
    if bad:
        reasons.append(f"non-finite values in its {', '.join(bad)}")
    test = metrics.get("test") or {}
    split = (metrics.get("split") or {}).get("id", "?")
    n_test = (metrics.get("split") or {}).get("n_test") or 0
    warm = (test.get("warm") or {}).get("n")
    rmse = test.get("rmse")
    base = ((metrics.get("baselines") or {}).get("global-mean") or {}).get("rmse")
    if n_test == 0:
        reasons.append(f"split {split} has no test ratings to evaluate it on")
    elif warm == 0:
        reasons.append(f"no test rating of split {split} has both its user and its item in train "
                       f"({n_test:,} of {n_test:,} are cold-start), so the fitted model was never evaluated")
    if rmse is None or not np.isfinite(rmse):
        reasons.append(f"its test RMSE on split {split} is {rmse}")
    elif kind != "global-mean" and base is not None and rmse > base + 1e-9:
        reasons.append(f"its test RMSE {rmse:.4f} on split {split} is worse than the global-mean "
                       f"baseline's {base:.4f}")
    return reasons
