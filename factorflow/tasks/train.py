"""Prefect tasks: open the run's scratch folder; fit a model on a split (Dask when it can) and save it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import get_run_logger, task

from factorflow.config import ComputeOptions
from factorflow.pipeline.champion import WarmStart
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
               run: RunRef, rating_range: tuple[float, float], warm_start: WarmStart | None = None) -> RunRef:
    """Fit ``config``'s model and write its arrays and learning curve into the run folder.

    With ``warm_start`` (``retrain --warm-start``) the fit starts from the published CURRENT's
    factors matched by raw id (:func:`factorflow.pipeline.champion.warm_start_from_current`); the
    log says from which version and how many users/items it knew, or why it started cold.

    With ``partitions`` (a model with a block kernel) the fit runs on a Dask cluster: the one at
    ``compute.dask_address`` (e.g. shared by the fits of a ``compare`` flow, see
    :func:`shared_compute`), else a LocalCluster started for this fit. The returned run's
    ``seconds`` is the wall time of the fit itself (not the cluster's start).
    """
    from factorflow.models.registry import model_class
    from factorflow.parallel.cluster import dask_client
    from factorflow.pipeline.train import train_and_save, train_model
    from factorflow.storage.scratch import save_trained

    logger = get_run_logger()
    logger.info("train %s: running on %s", config.kind, where_running())
    progress = task_progress(f"train {config.kind}", getattr(model_class(config.kind), "step_unit", "step"))
    if partitions is None:
        if compute.device == "gpu":
            return _train_gpu(config, split, compute, run, rating_range, progress)
        run = train_and_save(config, split, run, rating_range, progress, warm_start)[0]
        _log_warm_start(run)
        return run
    if compute.device == "gpu":
        logger.info("--device gpu: %s runs on its block kernel on the Dask workers (CPU)", config.kind)
    with dask_client(compute.dask_address, compute.n_workers) as client:
        n_workers = len(client.scheduler_info()["workers"])
        logger.info("Dask: %d workers at %s; %d blocks per side", n_workers, client.scheduler.address,
                    len(partitions.manifest["user"]))
        started = time.perf_counter()
        result = train_model(config, split, partitions=partitions, client=client,
                             rating_range=rating_range, progress=progress, warm_start=warm_start)
        seconds = time.perf_counter() - started
    run = run.trained(result.kind, result.params, n_workers, seconds=seconds, fit=result.fit)
    save_trained(run, result.factors, result.history, result.network)
    _log_warm_start(run)
    return run


def _log_warm_start(run: RunRef) -> None:
    warm = run.fit.get("warm_start")
    if not warm:
        return
    if "skipped" in warm:
        get_run_logger().warning("warm start: %s", warm["skipped"])
    else:
        get_run_logger().info("warm start from CURRENT %s: %d of %d users and %d of %d items matched by raw id "
                              "(the rest start random)", warm["from"], warm["users"], warm["n_users"],
                              warm["items"], warm["n_items"])


def where_running() -> str:
    """``Dask worker ADDRESS (pid N)`` inside a task on a Dask worker, else ``the flow's process (pid N)``."""
    import os

    from factorflow.parallel.cluster import current_worker

    worker = current_worker()
    return f"Dask worker {worker.address} (pid {os.getpid()})" if worker else f"the flow's process (pid {os.getpid()})"


def _train_gpu(config: Any, split: SplitRef, compute: ComputeOptions, run: RunRef,
               rating_range: tuple[float, float], progress: Any) -> RunRef:
    """``--device gpu``: the fit runs as a Dask task needing ``GPU=1`` on the cluster at
    ``compute.dask_address`` when one of its workers declares that resource (progress comes back
    as worker events); otherwise on the flow's process. The log says which, and on what device."""
    import queue
    import uuid

    from factorflow.models._keras_fit import accelerator
    from factorflow.parallel.cluster import dask_client, gpu_workers, resolve_address
    from factorflow.pipeline.train import train_and_save, train_on_worker

    logger = get_run_logger()
    address = resolve_address(compute.dask_address)
    if address is not None:
        with dask_client(address) as client:
            gpus = gpu_workers(client)
            if gpus:
                topic = f"factorflow-progress-{uuid.uuid4().hex}"
                events: queue.Queue = queue.Queue()
                client.subscribe_topic(topic, lambda event: events.put(event[1]))
                logger.info("--device gpu: training %s on a Dask worker with a GPU resource (%s)", config.kind,
                            ", ".join(gpus))
                future = client.submit(train_on_worker, config, split, run, rating_range, topic,
                                       resources={"GPU": 1}, pure=False)
                _relay(events, future, progress)  # progress is reported from this thread, not Dask's loop
                run, seconds, where = future.result()
                client.unsubscribe_topic(topic)
                logger.info("trained %s on %s in %.1f s", config.kind, where, seconds)
                return run
            logger.info("--device gpu: no worker of the Dask cluster at %s was started with --resources GPU=1",
                        address)
    else:
        logger.info("--device gpu: no Dask scheduler given (--dask-address or $FACTORFLOW_DASK_ADDRESS)")
    logger.info("training %s on the flow's process (%s)", config.kind, accelerator())
    run, seconds = train_and_save(config, split, run, rating_range, progress)
    return run


def _relay(events: Any, future: Any, progress: Any, linger: float = 1.0) -> None:
    """Report queued ``{"done", "total", "message"}`` events until ``future`` is done, then the
    stragglers that arrive within ``linger`` seconds."""
    import queue

    deadline = None
    while True:
        try:
            event = events.get(timeout=0.2)  # Dask adds its own keys (the worker) to the message
            progress(event["done"], event["total"], event.get("message", ""))
            continue
        except queue.Empty:
            pass
        if future.done():
            deadline = deadline or time.perf_counter() + linger
            if time.perf_counter() > deadline:
                return


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
