"""Prefect tasks: open the run's scratch folder; fit a model on a split (Dask when it can) and save it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import get_run_logger, task

from factorflow.config import ComputeOptions
from factorflow.storage.partitions import PartitionsRef
from factorflow.storage.runs import RunRef
from factorflow.storage.splits import SplitRef
from factorflow.tasks._prefect import retry_on_io_error, task_progress


@task(name="open-run", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error)
def open_run_task(store: str, run_id: str) -> RunRef:
    """Create the run's scratch folder and apply the retention rule to older ones."""
    from factorflow.storage.runs import keep_runs, open_run, prune_runs

    run = open_run(store, run_id)
    pruned = prune_runs(store)
    if pruned:
        get_run_logger().info("removed %d old run folder(s) under %s/runs (keeping the newest %d and live ones)",
                              len(pruned), store, keep_runs())
    return run


@task(name="train", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_on_io_error)
def train_task(config: Any, split: SplitRef, partitions: PartitionsRef | None, compute: ComputeOptions,
               run: RunRef, rating_range: tuple[float, float]) -> RunRef:
    """Fit ``config``'s model and write its arrays and learning curve into the run folder.

    With ``partitions`` (a model with a block kernel) the fit runs on a Dask cluster: the one at
    ``compute.dask_address`` (e.g. shared by the fits of a ``compare`` flow, see
    :func:`shared_compute`), else a LocalCluster started for this fit. The returned run's
    ``seconds`` is the wall time of the fit itself (not the cluster's start).
    """
    from factorflow.pipeline.train import train_model
    from factorflow.storage.scratch import save_trained

    logger = get_run_logger()
    progress = task_progress(f"train {config.kind}", "sweep")
    n_workers = 0
    if partitions is not None:
        from factorflow.parallel.cluster import dask_client

        with dask_client(compute.dask_address, compute.n_workers) as client:
            n_workers = len(client.scheduler_info()["workers"])
            logger.info("Dask: %d workers at %s; %d blocks per side", n_workers, client.scheduler.address,
                        len(partitions.manifest["user"]))
            started = time.perf_counter()
            result = train_model(config, split, partitions=partitions, client=client,
                                 rating_range=rating_range, progress=progress)
            seconds = time.perf_counter() - started
    else:
        started = time.perf_counter()
        result = train_model(config, split, rating_range=rating_range, progress=progress)
        seconds = time.perf_counter() - started
    run = run.trained(result.kind, result.params, n_workers, seconds=seconds, fit=result.fit)
    save_trained(run, result.factors, result.history)
    return run


@contextmanager
def shared_compute(compute: ComputeOptions, needed: bool = True) -> Iterator[ComputeOptions]:
    """``compute`` with ``dask_address`` naming one Dask cluster for every fit of a flow run.

    With ``needed`` (some model runs on the block driver): the given or configured scheduler
    (checked now), else a LocalCluster of ``compute.n_workers`` processes started here and
    closed when the block exits; concurrent :func:`train_task` runs then connect to it instead
    of each starting its own. Without ``needed``, ``compute`` unchanged and nothing started.
    """
    if not needed:
        yield compute
        return
    from factorflow.parallel.cluster import resolve_address, shared_cluster

    started = resolve_address(compute.dask_address) is None
    with shared_cluster(compute.dask_address, compute.n_workers) as address:
        get_run_logger().info("Dask: %s at %s, shared by the fits", "a LocalCluster" if started else "the cluster",
                              address)
        yield compute.model_copy(update={"dask_address": address})
