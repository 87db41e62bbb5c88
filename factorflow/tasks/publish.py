"""Prefect task: publish a run as a model version (the gate and the challenge decide whether it becomes CURRENT)."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from factorflow.config import PublishOptions
from factorflow.storage.datasets import SnapshotRef
from factorflow.storage.partitions import PartitionsRef
from factorflow.storage.runs import RunRef
from factorflow.storage.splits import SplitRef
from factorflow.tasks._prefect import retry_on_io_error

#: Key of the markdown artifact saying whether the version became CURRENT, and why.
DECISION_ARTIFACT = "publish-decision"


@task(name="publish", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error)
def publish_task(store: str, name: str, run: RunRef, metrics: dict[str, Any], snapshot: SnapshotRef,
                 split: SplitRef, partitions: PartitionsRef | None, recommendations: str | None,
                 item_titles: str | None, rating_range: tuple[float, float],
                 options: PublishOptions | None = None) -> str:
    """Publish the run as a new version of model ``name``; returns the version.

    The gate, then the champion/challenger comparison with CURRENT (``options``), decide whether
    it becomes CURRENT (:func:`factorflow.pipeline.publish.publish_decided`); the decision is the
    ``publish-decision`` markdown artifact and a log line. A rejected version is kept and the task
    fails with ModelRejectedError (one line naming both RMSEs and the split), so the flow run ends
    Failed with that message.
    """
    from prefect.artifacts import create_markdown_artifact

    from factorflow.pipeline.champion import decision_markdown
    from factorflow.pipeline.publish import publish_decided

    logger = get_run_logger()
    outcome = publish_decided(store, name, run, metrics, snapshot, split, partitions, recommendations, item_titles,
                              rating_range, options)
    create_markdown_artifact(
        key=DECISION_ARTIFACT,
        markdown=decision_markdown(name, outcome.version, outcome.accepted, outcome.reason, outcome.challenge),
        description=f"{name} {outcome.version}: {'accepted' if outcome.accepted else 'REJECTED'}")
    if outcome.pruned:
        logger.info("retention: deleted %d old version(s) of %s: %s", len(outcome.pruned), name,
                    ", ".join(outcome.pruned))
    if outcome.prune_error:
        logger.warning("retention: could not delete old versions of %s (%s); the publish stands",
                       name, outcome.prune_error)
    if not outcome.accepted:
        logger.error("publish %s version %s REJECTED: %s", name, outcome.version, outcome.reason)
        raise outcome.error()
    logger.info("published %s version %s (now CURRENT): %s", name, outcome.version, outcome.reason)
    return outcome.version
