"""The compare flow: several models on one split, side by side in one leaderboard.

ingest → split → partitions (once, when any model runs on the Dask block driver) → for every
model, concurrently: open-run → train → evaluate (→ batch-recommend → publish, with
``publish``) → leaderboard.

Wiring only. The per-model chains are submitted to the flow's task runner (Prefect's default
thread pool, so they run at the same time); each model gets its own scratch folder
``STORE/runs/FLOW_RUN-KIND``. The block-driver models share ONE Dask cluster: the flow starts a
LocalCluster once (or uses ``--dask-address``) and every train task connects to its address,
so concurrent fits interleave their block tasks on the same workers instead of each starting
a cluster. A model whose chain fails (an error, or the publish gate) does not stop the others:
its leaderboard row carries its status and the reason; the flow itself completes.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, wait
from prefect.runtime import flow_run

from factorflow.config import RetrainParams
from factorflow.errors import FactorflowError, ModelRejectedError, ParameterError
from factorflow.flows._blend import same_configs, submit_blend, validation_rmse
from factorflow.flows.monitoring import monitored, run_name, snapshot_known
from factorflow.models.base import config_params
from factorflow.models.registry import as_config, config_type
from factorflow.storage.fs import store_url
from factorflow.tasks._runner import ClusterTaskRunner
from factorflow.tasks.data import ingest_and_split, partition
from factorflow.tasks.evaluate import evaluate_task
from factorflow.tasks.leaderboard import leaderboard_task
from factorflow.tasks.publish import publish_task
from factorflow.tasks.recommend import batch_recommend_task
from factorflow.tasks.train import open_run_task, shared_compute, train_task

ModelConfig = config_type()  # the registered kinds' configs, discriminated by "kind"

#: ``factorflow compare``'s models when none are named.
DEFAULT_MODELS = ("als", "bpmf", "svd", "pmf", "bias")


def _one_line(exc: BaseException) -> str:
    """A user error's own line; anything else as ``Type: first line``."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, FactorflowError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _outcome(kind: str, steps: list[tuple[str, PrefectFuture | None]]) -> dict[str, Any]:
    """What one model's chain of task futures (in order; all finished) came to: the leaderboard
    outcome of :mod:`factorflow.pipeline.leaderboard`."""
    out: dict[str, Any] = {"kind": kind, "status": "evaluated", "metrics": None, "seconds": None, "version": None,
                           "note": None}
    for step, future in steps:
        if future is None:
            continue
        state = future.state
        if state.is_completed():
            value = future.result()
            if step == "train":
                out["seconds"] = value.seconds
                out["validation_rmse"] = value.fit.get("validation_rmse")  # a blend's, on its validation slice
            elif step == "evaluate":
                out["metrics"] = value
            elif step == "publish":
                out["version"], out["status"] = value, "published"
            continue
        error = future.result(raise_on_failure=False) if state.is_failed() or state.is_crashed() else None
        if isinstance(error, ModelRejectedError):
            out["status"], out["note"] = "rejected", f"publish gate: {error}"
        else:
            why = _one_line(error) if isinstance(error, BaseException) else (state.message or state.name)
            out["status"], out["note"] = "failed", f"{step}: {why}"
        break
    return out


@flow(name="compare", log_prints=True, task_runner=ClusterTaskRunner(), flow_run_name=run_name)
@monitored
def compare_flow(source: str, store: str = "ff-store", models: list[str | ModelConfig] | None = None,
                 params: RetrainParams = RetrainParams(), publish: bool = False) -> dict[str, Any]:
    """Train every model of ``models`` (kinds with their registered defaults, or configs such as
    ``{"kind": "bpmf", "samples": 50}``; default :data:`DEFAULT_MODELS`) on the same split of
    ``source`` and rank them by held-out test RMSE.

    With ``publish`` each model is published under its kind as name (the gate decides whether
    it becomes CURRENT); without it nothing is published and no CURRENT changes. Returns a
    summary: store, dataset, snapshot, split, n_test, published, ``rows`` (the leaderboard,
    best first; a failed or rejected model's row says why) and the leaderboard's ``json`` and
    ``parquet`` URLs. Raises ParameterError for an unknown kind or a kind given twice.
    """
    from factorflow.pipeline.blend import composite, partitioned
    from factorflow.pipeline.train import distributable

    logger = get_run_logger()
    configs = [as_config(m) for m in (models if models is not None else DEFAULT_MODELS)]
    kinds = [c.kind for c in configs]
    if not configs or len(set(kinds)) != len(kinds):
        raise ParameterError(f"models={kinds!r}: must name at least one kind, each once")
    snapshot, split_ref = ingest_and_split(source, store, params)
    snapshot_known(snapshot)
    rating_range = tuple(snapshot.manifest["rating_range"])
    on_dask = {c.kind: distributable(c) or partitioned(c) for c in configs}
    partitions = partition(split_ref, params.compute.n_blocks) if any(on_dask.values()) else None
    run_id = str(flow_run.get_id() or "local")

    chains: dict[str, list[tuple[str, PrefectFuture | None]]] = {}
    trained: dict[str, PrefectFuture] = {}
    blended: dict[str, PrefectFuture] = {}
    with shared_compute(params.compute, any(on_dask.values())) as compute:
        # every model's chain is submitted at once; Prefect runs them side by side. A blend comes
        # after the models it may share a fit with (a component equal to a compared model's config)
        for c in sorted(configs, key=composite):
            k, parts = c.kind, partitions if on_dask[c.kind] else None

            def named(task: Any, step: str, kind: str = k) -> Any:
                return task.with_options(task_run_name=f"{step}-{kind}")

            run = named(open_run_task, "open-run").submit(store, f"{run_id}-{k}")
            steps: list[tuple[str, PrefectFuture | None]] = [("open-run", run)]
            if composite(c):
                same = {i: trained[m.kind] for i, m in same_configs(c, configs).items()}
                blended[k], blend_steps = submit_blend(c, split_ref, partitions, compute, run, rating_range, same)
                steps += blend_steps
            else:
                trained[k] = named(train_task, "train").submit(c, split_ref, parts, compute, run, rating_range)
                steps.append(("train", trained[k]))
            fitted = steps[-1][1]
            metrics = named(evaluate_task, "evaluate").submit(fitted, split_ref, rating_range, params.top_n)
            recs = version = None
            if publish:
                recs = named(batch_recommend_task, "batch-recommend").submit(fitted, split_ref, snapshot,
                                                                             params.top_n)
                version = named(publish_task, "publish").submit(store, k, fitted, metrics, snapshot, split_ref,
                                                                parts, recs, params.item_titles, rating_range,
                                                                params.publish)
            chains[k] = [*steps, ("evaluate", metrics), ("batch-recommend", recs), ("publish", version)]
        wait([f for steps in chains.values() for _, f in steps if f is not None])

    outcomes = [_outcome(k, steps) for k, steps in chains.items()]
    for blend, future in blended.items():  # the components' RMSE on the blend's validation slice
        validation_rmse(outcomes, next(c for c in configs if c.kind == blend), future, configs)
    for o in outcomes:
        if o["status"] in ("failed", "rejected"):
            logger.warning("%s %s: %s", o["kind"], o["status"], o["note"])
    info = {"source": source, "published": publish, "flow_run_id": run_id,
            "models": [{"kind": c.kind, "params": config_params(c)} for c in configs]}
    board = leaderboard_task(store, outcomes, split_ref, snapshot, info)
    return {"store": store_url(store), "dataset": snapshot.name, "snapshot": snapshot.snapshot,
            "split": split_ref.split, "n_test": split_ref.manifest.get("n_test"), "published": publish,
            "rows": board["rows"], "json": board["json"], "parquet": board["parquet"]}
