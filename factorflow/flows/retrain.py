"""The retrain flow: ingest → split → partitions → train → evaluate → recommend → publish."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from factorflow.config import RetrainParams
from factorflow.storage.fs import open_store, url_of
from factorflow.storage.runs import keep_runs, prune_runs, start_run
from factorflow.tasks.data import ingest, partition, split
from factorflow.tasks.evaluate import evaluate_task
from factorflow.tasks.publish import batch_recommend_task, publish_task
from factorflow.tasks.train import train_task

DISTRIBUTED = {"als"}  # kinds trained by a Dask driver over partitions


@flow(name="retrain", log_prints=True)
def retrain_flow(source: str, store: str = "ff-store", model: str = "als", name: str | None = None,
                 params: RetrainParams = RetrainParams()) -> dict[str, Any]:
    """Retrain ``model`` on ``source`` and publish it as model ``name`` (default: the kind) in ``store``.

    Returns a small summary: model name, version, snapshot, split, metrics.
    """
    from factorflow.data.ingest import default_name
    from factorflow.models.registry import make_model

    logger = get_run_logger()
    make_model(model, params.model.overrides())  # fail fast on a bad kind or hyper-parameter
    name = name or model
    ingest_opts = params.ingest.model_copy(update={"dataset": params.ingest.dataset or default_name(source)})
    split_opts = params.split
    if ingest_opts.test_source and split_opts.kind != "given":
        split_opts = split_opts.model_copy(update={"kind": "given"})
        logger.info("a test source was given: using the 'given' split")

    snapshot = ingest(source, store, ingest_opts)
    rating_range = tuple(snapshot["manifest"]["rating_range"])
    split_ref = split(snapshot, split_opts)
    partitions = partition(split_ref, params.compute.n_blocks) if model in DISTRIBUTED else None

    run_dir = start_run(store, str(flow_run.get_id() or "local"))  # a URL every task reopens
    pruned = prune_runs(store)
    if pruned:
        logger.info("removed %d old run folder(s) under %s/runs (keeping the newest %d and live ones)",
                    len(pruned), store, keep_runs())
    run = train_task(model, params.model.overrides(), split_ref, partitions, params.compute, run_dir, rating_range)
    metrics = evaluate_task(run, split_ref, run_dir, rating_range, params.top_n)
    recs = batch_recommend_task(run, split_ref, snapshot, run_dir, params.top_n)
    version = publish_task(store, name, run, metrics, snapshot, split_ref, partitions, recs,
                           params.item_titles, rating_range)
    test = metrics["test"]
    logger.info("model %s version %s: test RMSE %.4f (split %s); bias baseline %.4f",
                name, version, test["rmse"], split_ref["split"], metrics["baselines"]["bias"]["rmse"])
    fs, root = open_store(store)
    return {"model": name, "version": version, "store": url_of(fs, root), "snapshot": snapshot["snapshot"],
            "dataset": snapshot["name"], "split": split_ref["split"], "metrics": metrics, "kind": model,
            "params": run["params"]}
