"""Prefect task: batch top-N recommendations for every user of a run."""

from __future__ import annotations

from prefect import get_run_logger, task

from factorflow.storage.datasets import SnapshotRef
from factorflow.storage.runs import RunRef
from factorflow.storage.splits import SplitRef
from factorflow.tasks._prefect import retry_on_io_error, task_progress


@task(name="batch-recommend", retries=1, retry_condition_fn=retry_on_io_error)
def batch_recommend_task(run: RunRef, split: SplitRef, snapshot: SnapshotRef, n: int = 10) -> str:
    """Top-``n`` unseen items (the candidate filter of ``factorflow recommend``) for every user
    → the run's ``recommendations.parquet``; returns its URL."""
    from factorflow.pipeline.recommend import batch_recommend

    path, n_users = batch_recommend(run, split, snapshot, n, progress=task_progress("batch recommend", "users"))
    get_run_logger().info("wrote top-%d for %d users to %s", n, n_users, path)
    return path
