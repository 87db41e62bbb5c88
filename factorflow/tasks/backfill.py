"""Prefect tasks of the backfill flow: plan the cutoffs, cut each window, publish a historical
version, store a finished cutoff, and store and show the table. Thin wrappers over
:mod:`factorflow.pipeline.backfill`; only refs, paths and small dicts go in and out (picklable,
so any task runner — threads or Dask workers — can run them)."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from factorflow.storage.datasets import SnapshotRef
from factorflow.storage.partitions import PartitionsRef
from factorflow.storage.runs import RunRef
from factorflow.storage.splits import SplitRef
from factorflow.tasks._prefect import retry_on_io_error


@task(name="plan-backfill", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error)
def plan_task(store: str, snapshot: SnapshotRef, start: str, end: str, every: str, config: Any, top_n: int,
              publish: bool = False, name: str | None = None) -> dict[str, Any]:
    """The cutoffs, their windows' sizes, and which finished cutoffs are reused
    (:func:`factorflow.pipeline.backfill.plan_backfill`)."""
    from factorflow.pipeline.backfill import plan_backfill

    return plan_backfill(store, snapshot, start, end, every, config, top_n, publish=publish, name=name)


@task(name="split", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error)
def window_split_task(snapshot: SnapshotRef, cutoff: int, until: int) -> SplitRef:
    """Make (or reuse: the folder is named by the window) the split train < cutoff ≤ test < until."""
    from factorflow.data.splits import make_split

    return make_split(snapshot, "temporal", cutoff=cutoff, until=until)


@task(name="publish-historical", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error)
def publish_historical_task(store: str, name: str, run: RunRef, metrics: dict[str, Any], snapshot: SnapshotRef,
                            split: SplitRef, partitions: PartitionsRef | None, recommendations: str | None,
                            item_titles: str | None, rating_range: tuple[float, float],
                            entry: dict[str, Any]) -> tuple[str, str, str | None]:
    """Publish a cutoff's model as a historical version of ``name`` (never CURRENT); returns
    ``(version, status, note)`` (:func:`factorflow.pipeline.backfill.publish_historical`)."""
    from factorflow.pipeline.backfill import publish_historical

    version, status, note = publish_historical(store, name, run, metrics, snapshot, split, partitions,
                                               recommendations, item_titles, rating_range, entry)
    logger = get_run_logger()
    if status == "published":
        logger.info("cutoff %s: published %s version %s (historical, CURRENT unchanged)", entry["label"], name,
                    version)
    else:
        logger.warning("cutoff %s: %s", entry["label"], note)
    return version, status, note


@task(name="record-cutoff", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error)
def record_cutoff_task(store: str, entry: dict[str, Any], run: RunRef, metrics: dict[str, Any],
                       published: tuple[str, str, str | None] | None, top_n: int, snapshot: SnapshotRef,
                       name: str | None = None) -> dict[str, Any]:
    """Store a finished cutoff under its key (a re-run reuses it) and return the stored record."""
    from factorflow.pipeline.backfill import cutoff_record, format_instant
    from factorflow.storage.backfills import write_cutoff_result

    version, status, note = published if published is not None else (None, "evaluated", None)
    record = cutoff_record(entry, kind=run.kind or "", params=run.params, top_n=top_n, metrics=metrics,
                          run_id=run.run_id, seconds=run.seconds, status=status, version=version,
                          model_name=name if published is not None else None, note=note,
                          dataset=snapshot.name, snapshot=snapshot.snapshot)
    write_cutoff_result(store, entry["key"], record)
    test = record["metrics"]["test"]
    get_run_logger().info("cutoff %s: trained on %s ratings, test %s ratings in [%s, %s): RMSE %.4f, MAE %.4f, "
                          "NDCG@10 %.4f (%s)", entry["label"], f"{entry['n_train']:,}", f"{entry['n_test']:,}",
                          entry["label"], format_instant(entry["until"]), test["rmse"] or float("nan"),
                          test["mae"] or float("nan"), test["ndcg@10"] or float("nan"), status)
    return record


@task(name="backfill-table", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error)
def backfill_table_task(store: str, backfill_id: str, rows: list[dict[str, Any]], info: dict[str, Any]
                        ) -> dict[str, Any]:
    """Write the table and its plot (``STORE/backfills/ID/``) and show them: table artifact
    ``backfill`` (the rows as stored, numbers unrounded) and markdown artifact ``backfill-summary``.
    Returns ``{"rows", "json", "parquet", "png"}``."""
    from factorflow.evaluation.report import format_table
    from factorflow.pipeline.backfill import display_rows, save_backfill

    paths = save_backfill(store, backfill_id, rows, info)
    create_table_artifact(rows, key="backfill",
                          description=f"{info.get('kind')} backfill {backfill_id}: held-out metrics per cutoff")
    shown = format_table(display_rows(rows))
    notes = "\n".join(f"- {r['cutoff']} {r['status']}: {r['note']}" for r in rows if r["note"])
    create_markdown_artifact(
        f"# Backfill `{backfill_id}`\n\n{info.get('kind')} on {info.get('dataset')} (snapshot "
        f"`{info.get('snapshot')}`), cutoffs every {info.get('every')}: train on the ratings before each cutoff, "
        f"test on the window after it.\n\n```\n{shown}\n```\n\n" + (f"{notes}\n\n" if notes else "")
        + f"Table: `{paths['json']}`, `{paths['parquet']}`\n\n"
        + (f"Plot of the metrics over time: `{paths['png']}`\n" if paths["png"] else ""),
        key="backfill-summary", description=f"backfill {backfill_id}",
    )
    get_run_logger().info("backfill %s (%s):\n%s", backfill_id, paths["json"], shown)
    return {"rows": rows, **paths}
