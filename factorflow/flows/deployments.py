"""factorflow's deployments, from Python: what ``factorflow serve`` serves and ``deploy/prefect.yaml`` declares.

Three deployments, the same names and parameters as ``deploy/prefect.yaml``:

- ``nightly-retrain`` (flow ``retrain``): on a schedule (cron, default :data:`NIGHTLY_CRON`
  UTC, or an interval), parameters ``source``, ``store``, ``model`` (a kind or a config dict
  such as ``{"kind": "als", "rank": 50}``), ``name``, ``params`` (``RetrainParams`` as JSON:
  ``publish.keep_versions``, ``warm_start``, split/compute options...).
- ``backfill`` (flow ``backfill``): no schedule, run on demand with ``start``/``end``/``every``;
  ``source``, ``store``, ``model`` preset.
- ``compare`` (flow ``compare``): no schedule; ``source``, ``store`` preset.

:func:`serve` runs them in this process (``prefect.serve``): the scheduled runs and the on-demand
runs of all three, each flow run in a subprocess, until SIGINT/SIGTERM; meanwhile it reaps dead
flow runs every ``reap_every`` seconds (:mod:`factorflow.flows.reaper`). It needs a Prefect
server that outlives it (``$PREFECT_API_URL``): the schedules live on the server, whose scheduler
service creates the runs this process picks up.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from factorflow.config import RetrainParams
from factorflow.flows.monitoring import FLOW_TAG

NIGHTLY = "nightly-retrain"
BACKFILL = "backfill"
COMPARE = "compare"
NIGHTLY_CRON = "0 3 * * *"


def model_parameter(config: Any) -> str | dict[str, Any]:
    """A model (kind, config, or config dict) as a deployment parameter: its kind when every
    hyper-parameter is the default, else ``{"kind": ..., <the fields that differ>}``."""
    from factorflow.models.base import config_params
    from factorflow.models.registry import as_config, make_config

    if isinstance(config, dict):  # {"kind": ..., field: value}, as in prefect.yaml
        config = make_config(str(config.get("kind")), {k: v for k, v in config.items() if k != "kind"})
    config = as_config(config)
    defaults = config_params(make_config(config.kind))
    changed = {k: v for k, v in config_params(config).items() if defaults.get(k) != v}
    return {"kind": config.kind, **changed} if changed else config.kind


def params_parameter(params: RetrainParams | None) -> dict[str, Any]:
    """``RetrainParams`` as a deployment parameter: JSON, only what differs from the defaults."""
    return (params or RetrainParams()).model_dump(mode="json", exclude_defaults=True)


def build_deployments(source: str, store: str, model: Any = "als", name: str | None = None,
                      params: RetrainParams | None = None, cron: str | None = NIGHTLY_CRON,
                      interval: float | timedelta | None = None) -> list[Any]:
    """The three ``RunnerDeployment`` objects (module docstring). ``interval`` (seconds), when
    given, schedules ``nightly-retrain`` instead of ``cron``."""
    from prefect.deployments.runner import EntrypointType

    from factorflow.flows.backfill import backfill_flow
    from factorflow.flows.compare import compare_flow
    from factorflow.flows.retrain import retrain_flow

    m, p = model_parameter(model), params_parameter(params)
    schedule: dict[str, Any] = {"interval": interval} if interval is not None else {"cron": cron or NIGHTLY_CRON}
    common = {"tags": [FLOW_TAG], "entrypoint_type": EntrypointType.MODULE_PATH}
    return [
        retrain_flow.to_deployment(
            NIGHTLY, parameters={"source": source, "store": store, "model": m, "name": name, "params": p},
            description="Retrain and publish on a schedule (champion/challenger decides CURRENT).", **schedule,
            **common),
        backfill_flow.to_deployment(
            BACKFILL, parameters={"source": source, "store": store, "model": m, "params": p},
            description="On demand: give start, end and every (e.g. 2015-01-01, 2017-01-01, 365d).", **common),
        compare_flow.to_deployment(
            COMPARE, parameters={"source": source, "store": store, "params": p},
            description="On demand: several models on one split, one leaderboard.", **common),
    ]


def serve(deployments: list[Any], limit: int | None = None, reap_every: float | None = 60.0,
          stale_after: float | None = None) -> None:
    """Serve ``deployments`` in this process until SIGINT or SIGTERM (``prefect.serve``; the
    schedules are paused on shutdown), reaping dead flow runs every ``reap_every`` seconds.

    First the runs their schedules created before (:func:`drop_scheduled_backlog`) are deleted:
    they carry the parameters of then, and a backlog of late runs would all run now, one after
    the other. The server's scheduler makes the runs of the schedule being served."""
    import prefect
    from prefect.logging import get_logger

    dropped = drop_scheduled_backlog([f"{d.flow_name}/{d.name}" for d in deployments])
    if dropped:
        get_logger("factorflow.serve").info("deleted %d run(s) scheduled before this serve started "
                                            "(the schedule being served makes its own)", dropped)
    with _reaping(reap_every, stale_after):
        prefect.serve(*deployments, limit=limit, print_starting_message=False)


def drop_scheduled_backlog(names: list[str]) -> int:
    """Delete the runs still waiting in SCHEDULED (late ones included) that a schedule of the
    deployments ``names`` (``FLOW/DEPLOYMENT``) created; runs asked for by hand are kept. Returns
    how many were deleted."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound

    dropped = 0
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                deployment = client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            kept = 0
            while True:  # pages of 200; the kept ones (asked for by hand) stay ahead of the offset
                runs = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                    flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))), limit=200, offset=kept)
                for run in runs:
                    if run.auto_scheduled:
                        client.delete_flow_run(run.id)
                        dropped += 1
                    else:
                        kept += 1
                if len(runs) < 200:
                    break
    return dropped


@contextmanager
def _reaping(every: float | None, stale_after: float | None) -> Iterator[None]:
    """A daemon thread that runs :func:`factorflow.flows.reaper.reap` every ``every`` seconds."""
    if not every:
        yield
        return
    import logging

    from factorflow.flows.reaper import reap

    log = logging.getLogger("factorflow.serve")
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                for dead in reap(stale_after):
                    log.warning("flow run %s (%s) marked Crashed: %s", dead.name, dead.id, dead.message)
            except Exception as exc:  # the API may be briefly away; try again next time
                log.warning("reaping dead flow runs failed: %s", exc)
            stop.wait(every)

    thread = threading.Thread(target=loop, name="factorflow-reaper", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
