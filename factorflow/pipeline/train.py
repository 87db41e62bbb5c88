"""Fit one model on a split: the model is built here, once, from its validated config.

Pure orchestration (no Prefect): the train task calls :func:`train_model` with store
references and, when the model can be distributed, a Dask client. What runs on Dask is
decided by capability (:class:`~factorflow.models.base.BlockAlternating`: the driver maps the
model's block kernel), never by the model's name; every other model runs its own ``fit``.
Every iterative model reports one history row per step (sweep/epoch) including the held-out
RMSE of the named split, for the learning curve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from factorflow.evaluation.metrics import rating_metrics
from factorflow.factors import FactorArrays
from factorflow.models.base import BlockAlternating, MemoryBounded, NetworkScored
from factorflow.models.registry import as_config, make_model, model_class, supports
from factorflow.pipeline.champion import WarmStart, warm_start_from_current
from factorflow.progress import Progress
from factorflow.storage.splits import SplitRef, read_test, train_csr


@dataclass
class TrainResult:
    factors: FactorArrays
    history: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    kind: str = ""
    fit: dict[str, Any] = field(default_factory=dict)  # the model's optional fit_info() (e.g. BPMF's T)
    network: bytes | None = None  # the .keras file of a NetworkScored kind (its r̂ is not the tables' dot product)


def test_arrays(split: SplitRef) -> dict[str, np.ndarray]:
    """The split's test part as numpy arrays (user_idx, item_idx, rating)."""
    t = read_test(split)
    cols = {name: t.column(name).to_numpy() for name in ("user_idx", "item_idx", "rating")}
    return cols


def rmse_callback(test: dict[str, np.ndarray], rating_range: tuple[float, float]):
    """A per-step callback adding ``test_rmse`` (held-out, clipped) to the history row."""

    def _cb(step: int, factors: FactorArrays) -> dict[str, Any]:
        m = rating_metrics(factors, test["user_idx"], test["item_idx"], test["rating"], rating_range=rating_range)
        return {"test_rmse": m["rmse"]}

    return _cb


def available_memory() -> int | None:
    """Bytes of memory available to new allocations on this machine (None when unknown)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - unknown: then nothing is refused
        return None


def distributable(config: Any) -> bool:
    """Whether ``config``'s model has a block kernel the Dask driver can map (so the flow builds
    partitions for it)."""
    return supports(as_config(config).kind, BlockAlternating)


def check_fit_memory(config: Any, n_users: int = 0, n_items: int = 0, n_workers: int = 1) -> None:
    """ParameterError when ``n_workers`` fits of ``config``'s model cannot fit in the available
    memory (its class's ``min_fit_bytes``; models without the capability are not checked). Run
    before fitting, so a hopeless ``--rank`` is refused in one line, not by a MemoryError later."""
    config = as_config(config)
    if not supports(config.kind, MemoryBounded):
        return
    need = model_class(config.kind).min_fit_bytes(config, n_users, n_items) * max(1, n_workers)
    have = available_memory()
    if have and need > have:
        from factorflow.errors import ParameterError

        shape = f" on {n_users:,} users × {n_items:,} items" if n_users or n_items else ""
        size = next((f"--{name}={getattr(config, name)}" for name in ("rank", "hidden") if hasattr(config, name)),
                    f"--model={config.kind}")
        raise ParameterError(
            f"{size}: fitting {config.kind}{shape} needs at least "
            f"{need / 2**30:,.1f} GiB ({max(1, n_workers)} worker(s)) but {have / 2**30:,.1f} GiB is available; "
            f"use a smaller {size.split('=')[0]} or fewer --workers")


def train_model(
    config: Any,
    split: SplitRef,
    *,
    partitions: Any = None,
    client: Any = None,
    rating_range: tuple[float, float] = (0.5, 5.0),
    progress: Progress | None = None,
    warm_start: WarmStart | None = None,
) -> TrainResult:
    """Fit the model of ``config`` (a config object, or a kind name for its defaults) on
    ``split``'s train part.

    A :class:`~factorflow.models.base.BlockAlternating` model with a Dask ``client`` and
    ``partitions`` runs on the block driver; otherwise its own serial ``fit`` runs on the train
    CSR. Both give the same factors for a seed. With ``warm_start`` the fit starts from the
    published CURRENT's factors matched by raw id where it can
    (:func:`factorflow.pipeline.champion.warm_start_from_current`); what happened is in the
    result's ``fit["warm_start"]`` (``from`` a version, or ``skipped`` and why: a cold start).
    """
    config = as_config(config)
    n_workers = len(client.scheduler_info()["workers"]) if client is not None else 1
    check_fit_memory(config, int(split.manifest["n_users"]), int(split.manifest["n_items"]), n_workers)
    model = make_model(config)
    warm = warm_start_from_current(model, warm_start) if warm_start is not None else None
    callback = rmse_callback(test_arrays(split), rating_range)
    if client is not None and partitions is not None and isinstance(model, BlockAlternating):
        from factorflow.parallel.block_driver import fit_blocks

        fit_blocks(client, partitions, model, callback=callback, progress=progress)
    else:
        model.fit(train_csr(split), progress=progress, callback=callback)
    fit_info = getattr(model, "fit_info", None)
    network = None
    if isinstance(model, NetworkScored):
        from factorflow.serving.network import network_to_bytes

        network = network_to_bytes(model.network())
    fit = dict(fit_info()) if fit_info else {}
    if warm is not None:
        fit["warm_start"] = warm
    return TrainResult(model.factors(), list(model.history), model.params(), model.kind, fit, network)


def train_and_save(config: Any, split: SplitRef, run: Any, rating_range: tuple[float, float],
                   progress: Progress | None = None, warm_start: WarmStart | None = None) -> tuple[Any, float]:
    """Fit serially (the flow's process, or a Dask worker) and write the result into the run
    folder; returns (the run with what was trained, the fit's wall seconds)."""
    import time

    from factorflow.storage.scratch import save_trained

    started = time.perf_counter()
    result = train_model(config, split, rating_range=rating_range, progress=progress, warm_start=warm_start)
    seconds = time.perf_counter() - started
    run = run.trained(result.kind, result.params, 0, seconds=seconds, fit=result.fit)
    save_trained(run, result.factors, result.history, result.network)
    return run, seconds


def train_on_worker(config: Any, split: SplitRef, run: Any, rating_range: tuple[float, float],
                    topic: str) -> tuple[Any, float, str]:
    """:func:`train_and_save` as a Dask task (submitted with ``resources={"GPU": 1}``): only paths
    and small references travel; progress goes back as events on ``topic``
    (``{"done", "total", "message"}``, for ``Client.subscribe_topic``). Returns (run, seconds,
    where it ran: the worker's address and the accelerator Keras trains on)."""
    from distributed import get_worker

    from factorflow.models._keras_fit import accelerator

    worker = get_worker()

    def progress(done: float, total: float | None, message: str = "") -> None:
        worker.log_event(topic, {"done": done, "total": total, "message": message})

    run, seconds = train_and_save(config, split, run, rating_range, progress)
    return run, seconds, f"Dask worker {worker.address} ({accelerator()})"
