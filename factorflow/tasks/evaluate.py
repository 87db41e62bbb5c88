"""Prefect task: held-out metrics, baselines, learning curve; artifacts for the UI."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from factorflow.storage.runs import RunRef
from factorflow.storage.splits import SplitRef
from factorflow.tasks._prefect import retry_on_io_error


@task(name="evaluate", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error)
def evaluate_task(run: RunRef, split: SplitRef, rating_range: tuple[float, float], top_n: int = 10) -> dict[str, Any]:
    """Evaluate the run's factors on the split's test part (metrics.json, learning_curve.png in the run)."""
    from factorflow.evaluation.report import format_table, metrics_rows
    from factorflow.pipeline.evaluate import evaluate_run

    metrics, history, png = evaluate_run(run, split, rating_range=rating_range, top_n=top_n)
    rows = metrics_rows(metrics, run.kind, top_n)
    create_table_artifact(rows, key="metrics", description=f"held-out metrics, split {split.split}")
    curve = "\n".join(
        f"| {h.get('sweep', h.get('epoch'))} | {h['train_rmse']:.4f} | {h.get('test_rmse', float('nan')):.4f} |"
        for h in history
    )
    create_markdown_artifact(
        f"# {run.kind} on split `{split.split}`\n\n```\n{format_table(rows)}\n```\n\n"
        f"## Learning curve\n\n| sweep | train RMSE | test RMSE |\n|---|---|---|\n{curve}\n\n"
        + (f"Plot: `{png}`\n" if png else ""),
        key="retrain-summary", description="retrain summary",
    )
    metrics["learning_curve_png"] = png
    return metrics
