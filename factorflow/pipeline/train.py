"""Fit one model on a split: the serial path for every kind, the Dask driver for ALS.

Pure orchestration (no Prefect): the train task calls :func:`train_model` with paths'
manifests and, for ALS, a Dask client. Every iterative model reports one history row per
step (sweep/epoch) including the held-out RMSE of the named split, for the learning curve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from factorflow.evaluation.metrics import rating_metrics
from factorflow.factors import FactorArrays
from factorflow.models.registry import make_model
from factorflow.progress import Progress
from factorflow.data.splits import SplitRef, read_test, train_csr


@dataclass
class TrainResult:
    factors: FactorArrays
    history: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    kind: str = ""


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


def check_fit_memory(model: Any, n_users: int = 0, n_items: int = 0, n_workers: int = 1) -> None:
    """ParameterError when ``n_workers`` fits of ``model`` cannot fit in the available memory
    (``model.min_fit_bytes``; models without one are not checked). Run before fitting, so a
    hopeless ``--rank`` is refused in one line instead of failing with MemoryError later."""
    need = getattr(model, "min_fit_bytes", lambda *_: 0)(n_users, n_items) * max(1, n_workers)
    have = available_memory()
    if have and need > have:
        from factorflow.errors import ParameterError

        shape = f" on {n_users:,} users × {n_items:,} items" if n_users or n_items else ""
        raise ParameterError(
            f"--rank={model.params().get('rank')}: fitting {model.kind}{shape} needs at least {need / 2**30:,.1f} GiB "
            f"({max(1, n_workers)} worker(s)) but {have / 2**30:,.1f} GiB is available; "
            "use a smaller --rank or fewer --workers")


def train_model(
    kind: str,
    overrides: dict[str, Any],
    split: SplitRef,
    *,
    partitions: Any = None,
    client: Any = None,
    rating_range: tuple[float, float] = (0.5, 5.0),
    progress: Progress | None = None,
) -> TrainResult:
    """Fit ``kind`` with ``overrides`` on ``split``'s train part.

    ALS with a Dask ``client`` and ``partitions`` runs the distributed driver; otherwise the
    model's own serial ``fit`` runs on the train CSR. Both give the same factors for a seed.
    """
    model = make_model(kind, overrides)
    n_workers = len(client.scheduler_info()["workers"]) if client is not None else 1
    check_fit_memory(model, int(split.manifest["n_users"]), int(split.manifest["n_items"]), n_workers)
    callback = rmse_callback(test_arrays(split), rating_range)
    if kind == "als" and client is not None and partitions is not None:
        from factorflow.parallel.block_driver import fit_als_dask

        factors, history = fit_als_dask(client, partitions, model.config, callback=callback, progress=progress)
        return TrainResult(factors, history, model.params(), kind)
    model.fit(train_csr(split), progress=progress, callback=callback)
    return TrainResult(model.factors(), list(getattr(model, "history", [])), model.params(), kind)
