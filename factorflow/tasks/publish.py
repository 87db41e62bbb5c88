"""Prefect task: publish a run as a model version (the gate decides whether it becomes CURRENT)."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from factorflow.storage.datasets import SnapshotRef
from factorflow.storage.partitions import PartitionsRef
from factorflow.storage.runs import RunRef
from factorflow.storage.splits import SplitRef
from factorflow.tasks._prefect import retry_on_io_error


@task(name="publish", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error)
def publish_task(store: str, name: str, run: RunRef, metrics: dict[str, Any], snapshot: SnapshotRef,
                 split: SplitRef, partitions: PartitionsRef | None, recommendations: str | None,
                 item_titles: str | None, rating_range: tuple[float, float]) -> str:
    """Publish the run as a new version of model ``name``; returns the version
    (see :func:`factorflow.pipeline.publish.publish_run` for the gate)."""
    from factorflow.pipeline.publish import publish_run

    version = publish_run(store, name, run, metrics, snapshot, split, partitions, recommendations, item_titles,
                          rating_range)
    get_run_logger().info("published %s version %s", name, version)
    return version
