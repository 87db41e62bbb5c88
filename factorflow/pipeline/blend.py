"""A blend's fit as separate steps, so the flows can run its components side by side (no Prefect here).

:meth:`factorflow.models.blend.Blend.fit` runs the same maths serially in one process; here it is cut
where the work is independent (the :class:`~factorflow.models.base.Composite` capability):

1. :func:`prepare` — the validation slice V of TRAIN (seeded, per-user; the test split is never
   read), written into the blend's run folder, and TRAIN − V as partition blocks when a
   component runs on the Dask block driver;
2. per component, independently: :func:`validation_fit` (fit on TRAIN − V, predict V; the Dask
   block driver for a block-alternating kind given a client) and the ordinary train step on the
   whole TRAIN (:func:`factorflow.pipeline.train.train_model`, into :func:`component_run`'s folder,
   or a run of the same config the flow already trains, e.g. ``compare``'s);
3. :func:`combine_runs` — :func:`factorflow.models.blend.combine` (the weights, the exact tables)
   over those results, saved as the blend's run, which evaluate, batch-recommend and publish
   then treat like any other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from factorflow.models.base import BlockAlternating, Composite, config_params
from factorflow.models.blend import BlendConfig, ComponentFit, combine, validation_split
from factorflow.models.registry import as_config, make_model, supports
from factorflow.progress import Progress
from factorflow.storage import layout
from factorflow.storage.partitions import PartitionsRef
from factorflow.storage.runs import RunRef
from factorflow.storage.scratch import load_run_factors, read_arrays, save_trained, write_arrays
from factorflow.storage.splits import SplitRef, train_csr


@dataclass(frozen=True)
class BlendPlan:
    """What :func:`prepare` wrote: the blend's ``run`` folder (the slice V in it), V's size, the
    blocks of TRAIN − V (None when no component runs on the block driver) and each component's
    run folder for its full-TRAIN fit."""

    run: RunRef
    n_validation: int
    partitions: PartitionsRef | None = None
    components: tuple[RunRef, ...] = field(default_factory=tuple)
    started: float = 0.0  # time.time() when prepare began: the blend's wall seconds count from here


def composite(config: Any) -> bool:
    """Whether ``config``'s model is fitted as components plus a combine step (the flows wire it so)."""
    return supports(as_config(config).kind, Composite)


def partitioned(config: Any) -> bool:
    """Whether a component of the blend ``config`` runs on the Dask block driver (the flow then
    partitions TRAIN, and :func:`prepare` TRAIN − V, and starts a shared cluster)."""
    from factorflow.pipeline.train import distributable

    config = as_config(config)
    return composite(config) and any(distributable(c) for c in config.component_configs())


def component_run(run: RunRef, index: int, kind: str) -> RunRef:
    """The scratch folder of component ``index``'s full-TRAIN fit, inside the blend's run folder."""
    name = layout.RUN_BLEND_COMPONENT.format(index=index, kind=kind)
    return RunRef(run.file(name), f"{run.run_id}/{name}")


def prepare(config: BlendConfig, split: SplitRef, run: RunRef, n_blocks: int | None = None,
            partitioned: bool = False, progress: Progress | None = None) -> BlendPlan:
    """Step 1: V into ``run`` (``blend_validation.npz``: users, items, ratings) and, with
    ``partitioned``, TRAIN − V as ``n_blocks`` (default: from its size) blocks per side."""
    from factorflow.data.partitions import default_n_blocks, write_csr_partitions

    started = time.time()
    fit_part, (users, items, ratings) = validation_split(train_csr(split), config)
    write_arrays(run.file(layout.RUN_BLEND_VALIDATION), users=users, items=items, ratings=ratings)
    parts = None
    if partitioned:
        fit_part.sort_indices()
        parts = write_csr_partitions(run.file(layout.RUN_BLEND_FIT_PART), f"{split.split}-blend-fit",
                                     fit_part, n_blocks or default_n_blocks(fit_part.nnz), progress)
    runs = tuple(component_run(run, n, c.kind) for n, c in enumerate(config.component_configs()))
    return BlendPlan(run, int(len(ratings)), parts, runs, started)


def validation_fit(component: Any, index: int, config: BlendConfig, split: SplitRef, plan: BlendPlan, *,
                   client: Any = None, progress: Progress | None = None) -> dict[str, Any]:
    """Step 2a for one component: fit it on TRAIN − V (on the block driver when it can and
    ``client`` is given), predict V's pairs and save them in the blend's run folder. Returns
    ``{"index", "kind", "predictions" (their URL), "seconds"}`` (the RMSEs on V are
    :func:`combine_runs`' record)."""
    started = time.perf_counter()
    fit_part, (users, items, _) = validation_split(train_csr(split), config)
    model = make_model(component)
    if client is not None and plan.partitions is not None and isinstance(model, BlockAlternating):
        from factorflow.parallel.block_driver import fit_blocks

        fit_blocks(client, plan.partitions, model, progress=progress)
    else:
        model.fit(fit_part, progress=progress)
    path = plan.run.file(layout.RUN_BLEND_PREDICTIONS.format(index=index))
    write_arrays(path, predictions=model.factors().predict(users, items))
    return {"index": index, "kind": component.kind, "predictions": path, "seconds": time.perf_counter() - started}


def combine_runs(config: BlendConfig, plan: BlendPlan, validations: list[dict[str, Any]], runs: list[RunRef],
                 rating_range: tuple[float, float]) -> RunRef:
    """Step 3: the weights from the components' V predictions, the exact tables of their full
    fits (``runs``, in component order), saved as the blend's run (no history: a blend has no
    steps; ``fit`` is :func:`~factorflow.models.blend.combine`'s record). Its ``seconds`` are wall
    seconds from :func:`prepare` to the end of this step — the components ran side by side, beside
    whatever else the flow ran, as every ``compare`` row's seconds do; ``fit["component_seconds"]``
    adds up the components' own fits."""
    components = config.component_configs()
    if len(validations) != len(components) or len(runs) != len(components):
        raise ValueError(f"blend: {len(components)} components, {len(validations)} validation fits, {len(runs)} runs")
    ratings = read_arrays(plan.run.file(layout.RUN_BLEND_VALIDATION))["ratings"]
    fits = []
    for c, v, r in zip(components, sorted(validations, key=lambda v: v["index"]), runs, strict=True):
        fits.append(ComponentFit(c, read_arrays(v["predictions"])["predictions"], load_run_factors(r),
                                 float(v["seconds"]) + float(r.seconds or 0.0), dict(r.fit)))
    tables, info = combine(config, fits, ratings, rating_range)
    seconds = time.time() - plan.started if plan.started else info["component_seconds"]
    workers = [r.dask_workers for r in runs if r.dask_workers]
    run = plan.run.trained(config.kind, config_params(config), max(workers) if workers else None, seconds=seconds,
                           fit=info)
    save_trained(run, tables, [])
    return run
