"""Evaluate a fitted model on a named split, with the baselines beside it.

Held-out metrics come from the split's test part only; the train RMSE is reported for
diagnosis. The returned dict is what ``model.json["metrics"]`` holds (stable keys:
``test.rmse``, ``test.mae``, ``test["ndcg@10"]``, ``test["precision@10"]``,
``test["recall@10"]``, ``train.rmse``, ``baselines.<name>.rmse``).
"""

from __future__ import annotations

from typing import Any

from factorflow.evaluation.metrics import evaluate, relevance, train_rating_metrics
from factorflow.models.registry import BASELINES, make_model
from factorflow.serving.scoring import Scorer
from factorflow.storage.splits import SplitRef, read_test, train_csr

STABLE_N = 10  # model.json always carries precision@10, recall@10, ndcg@10


def evaluate_on_split(
    factors: Scorer,
    split: SplitRef,
    *,
    rating_range: tuple[float, float],
    top_n: int = 10,
    baselines: tuple[str, ...] = BASELINES,
) -> dict[str, Any]:
    """``{"split": ..., "test": {...}, "train": {...}, "baselines": {name: {...}}}`` of a scorer
    (factor tables, or the network of a kind served by one)."""
    train = train_csr(split)
    test = read_test(split)
    test_cols = {name: test.column(name).to_numpy() for name in test.column_names}

    relevant = relevance(test_cols["user_idx"], test_cols["item_idx"], test_cols["rating"])  # once for all models

    def held_out(f: Scorer) -> dict[str, Any]:
        # the @10 keys are always there; top_n's come from the same ranking pass
        return evaluate(f, train, test_cols, rating_range, n=STABLE_N, also_at=(top_n,), prepared=relevant)

    out: dict[str, Any] = {
        "split": {"id": split.split, "kind": split.manifest.get("kind"), "n_test": len(test)},
        "test": held_out(factors),
        # the train ratings read off the CSR (one entry per (user, item), as train.parquet holds them)
        "train": train_rating_metrics(factors, train, rating_range=rating_range),
        "baselines": {kind: held_out(make_model(kind).fit(train).factors()) for kind in baselines},
    }
    return out


def evaluate_run(run: Any, split: SplitRef, *, rating_range: tuple[float, float], top_n: int = 10
                 ) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
    """Evaluate a run's trained factors on ``split``; writes ``metrics.json`` and (for an iterative
    model) ``learning_curve.png`` into the run folder. Returns (metrics, history, PNG URL or None)."""
    from factorflow.evaluation.plots import learning_curve_png
    from factorflow.pipeline.scoring import run_scorer
    from factorflow.storage import layout
    from factorflow.storage.scratch import load_history, write_run_bytes, write_run_json

    metrics = evaluate_on_split(run_scorer(run), split, rating_range=rating_range, top_n=top_n)
    write_run_json(run, layout.RUN_METRICS, metrics)
    history = load_history(run)
    png = None
    if history:
        image = learning_curve_png(history, title=f"{run.kind} learning curve",
                                   baselines={k: v["rmse"] for k, v in metrics["baselines"].items()},
                                   split=split.split)
        png = write_run_bytes(run, layout.RUN_CURVE, image)
    return metrics, history, png
