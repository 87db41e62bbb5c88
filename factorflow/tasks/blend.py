"""Prefect tasks of a blend's fit (:mod:`factorflow.pipeline.blend`): prepare, one validation fit and one
full fit per component (submitted side by side by the flows), combine."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from factorflow.config import ComputeOptions
from factorflow.pipeline.blend import BlendPlan
from factorflow.storage.partitions import PartitionsRef
from factorflow.storage.runs import RunRef
from factorflow.storage.splits import SplitRef
from factorflow.tasks._prefect import retry_on_io_error, task_progress


@task(name="blend-prepare", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error)
def blend_prepare_task(config: Any, split: SplitRef, run: RunRef, compute: ComputeOptions) -> BlendPlan:
    """The validation slice of TRAIN into the blend's run folder, and TRAIN minus it as partition
    blocks when a component runs on the Dask block driver."""
    from factorflow.pipeline.blend import prepare
    from factorflow.pipeline.train import distributable

    partitioned = any(distributable(c) for c in config.component_configs())
    plan = prepare(config, split, run, compute.n_blocks, partitioned, task_progress("blend-prepare", "blocks"))
    get_run_logger().info("blend: validation slice of %d train ratings (fraction %g per user, seed %d)%s",
                          plan.n_validation, config.validation_fraction, config.seed,
                          "; the rest partitioned for the block-driver components" if partitioned else "")
    return plan


@task(name="blend-validation", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_on_io_error)
def blend_validation_task(component: Any, index: int, config: Any, split: SplitRef, plan: BlendPlan,
                          compute: ComputeOptions) -> dict[str, Any]:
    """Fit one component on TRAIN minus the validation slice and save its predictions of the slice
    (on the shared Dask cluster when it has a block kernel, as the train task)."""
    from factorflow.models.registry import model_class
    from factorflow.parallel.cluster import dask_client
    from factorflow.pipeline.blend import validation_fit
    from factorflow.pipeline.train import distributable

    progress = task_progress(f"blend-validation {component.kind}",
                             getattr(model_class(component.kind), "step_unit", "step"))
    if plan.partitions is not None and distributable(component):
        with dask_client(compute.dask_address, compute.n_workers) as client:
            out = validation_fit(component, index, config, split, plan, client=client, progress=progress)
    else:
        out = validation_fit(component, index, config, split, plan, progress=progress)
    get_run_logger().info("blend: %s fitted on train minus the validation slice in %.1f s", component.kind,
                          out["seconds"])
    return out


@task(name="train", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_on_io_error)
def blend_component_task(component: Any, index: int, split: SplitRef, partitions: PartitionsRef | None,
                         compute: ComputeOptions, plan: BlendPlan, rating_range: tuple[float, float]) -> RunRef:
    """Component ``index``'s fit on the whole TRAIN: the train task's body, into its folder of the plan."""
    from factorflow.tasks.train import train_task

    return train_task.fn(component, split, partitions, compute, plan.components[index], rating_range)


@task(name="blend-combine", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error)
def blend_combine_task(config: Any, plan: BlendPlan, validations: list[dict[str, Any]], runs: list[RunRef],
                       rating_range: tuple[float, float]) -> RunRef:
    """The weights from the validation predictions and the exact blended tables of the full fits,
    saved as the blend's run (what evaluate and publish read)."""
    from factorflow.pipeline.blend import combine_runs

    run = combine_runs(config, plan, validations, runs, rating_range)
    fit = run.fit
    get_run_logger().info(
        "blend: intercept %.4f, weights %s; validation RMSE %.4f (components: %s)", fit["intercept"],
        ", ".join(f"{c['kind']} {c['weight']:.3f}" for c in fit["components"]), fit["validation_rmse"],
        ", ".join(f"{c['kind']} {c['validation_rmse']:.4f}" for c in fit["components"]))
    return run
