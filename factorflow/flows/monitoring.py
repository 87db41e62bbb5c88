"""What a person watching the Prefect UI sees of a factorflow flow run: its name, tags and
labels, and, when it fails, the failing step and the reason in the final state's message.

A flow is decorated twice::

    @flow(name="retrain", flow_run_name=run_name)
    @monitored
    def retrain_flow(source, store, model, name, params): ...

- **Name** (:func:`run_name`, resolved by Prefect when the run starts, from its parameters):
  ``FLOW-KINDS-DATASET-DATE``, e.g. ``retrain-als-ratings-2025-01-07T03:00Z`` (``DATE``: the
  run's scheduled start, UTC; a backfill adds its range). Once ingest knows the data snapshot
  the flow calls :func:`snapshot_known`, which renames the run ``...-ratings@1a2b3c4d-...``.
- **Tags** (set by :func:`monitored` when the body starts, added to the deployment's own):
  ``factorflow``, ``flow:NAME``, ``model:KIND`` (one per model), ``dataset:NAME``, and
  ``scheduled`` (created by a deployment's schedule) or ``manual``.
- **Labels** ``factorflow.host``, ``factorflow.pid``, ``factorflow.pid_start``: the process that
  runs the flow, so :mod:`factorflow.flows.reaper` can tell a killed run from a live one; and
  each run starts by marking this host's runs whose process is gone ``Crashed``.
- **Failure**: an exception escaping the body ends the run in a ``Failed`` state whose message is
  ``STEP: REASON`` — ``STEP`` the failed task run (``train``, ``evaluate-als``...), or the flow's
  own name when no task failed — and the same exception still reaches a direct caller (the CLI).

Monitoring never fails a run: an API error while naming or tagging is logged and ignored.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections.abc import Callable
from contextlib import suppress
from typing import Any, TypeVar

from factorflow.errors import FactorflowError
from factorflow.storage.fs import host_name

F = TypeVar("F", bound=Callable[..., Any])

FLOW_TAG = "factorflow"
HOST_LABEL = "factorflow.host"
PID_LABEL = "factorflow.pid"
PID_START_LABEL = "factorflow.pid_start"


def process_start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux ``/proc``; None elsewhere or
    when it does not run): with the pid, it tells a process from a later one reusing the pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    return int(fields[19]) if len(fields) > 19 and fields[0] != "Z" else None


def _kinds(parameters: dict[str, Any]) -> list[str]:
    models = parameters.get("models")
    if models is None:
        models = [parameters.get("model")] if "model" in parameters else []
    out = []
    for m in models:
        kind = m if isinstance(m, str) else m.get("kind") if isinstance(m, dict) else getattr(m, "kind", None)
        if kind:
            out.append(str(kind))
    return out


def _dataset(parameters: dict[str, Any]) -> str | None:
    from factorflow.data.ingest.snapshot import default_name

    params = parameters.get("params")
    ingest = params.get("ingest") if isinstance(params, dict) else getattr(params, "ingest", None)
    name = ingest.get("dataset") if isinstance(ingest, dict) else getattr(ingest, "dataset", None)
    source = parameters.get("source")
    return name or (default_name(str(source)) if source else None)


def _context() -> Any:
    from prefect.context import FlowRunContext

    return FlowRunContext.get()


def _compose(flow: str, parameters: dict[str, Any], expected_start: Any, snapshot: str | None = None) -> str:
    parts = [flow]
    kinds = _kinds(parameters)
    if kinds:
        parts.append("+".join(kinds))
    dataset = _dataset(parameters)
    if dataset:
        parts.append(dataset + (f"@{snapshot[:8]}" if snapshot else ""))
    if parameters.get("start") is not None and parameters.get("end") is not None:
        every = parameters.get("every")
        parts.append(f"{parameters['start']}..{parameters['end']}" + (f"-every-{every}" if every else ""))
    if expected_start is not None:
        parts.append(expected_start.strftime("%Y-%m-%dT%H:%MZ"))
    return "-".join(str(p) for p in parts)


def run_name() -> str:
    """``flow_run_name=`` of the factorflow flows: the name from the run's parameters (module docstring)."""
    ctx = _context()
    try:
        return _compose(ctx.flow.name, dict(ctx.parameters or {}), _utc(ctx.flow_run.expected_start_time))
    except Exception:  # a name is never worth a failed run
        return f"{ctx.flow.name}-{ctx.flow_run.id.hex[:8]}"


def _utc(moment: Any) -> Any:
    from datetime import UTC

    return moment.astimezone(UTC) if moment is not None else None


def run_tags(flow: str, parameters: dict[str, Any], auto_scheduled: bool) -> list[str]:
    """The tags :func:`monitored` gives a run (module docstring)."""
    tags = [FLOW_TAG, f"flow:{flow}", *(f"model:{k}" for k in _kinds(parameters))]
    dataset = _dataset(parameters)
    if dataset:
        tags.append(f"dataset:{dataset}")
    tags.append("scheduled" if auto_scheduled else "manual")
    return tags


def process_labels() -> dict[str, str]:
    """The labels naming this process (host, pid, its start time)."""
    pid = os.getpid()
    labels = {HOST_LABEL: host_name(), PID_LABEL: str(pid)}
    ticks = process_start_ticks(pid)
    if ticks is not None:
        labels[PID_START_LABEL] = str(ticks)
    return labels


def _logger() -> Any:
    from prefect import get_run_logger

    return get_run_logger()


def _started() -> None:
    """Tag and label the current run; log what it is about to do."""
    from prefect.client.orchestration import get_client

    ctx = _context()
    run = ctx.flow_run
    parameters = dict(ctx.parameters or {})
    tags = sorted(set(run.tags or []) | set(run_tags(ctx.flow.name, parameters, bool(run.auto_scheduled))))
    with get_client(sync_client=True) as client:
        client.update_flow_run(run.id, tags=tags)
        client.update_flow_run_labels(run.id, process_labels())
    run.tags = tags
    _logger().info("%s started on %s (pid %d): %s; tags %s", run.name, host_name(), os.getpid(),
                   ", ".join(f"{k}={_short(v)}" for k, v in parameters.items()), ", ".join(tags))


def _reap_local() -> None:
    """Mark this host's flow runs whose process is gone Crashed (:mod:`factorflow.flows.reaper`)."""
    from factorflow.flows.reaper import reap_dead_local_runs

    for dead in reap_dead_local_runs():
        _logger().warning("flow run %s (%s) marked Crashed: %s", dead.name, dead.id, dead.message)


def _short(value: Any, limit: int = 120) -> str:
    text = value.model_dump_json(exclude_defaults=True) if hasattr(value, "model_dump_json") else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def snapshot_known(snapshot: Any) -> None:
    """Rename the current run with the data snapshot ingest produced (``DATASET@SNAPSHOT8``) and
    tag it with the snapshot's dataset name. No-op outside a flow run."""
    from prefect.client.orchestration import get_client

    ctx = _context()
    if ctx is None:
        return
    try:
        run = ctx.flow_run
        parameters = {**(ctx.parameters or {}), "source": None, "params": {"ingest": {"dataset": snapshot.name}}}
        name = _compose(ctx.flow.name, parameters, _utc(run.expected_start_time), snapshot.snapshot)
        tags = sorted({t for t in (run.tags or []) if not t.startswith("dataset:")} | {f"dataset:{snapshot.name}"})
        with get_client(sync_client=True) as client:
            client.update_flow_run(run.id, name=name, tags=tags)
        run.name, run.tags = name, tags
        _logger().info("data snapshot %s/%s: %s ratings, %s users, %s items; flow run renamed %s", snapshot.name,
                       snapshot.snapshot, _count(snapshot.manifest, "rows_kept"),
                       _count(snapshot.manifest, "n_users"), _count(snapshot.manifest, "n_items"), name)
    except Exception as exc:  # monitoring never fails a run
        _logger().warning("could not rename the flow run after ingest: %s", one_line(exc))


def _count(manifest: dict[str, Any], key: str) -> str:
    value = manifest.get(key)
    return f"{value:,}" if isinstance(value, int) else "?"


def one_line(exc: BaseException) -> str:
    """A user error's own line; anything else as ``Type: first line``."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, FactorflowError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_DEFAULT_SUFFIX = re.compile(r"-(\d+|[0-9a-f]{3})$")  # Prefect's default task run names: "train-0", "train-3fa"


def failing_step(exc: BaseException, wait_s: float = 10.0) -> str | None:
    """The task run ``exc`` escaped from, or None when the flow body raised it itself.

    A task that ran in this process leaves Prefect's task engine in the traceback: its run's name
    (Prefect's default suffix dropped: ``train``; a custom name as given: ``train-als``). One that
    ran elsewhere (a Dask worker) comes back without those frames: then the latest failed or
    crashed task run of this flow run, as the API records it (within ``wait_s``: task states
    reach the API asynchronously)."""
    import time

    step, through_prefect = None, False
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        through_prefect = through_prefect or f"{os.sep}prefect{os.sep}" in frame.f_code.co_filename
        engine = frame.f_locals.get("self")
        if type(engine).__name__.endswith("TaskRunEngine"):
            task_name = getattr(getattr(engine, "task", None), "name", None)
            name = getattr(getattr(engine, "task_run", None), "name", None) or task_name
            if name:
                step = name if name == task_name else _DEFAULT_SUFFIX.sub("", name)
        tb = tb.tb_next
    if step or not through_prefect:
        return step
    deadline = time.monotonic() + wait_s
    while True:
        with suppress(Exception):
            step = _failed_task_run()
        if step or time.monotonic() > deadline:
            return step
        time.sleep(0.5)


def _failed_task_run() -> str | None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[_context().flow_run.id])),
            task_run_filter=TaskRunFilter(state=TaskRunFilterState(
                type=TaskRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED]))))
    if not runs:
        return None
    last = max(runs, key=lambda r: (r.end_time or r.start_time or r.created).timestamp())
    return _DEFAULT_SUFFIX.sub("", last.name)


def failed_state(exc: Exception) -> Any:
    """A ``Failed`` state saying ``STEP: REASON`` and carrying ``exc`` (so a direct caller gets it)."""
    from prefect.states import Failed

    ctx = _context()
    step = failing_step(exc) or ctx.flow.name
    message = f"{step}: {one_line(exc)}"
    logger = _logger()
    if isinstance(exc, FactorflowError):
        logger.error("failed at %s", message)
    else:
        logger.error("failed at %s", message, exc_info=exc)
    return Failed(message=message, data=exc)


def monitored(fn: F) -> F:
    """Wrap a flow function: tags and labels at the start, ``STEP: REASON`` on failure (module docstring)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _context() is None:  # called as a plain function (fn.fn(...)): nothing to monitor
            return fn(*args, **kwargs)
        try:
            _started()
        except Exception as exc:  # monitoring never fails a run
            _logger().warning("could not tag the flow run: %s", one_line(exc))
        try:
            _reap_local()
        except Exception as exc:
            _logger().warning("could not check for crashed flow runs: %s", one_line(exc))
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            return failed_state(exc)

    # Prefect validates parameters against the signature, resolving string annotations in the
    # function's module: give the wrapper the evaluated signature of the flow function.
    wrapper.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
