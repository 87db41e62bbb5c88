"""The backfill flow: a model retrained at each of a series of past cutoffs, measured on the window after it.

ingest (once) → plan (cutoffs, window sizes, finished cutoffs to reuse) → for every cutoff still
to do, concurrently: split (train < cutoff ≤ test < cutoff + every) → partition (block-driver
models) → open-run → train → evaluate (→ batch-recommend → publish-historical, with
``publish``) → record-cutoff → one table (+ plot, artifacts).

Wiring only, following :mod:`factorflow.flows.compare`: the per-cutoff chains are submitted at
once to the flow's task runner (:class:`~factorflow.tasks._runner.ClusterTaskRunner`: Prefect's
Dask task runner on the cluster of ``params.compute.dask_address`` or ``$FACTORFLOW_DASK_ADDRESS``,
else the thread pool; tasks pass only refs, paths and small dicts). The block-driver fits share ONE Dask cluster
(:func:`factorflow.tasks.train.shared_compute`), started only when some cutoff is trained.
Splits and partitions are content-addressed folders of the one snapshot, reused when they
exist; each cutoff trains in its own scratch ``STORE/runs/FLOW_RUN-cutT/``.

A finished cutoff is stored under a content-addressed key (snapshot, split id, model config,
top_n; ``STORE/backfills/cutoffs/``), so a re-run of the same backfill reuses it ("reused" in
the log, no train task). A cutoff whose chain fails does not stop the others: its row says
which step failed and why. The flow run ends Failed only when no cutoff has metrics (every one
failed or was skipped); the table is written first.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, as_completed, wait
from prefect.runtime import flow_run

from factorflow.config import RetrainParams
from factorflow.errors import FactorflowError, ParameterError
from factorflow.flows.monitoring import monitored, run_name, snapshot_known
from factorflow.models.base import config_params
from factorflow.models.registry import as_config, config_type
from factorflow.storage.fs import store_url
from factorflow.tasks._runner import ClusterTaskRunner
from factorflow.tasks.backfill import (
    backfill_table_task,
    plan_task,
    publish_historical_task,
    record_cutoff_task,
    window_split_task,
)
from factorflow.tasks.data import ingest, partition_task
from factorflow.tasks.evaluate import evaluate_task
from factorflow.tasks.recommend import batch_recommend_task
from factorflow.tasks.train import open_run_task, shared_compute, train_task

ModelConfig = config_type()  # the registered kinds' configs, discriminated by "kind"


def _chain_row(entry: dict[str, Any], steps: list[tuple[str, PrefectFuture | None]]) -> dict[str, Any]:
    """The row of one cutoff from its chain of (finished) task futures: the stored record when
    every step completed, else ``failed`` naming the first step that did not and why."""
    from factorflow.pipeline.backfill import backfill_row, one_line_reason

    for step, future in steps:
        if future is None:
            continue
        future.wait()  # its final state (else .state may be a stale read from the API)
        state = future.state
        if state.is_completed():
            continue
        error = future.result(raise_on_failure=False) if state.is_failed() or state.is_crashed() else None
        why = one_line_reason(error) if isinstance(error, BaseException) else (state.message or state.name)
        return backfill_row(entry, None, status="failed", note=f"{step}: {why}")
    return backfill_row(entry, steps[-1][1].result())


@flow(name="backfill", log_prints=True, task_runner=ClusterTaskRunner(), flow_run_name=run_name)
@monitored
def backfill_flow(source: str, store: str, start: str, end: str, every: str = "30d",
                  model: str | ModelConfig = "als", params: RetrainParams = RetrainParams(), publish: bool = False,
                  name: str | None = None) -> dict[str, Any]:
    """Backfill ``model`` on ``source``: for each cutoff ``start, start + every, …`` before ``end``
    (ISO dates/datetimes in UTC; ``every`` like ``30d``, ``12h``, ``1w``, ``365d``, or calendar
    ``3mo``, ``1y``; at most 100 cutoffs) train on the ratings before the cutoff and evaluate on those in ``[cutoff,
    cutoff + every)`` (see :mod:`factorflow.pipeline.backfill` for the rules).

    ``model`` is a kind (its defaults) or a kind's config (``{"kind": "als", "rank": 30}``);
    ``params`` gives the ingest, compute, ``top_n`` and ``item_titles`` options (its split
    options are not used: the cutoffs define the splits; a test source is refused). With
    ``publish`` every cutoff's model is published as a historical version of ``name`` (default:
    the kind), never as CURRENT.

    Returns: store, dataset, snapshot, backfill_id, kind, params, start, end, every, published,
    name, ``rows`` (one per cutoff, in time order: cutoff, window_end, n_train, n_test, rmse,
    mae, ndcg@10, bias_rmse, global_mean_rmse, train_seconds, status, reused, version, note),
    ``reused`` (how many cutoffs were reused) and the table's ``json``, ``parquet`` and ``png``
    URLs. Creates the artifacts ``backfill`` (table), ``backfill-summary`` (markdown) and a
    progress artifact over the cutoffs. Raises ParameterError for a bad range or duration, a
    source without timestamps or a first cutoff outside the data; FactorflowError when no cutoff
    finished.
    """
    from factorflow.data.ingest import default_name
    from factorflow.pipeline.backfill import backfill_row, finished, windows_from_request
    from factorflow.pipeline.train import distributable

    logger = get_run_logger()
    config = as_config(model)
    name = name or config.kind
    if params.ingest.test_source:
        raise ParameterError(f"test_source={params.ingest.test_source!r}: a backfill cuts one ratings file in time; "
                             "it takes no test file")
    windows_from_request(start, end, every)  # a bad range fails before anything is ingested
    snapshot = ingest(source, store, params.ingest.model_copy(
        update={"dataset": params.ingest.dataset or default_name(source)}))
    snapshot_known(snapshot)
    rating_range = tuple(snapshot.manifest["rating_range"])
    plan = plan_task(store, snapshot, start, end, every, config, params.top_n, publish, name)
    entries = plan["entries"]
    todo = [e for e in entries if e["status"] == "planned"]
    for e in entries:
        if e["status"] == "reused":
            rmse = e["record"]["metrics"]["test"].get("rmse")
            logger.info("cutoff %s: reused (stored result %s: train %s, test %s ratings, RMSE %s)", e["label"],
                        e["key"], f"{e['n_train']:,}", f"{e['n_test']:,}", "n/a" if rmse is None else f"{rmse:.4f}")
        elif e["status"] == "skipped":
            logger.warning("cutoff %s: skipped: %s", e["label"], e["note"])
    logger.info("backfill %s: %d cutoffs every %s from %s (%d to train, %d reused, %d skipped)", plan["backfill_id"],
                len(entries), every, entries[0]["label"], len(todo),
                sum(e["status"] == "reused" for e in entries), sum(e["status"] == "skipped" for e in entries))
    progress = create_progress_artifact(100.0 * (len(entries) - len(todo)) / len(entries),
                                        description=f"backfill {plan['backfill_id']}: cutoffs done")
    run_id = str(flow_run.get_id() or "local")
    on_dask = distributable(config)

    chains: dict[str, list[tuple[str, PrefectFuture | None]]] = {}
    with shared_compute(params.compute, on_dask and bool(todo)) as compute:
        for e in todo:  # every cutoff's chain is submitted at once; the task runner runs them side by side
            def named(task: Any, step: str, label: str = e["label"]) -> Any:
                return task.with_options(task_run_name=f"{step}-{label}")

            split = named(window_split_task, "split").submit(snapshot, e["cutoff"], e["until"])
            parts = (named(partition_task, "partition").with_options(refresh_cache=True)  # reuses the folder
                     .submit(split, params.compute.n_blocks) if on_dask else None)
            run = named(open_run_task, "open-run").submit(store, f"{run_id}-cut{e['cutoff']}")
            trained = named(train_task, "train").submit(config, split, parts, compute, run, rating_range)
            metrics = named(evaluate_task, "evaluate").submit(trained, split, rating_range, params.top_n)
            recs = published = None
            if publish:
                recs = named(batch_recommend_task, "batch-recommend").submit(trained, split, snapshot, params.top_n)
                published = named(publish_historical_task, "publish").submit(
                    store, name, trained, metrics, snapshot, split, parts, recs, params.item_titles, rating_range, e)
            record = named(record_cutoff_task, "record").submit(store, e, trained, metrics, published, params.top_n,
                                                                snapshot, name if publish else None)
            chains[e["key"]] = [("split", split), ("partition", parts), ("open-run", run), ("train", trained),
                                ("evaluate", metrics), ("batch-recommend", recs), ("publish", published),
                                ("record", record)]
        last = {id(steps[-1][1]): key for key, steps in chains.items()}
        by_key = {e["key"]: e for e in todo}
        done = len(entries) - len(todo)
        for future in as_completed([steps[-1][1] for steps in chains.values()]):
            done += 1
            entry = by_key[last[id(future)]]
            row = _chain_row(entry, chains[entry["key"]])
            if row["status"] == "failed":
                logger.warning("cutoff %s failed: %s", entry["label"], row["note"])
            update_progress_artifact(progress, 100.0 * done / len(entries))
            logger.info("backfill: %d/%d cutoffs done", done, len(entries))
        wait([f for steps in chains.values() for _, f in steps if f is not None])

    rows = []
    for e in entries:
        if e["status"] == "reused":
            rows.append(backfill_row(e, e["record"], reused=True))
        elif e["status"] == "skipped":
            rows.append(backfill_row(e, None, status="skipped"))
        else:
            rows.append(_chain_row(e, chains[e["key"]]))
    info = {"source": source, "dataset": snapshot.name, "snapshot": snapshot.snapshot, "kind": config.kind,
            "params": config_params(config), "start": start, "end": end, "every": every, "top_n": params.top_n,
            "published": publish, "name": name if publish else None, "flow_run_id": run_id}
    table = backfill_table_task(store, plan["backfill_id"], rows, info)
    summary = {"store": store_url(store), **info, "backfill_id": plan["backfill_id"], "rows": table["rows"],
               "reused": sum(r["reused"] for r in rows), "json": table["json"], "parquet": table["parquet"],
               "png": table["png"]}
    if not finished(rows):
        failed = [r for r in rows if r["status"] == "failed"]
        first = failed[0] if failed else rows[0]
        raise FactorflowError(f"backfill {plan['backfill_id']}: no cutoff finished ({len(failed)} failed, "
                              f"{len(rows) - len(failed)} skipped); cutoff {first['cutoff']}: {first['note']} "
                              f"(table: {table['json']})")
    return summary
