"""Prefect task: held-out metrics, baselines, learning curve; artifacts for the UI."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from factorflow.storage.fs import join, open_store, url_of, write_json
from factorflow.tasks._prefect import retry_on_io_error


@task(name="evaluate", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error)
def evaluate_task(run: dict[str, Any], split: dict[str, Any], run_dir: str,
                  rating_range: tuple[float, float], top_n: int = 10) -> dict[str, Any]:
    """Evaluate the run's factors on the split's test part; writes metrics.json and learning_curve.png."""
    from factorflow.evaluation.report import evaluate_on_split, format_table, metrics_rows
    from factorflow.evaluation.plots import learning_curve_png
    from factorflow.data.splits import SplitRef
    from factorflow.storage.scratch import load_factors

    split_ref = SplitRef.from_dict(split)
    metrics = evaluate_on_split(load_factors(run["factors"]), split_ref, rating_range=rating_range, top_n=top_n)
    fs, root = open_store(run_dir)
    write_json(fs, join(root, "metrics.json"), metrics)
    rows = metrics_rows(metrics, run["kind"], top_n)
    create_table_artifact(rows, key="metrics", description=f"held-out metrics, split {split_ref.split}")
    png = None
    if run["history"]:
        image = learning_curve_png(
            run["history"], title=f"{run['kind']} learning curve",
            baselines={k: v["rmse"] for k, v in metrics["baselines"].items()}, split=split_ref.split,
        )
        with fs.open(join(root, "learning_curve.png"), "wb") as f:
            f.write(image)
        png = url_of(fs, join(root, "learning_curve.png"))
    curve = "\n".join(
        f"| {h.get('sweep', h.get('epoch'))} | {h['train_rmse']:.4f} | {h.get('test_rmse', float('nan')):.4f} |"
        for h in run["history"]
    )
    create_markdown_artifact(
        f"# {run['kind']} on split `{split_ref.split}`\n\n```\n{format_table(rows)}\n```\n\n"
        f"## Learning curve\n\n| sweep | train RMSE | test RMSE |\n|---|---|---|\n{curve}\n\n"
        + (f"Plot: `{png}`\n" if png else ""),
        key="retrain-summary", description="retrain summary",
    )
    metrics["learning_curve_png"] = png
    return metrics
