"""Prefect task: the ``compare`` leaderboard — rows built, stored, and shown as a table artifact."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from factorflow.storage.datasets import SnapshotRef
from factorflow.storage.splits import SplitRef
from factorflow.tasks._prefect import retry_on_io_error


@task(name="leaderboard", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error)
def leaderboard_task(store: str, outcomes: list[dict[str, Any]], split: SplitRef, snapshot: SnapshotRef,
                     info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the leaderboard of ``outcomes`` (one per model, see :mod:`factorflow.pipeline.leaderboard`),
    write it to ``STORE/leaderboards/SPLIT/STAMP.{json,parquet}`` and create the table artifact
    ``leaderboard``. Returns ``{"rows", "json", "parquet"}``."""
    from factorflow.evaluation.report import format_table
    from factorflow.pipeline.leaderboard import COLUMNS, build_leaderboard, display_rows
    from factorflow.storage.leaderboards import write_leaderboard

    rows = build_leaderboard(outcomes)
    body = {"dataset": snapshot.name, "snapshot": snapshot.snapshot, "n_test": split.manifest.get("n_test"),
            "split_kind": split.manifest.get("kind"), **(info or {})}
    paths = write_leaderboard(store, split.split, rows, body, columns=list(COLUMNS))
    shown = display_rows(rows)
    create_table_artifact([{**d, "note": r["note"]} for d, r in zip(shown, rows, strict=True)], key="leaderboard",
                          description=f"held-out metrics on split {split.split} of {snapshot.name}, best first")
    get_run_logger().info("leaderboard on split %s (%s):\n%s", split.split, paths["json"], format_table(shown))
    return {"rows": rows, "json": paths["json"], "parquet": paths["parquet"]}
