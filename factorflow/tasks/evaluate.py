"""Prefect task: held-out metrics, baselines, learning curve; artifacts for the UI."""

from __future__ import annotations

from typing import Any

from prefect import task

from factorflow.storage.runs import RunRef
from factorflow.storage.splits import SplitRef
from factorflow.tasks._prefect import retry_on_io_error


@task(name="evaluate", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error)
def evaluate_task(run: RunRef, split: SplitRef, rating_range: tuple[float, float], top_n: int = 10) -> dict[str, Any]:
    """Evaluate the run's factors on the split's test part (metrics.json, learning_curve.png in the run);
    the ``metrics`` and ``summary-KIND`` artifacts (:mod:`factorflow.tasks.artifacts`)."""
    from factorflow.pipeline.evaluate import evaluate_run
    from factorflow.tasks.artifacts import evaluation_artifacts

    metrics, history, png = evaluate_run(run, split, rating_range=rating_range, top_n=top_n)
    evaluation_artifacts(metrics, history, run.kind, split.split, png, top_n)
    metrics["learning_curve_png"] = png
    return metrics
