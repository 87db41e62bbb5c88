"""Wiring of a blend's tasks, shared by the retrain and compare flows (no maths: pipeline/blend.py)."""

from __future__ import annotations

from typing import Any

from prefect.futures import PrefectFuture

from factorflow.config import ComputeOptions
from factorflow.pipeline.train import distributable
from factorflow.storage.partitions import PartitionsRef
from factorflow.storage.splits import SplitRef
from factorflow.tasks.blend import blend_combine_task, blend_component_task, blend_prepare_task, blend_validation_task

#: (step name, its future) in the order the steps depend on each other; a model's leaderboard
#: outcome is decided by the first that did not complete.
Steps = list[tuple[str, Any]]


def submit_blend(config: Any, split: SplitRef, partitions: PartitionsRef | None, compute: ComputeOptions, run: Any,
                 rating_range: tuple[float, float],
                 trained: dict[int, Any] | None = None) -> tuple[PrefectFuture, Steps]:
    """Submit every task of a blend's fit at once: prepare, then per component its validation fit
    and its full-TRAIN fit (side by side; the block-driver components on ``compute``'s cluster
    with ``partitions``), then combine. ``run`` is the blend's run folder (a RunRef or its future);
    ``trained`` maps a component's index to the train future of the same config that the flow
    already runs (``compare``), which is used instead of a second identical fit. Returns the
    combine's future (the blend's RunRef) and the steps."""
    trained = trained or {}
    plan = blend_prepare_task.submit(config, split, run, compute)
    steps: Steps = [("blend-prepare", plan)]
    validations, runs = [], []
    for k, c in enumerate(config.component_configs()):
        validations.append(blend_validation_task.with_options(task_run_name=f"blend-validation-{k}-{c.kind}")
                           .submit(c, k, config, split, plan, compute))
        full = trained.get(k)
        if full is None:
            full = blend_component_task.with_options(task_run_name=f"train-blend-{k}-{c.kind}").submit(
                c, k, split, partitions if distributable(c) else None, compute, plan, rating_range)
        runs.append(full)
        steps += [(f"blend-validation {c.kind}", validations[-1]), (f"train {c.kind}", full)]
    combined = blend_combine_task.submit(config, plan, validations, runs, rating_range)
    return combined, [*steps, ("train", combined)]


def same_configs(config: Any, others: list[Any]) -> dict[int, Any]:
    """{component index: the config of ``others`` equal to that component of the blend ``config``}."""
    out = {}
    for k, c in enumerate(config.component_configs()):
        same = next((o for o in others if o == c), None)
        if same is not None:
            out[k] = same
    return out


def validation_rmse(outcomes: list[dict[str, Any]], config: Any, combined: PrefectFuture, configs: list[Any]) -> None:
    """Give every compared model that is also a component of the blend ``config`` (same config)
    its RMSE on the blend's validation slice, from the combine step's record (when it completed)."""
    if not combined.state.is_completed():
        return
    recorded = combined.result().fit.get("components") or []
    for k, other in same_configs(config, configs).items():
        for outcome in outcomes:
            if outcome["kind"] == other.kind and outcome.get("validation_rmse") is None and k < len(recorded):
                outcome["validation_rmse"] = recorded[k].get("validation_rmse")
