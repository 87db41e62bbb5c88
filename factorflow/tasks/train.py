"""Prefect task: fit a model on a split (ALS through the Dask driver) and save its arrays."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from factorflow.config import ComputeOptions
from factorflow.storage.fs import join, open_store, write_json
from factorflow.tasks._prefect import retry_on_io_error, task_progress


@task(name="train", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_on_io_error)
def train_task(kind: str, overrides: dict[str, Any], split: dict[str, Any], partitions: dict[str, Any] | None,
               compute: ComputeOptions, run_dir: str, rating_range: tuple[float, float]) -> dict[str, Any]:
    """Fit ``kind`` and write ``factors.npz`` + ``history.json`` under ``run_dir``; returns paths and params."""
    from factorflow.data.splits import SplitRef
    from factorflow.storage.scratch import save_factors
    from factorflow.pipeline.train import train_model

    logger = get_run_logger()
    split_ref = SplitRef.from_dict(split)
    progress = task_progress(f"train {kind}", "sweep")
    if partitions is not None:
        from factorflow.parallel.cluster import dask_client
        from factorflow.data.partitions import PartitionsRef

        parts = PartitionsRef.from_dict(partitions)
        with dask_client(compute.dask_address, compute.n_workers) as client:
            n_workers = len(client.scheduler_info()["workers"])
            logger.info("Dask: %d workers at %s; %d blocks per side", n_workers, client.scheduler.address,
                        len(parts.manifest["user"]))
            result = train_model(kind, overrides, split_ref, partitions=parts, client=client,
                                 rating_range=rating_range, progress=progress)
    else:
        n_workers = 0
        result = train_model(kind, overrides, split_ref, rating_range=rating_range, progress=progress)
    fs, root = open_store(run_dir)
    factors_path = join(run_dir, "factors.npz")
    save_factors(factors_path, result.factors)
    write_json(fs, join(root, "history.json"), result.history)
    return {"kind": kind, "params": result.params, "factors": factors_path, "history": result.history,
            "dask_workers": n_workers}
