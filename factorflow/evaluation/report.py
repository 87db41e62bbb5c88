"""Evaluate a fitted model on a named split, with the baselines beside it.

Held-out metrics come from the split's test part only; the train RMSE is reported for
diagnosis. The returned dict is what ``model.json["metrics"]`` holds (stable keys:
``test.rmse``, ``test.mae``, ``test["ndcg@10"]``, ``test["precision@10"]``,
``test["recall@10"]``, ``train.rmse``, ``baselines.<name>.rmse``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from factorflow.evaluation.metrics import evaluate, rating_metrics, topn_metrics
from factorflow.factors import FactorArrays
from factorflow.models.registry import make_model
from factorflow.data.splits import SplitRef, read_test, read_train, train_csr

BASELINES = ("global-mean", "bias")
STABLE_N = 10  # model.json always carries precision@10, recall@10, ndcg@10


def evaluate_on_split(
    factors: FactorArrays,
    split: SplitRef,
    *,
    rating_range: tuple[float, float],
    top_n: int = 10,
    baselines: tuple[str, ...] = BASELINES,
) -> dict[str, Any]:
    """``{"split": ..., "test": {...}, "train": {...}, "baselines": {name: {...}}}``."""
    train = train_csr(split)
    test = read_test(split)
    test_cols = {name: test.column(name).to_numpy() for name in test.column_names}
    tr = read_train(split)
    tu, ti, trat = (tr.column(c).to_numpy() for c in ("user_idx", "item_idx", "rating"))

    def held_out(f: FactorArrays) -> dict[str, Any]:
        m = evaluate(f, train, test_cols, rating_range, n=STABLE_N)  # the @10 keys are always there
        if top_n != STABLE_N:
            m.update(topn_metrics(f, train, test_cols["user_idx"], test_cols["item_idx"], test_cols["rating"],
                                  n=top_n))
        return m

    out: dict[str, Any] = {
        "split": {"id": split.split, "kind": split.manifest.get("kind"), "n_test": len(test)},
        "test": held_out(factors),
        "train": rating_metrics(factors, tu, ti, trat, rating_range=rating_range),
        "baselines": {kind: held_out(make_model(kind).fit(train).factors()) for kind in baselines},
    }
    return out


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


def metrics_rows(metrics: dict[str, Any], model_kind: str, top_n: int = 10) -> list[dict[str, Any]]:
    """One row per model (the model, then each baseline) for tables and artifacts."""
    keys = ("rmse", "mae", f"precision@{top_n}", f"recall@{top_n}", f"ndcg@{top_n}")

    def row(name: str, m: dict[str, Any]) -> dict[str, Any]:
        r: dict[str, Any] = {"model": name}
        for k in keys:
            v = m.get(k)
            r[k] = None if v is None else round(float(v), 4)
        return r

    rows = [row(model_kind, metrics["test"])]
    rows += [row(f"baseline: {k}", v) for k, v in metrics["baselines"].items()]
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``rows`` (same keys in each)."""
    if not rows:
        return ""
    cols = list(rows[0])
    cells = [[("" if r[c] is None else (f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]))) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
