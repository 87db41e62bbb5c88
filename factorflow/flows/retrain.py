"""The retrain flow: ingest → split → partitions → train → evaluate → recommend → publish.

Wiring only: each step is a task; what a step does lives under ``pipeline/``, ``data/`` and
``storage/``. Tasks hand each other typed references to the store (SnapshotRef, SplitRef,
PartitionsRef, RunRef) and small dicts, never arrays.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from factorflow.config import RetrainParams
from factorflow.flows._blend import submit_blend
from factorflow.flows.monitoring import monitored, run_name, snapshot_known
from factorflow.models.registry import as_config, config_type
from factorflow.pipeline.champion import WarmStart
from factorflow.storage.fs import store_url
from factorflow.tasks._runner import ClusterTaskRunner
from factorflow.tasks.data import ingest_and_split, partition
from factorflow.tasks.evaluate import evaluate_task
from factorflow.tasks.publish import publish_task
from factorflow.tasks.recommend import batch_recommend_task
from factorflow.tasks.train import open_run_task, shared_compute, train_task

ModelConfig = config_type()  # the registered kinds' configs, discriminated by "kind"


@flow(name="retrain", log_prints=True, task_runner=ClusterTaskRunner(), flow_run_name=run_name)
@monitored
def retrain_flow(source: str, store: str = "ff-store", model: str | ModelConfig = "als", name: str | None = None,
                 params: RetrainParams = RetrainParams()) -> dict[str, Any]:
    """Retrain ``model`` on ``source`` and publish it as model ``name`` (default: the kind) in ``store``.

    ``model`` is a kind (its tuned defaults) or a kind's config, e.g. ``{"kind": "als", "rank": 30}``
    in a deployment's parameters. Returns a small summary: model name, version, snapshot, split,
    metrics.
    """
    from factorflow.pipeline.blend import composite, partitioned
    from factorflow.pipeline.train import distributable

    logger = get_run_logger()
    config = as_config(model)
    name = name or config.kind
    snapshot, split_ref = ingest_and_split(source, store, params)
    snapshot_known(snapshot)
    rating_range = tuple(snapshot.manifest["rating_range"])
    on_dask = distributable(config) or partitioned(config)
    partitions = partition(split_ref, params.compute.n_blocks) if on_dask else None

    # submitted to the task runner (the Dask cluster's workers when there is one), one at a time
    warm = WarmStart(store, name, snapshot) if params.warm_start else None  # from CURRENT, by raw id
    run = open_run_task.submit(store, str(flow_run.get_id() or "local")).result()
    if composite(config):  # a blend: its components' fits side by side, then the combine step
        if warm is not None:
            logger.warning("warm start: a blend's components start cold (only ALS starts from CURRENT)")
        with shared_compute(params.compute, on_dask) as compute:
            run = submit_blend(config, split_ref, partitions, compute, run, rating_range)[0].result()
    else:
        run = train_task.submit(config, split_ref, partitions, params.compute, run, rating_range, warm).result()
    metrics = evaluate_task.submit(run, split_ref, rating_range, params.top_n).result()
    recs = batch_recommend_task.submit(run, split_ref, snapshot, params.top_n).result()
    version = publish_task.submit(store, name, run, metrics, snapshot, split_ref, partitions, recs,
                                  params.item_titles, rating_range, params.publish).result()
    test = metrics["test"]
    logger.info("model %s version %s: test RMSE %.4f (split %s); bias baseline %.4f",
                name, version, test["rmse"], split_ref.split, metrics["baselines"]["bias"]["rmse"])
    return {"model": name, "version": version, "store": store_url(store), "snapshot": snapshot.snapshot,
            "dataset": snapshot.name, "split": split_ref.split, "metrics": metrics, "kind": config.kind,
            "params": run.params}
