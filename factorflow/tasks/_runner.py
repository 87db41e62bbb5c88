"""The task runner of factorflow's flows: the Dask cluster the fits use, else a thread pool.

``ClusterTaskRunner`` is every flow's ``task_runner`` (``@flow(task_runner=ClusterTaskRunner())``).
It decides when the flow run submits its first task, from the flow run itself, so the CLI, the
Python API and deployments (``prefect.yaml``, ``factorflow serve``, a work pool's worker) all
get the same choice without passing a task runner around:

1. the ``address`` it was built with (``ClusterTaskRunner("tcp://host:8786")``), else
2. the flow run's compute options: a parameter with ``.compute.dask_address`` (``RetrainParams``;
   a dict ``{"compute": {"dask_address": ...}}`` too) — ``--dask-address`` on the command line,
   ``params.compute.dask_address`` in a deployment's parameters, else
3. ``$FACTORFLOW_DASK_ADDRESS`` (else ``$DASK_SCHEDULER_ADDRESS``) in the flow run's process.

With an address, the tasks run through Prefect's ``DaskTaskRunner(address=...)`` on that
cluster's workers — the same cluster whose workers run the block tasks of the ALS/BPMF/PMF fits
(:func:`factorflow.parallel.cluster.dask_client` inside a worker uses the worker's own client and
secedes, so a train task does not hold a worker thread while its blocks wait). Task runs are
recorded against the flow run by the workers themselves: Prefect serializes the flow run's
settings (``PREFECT_API_URL`` among them) with every task, so a ``dask worker`` started without
them still reports to the flow's API. Their log lines also go to the API from the worker; this
runner forwards them to the flow's process too (a console a person watches: the CLI's stderr),
marked so that they are not sent twice.

Without an address: Prefect's ``ThreadPoolTaskRunner`` (Prefect's default), and a fit starts a
LocalCluster for its blocks as before.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

_DECIDE = threading.Lock()  # module level: a runner instance is pickled with its flow
#: The loggers whose records a task on a worker forwards to the flow's process.
FORWARDED_LOGGER = "prefect.task_runs"


def flow_address(address: str | None = None, parameters: dict[str, Any] | None = None) -> str | None:
    """The Dask scheduler a flow run's tasks go to: ``address``, else a ``compute.dask_address``
    among the flow run's ``parameters``, else the environment (see the module docstring)."""
    from factorflow.parallel.cluster import ADDRESS_ENV

    if address:
        return address
    for value in (parameters or {}).values():
        compute = value.get("compute") if isinstance(value, dict) else getattr(value, "compute", None)
        given = compute.get("dask_address") if isinstance(compute, dict) else getattr(compute, "dask_address", None)
        if given:
            return str(given)
    for var in ADDRESS_ENV:
        if os.environ.get(var):
            return os.environ[var]
    return None


class ClusterTaskRunner(TaskRunner):
    """Prefect's ``DaskTaskRunner`` on the flow run's Dask cluster, else its thread pool.

    The choice is made at the first ``submit`` (when the flow run's parameters are known) by
    :func:`flow_address`; ``runner.kind`` says which ("dask" or "threads", None before).
    """

    def __init__(self, address: str | None = None) -> None:
        super().__init__()
        self.address = address
        self.kind: str | None = None
        self._inner: TaskRunner | None = None
        self._stop_forwarding: Callable[[], None] | None = None

    def duplicate(self) -> ClusterTaskRunner:
        return type(self)(self.address)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClusterTaskRunner) and other.address == self.address

    def __hash__(self) -> int:
        return hash((type(self), self.address))

    def __getstate__(self) -> dict[str, Any]:  # the flow (and its runner) travel to the workers
        state = dict(self.__dict__)
        state.update(_inner=None, _stop_forwarding=None, kind=None, _started=False)
        return state

    def _runner(self) -> TaskRunner:
        with _DECIDE:
            if self._inner is None:
                from prefect.context import FlowRunContext

                ctx = FlowRunContext.get()
                address = flow_address(self.address, ctx.parameters if ctx else None)
                if address:
                    from prefect_dask import DaskTaskRunner

                    inner: TaskRunner = DaskTaskRunner(address=address)
                    inner.__enter__()
                    if ctx is not None and ctx.flow_run is not None:
                        self._stop_forwarding = forward_task_logs(inner.client, str(ctx.flow_run.id))
                    self.logger.info("tasks run on the Dask cluster at %s", address)
                    self.kind = "dask"
                else:
                    inner = ThreadPoolTaskRunner()
                    inner.__enter__()
                    self.kind = "threads"
                self._inner = inner
            return self._inner

    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Iterable[Any] | None = None,
               dependencies: dict[str, Any] | None = None) -> Any:
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        return self._runner().submit(task, parameters, wait_for, dependencies)

    def cancel_all(self) -> None:
        if self._inner is not None and hasattr(self._inner, "cancel_all"):
            self._inner.cancel_all()

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._stop_forwarding is not None:
                self._stop_forwarding()
            if self._inner is not None:
                self._inner.__exit__(*exc)
        finally:
            self._inner = self._stop_forwarding = None
            super().__exit__(*exc)


# --- task-run logs from the workers to the flow's console ---------------------------------------


class _RunLogHandler(logging.Handler):
    """On a worker: publish one flow run's task-run records as ``topic`` events."""

    def __init__(self, worker: Any, topic: str, flow_run_id: str) -> None:
        super().__init__()
        self.worker, self.topic, self.flow_run_id = worker, topic, flow_run_id

    def emit(self, record: logging.LogRecord) -> None:
        if str(getattr(record, "flow_run_id", "")) != self.flow_run_id:
            return
        try:
            attrs = {k: v if v is None or isinstance(v, (str, int, float, bool)) else str(v)
                     for k, v in record.__dict__.items() if k not in ("msg", "args", "exc_info", "message")}
            attrs["msg"] = record.getMessage()
            if record.exc_info:
                attrs["exc_text"] = logging.Formatter().formatException(record.exc_info)
            self.worker.log_event(self.topic, attrs)
        except Exception:  # noqa: BLE001 - logging must never fail the task
            self.handleError(record)


class _ForwardRunLogs(WorkerPlugin):
    """A Dask worker plugin installing :class:`_RunLogHandler` on :data:`FORWARDED_LOGGER`."""

    def __init__(self, topic: str, flow_run_id: str) -> None:
        self.topic, self.flow_run_id = topic, flow_run_id
        self.handler: _RunLogHandler | None = None

    def setup(self, worker: Any) -> None:
        from prefect.logging.configuration import ensure_logging_setup

        ensure_logging_setup()  # now, not at the worker's first task: that would drop this handler
        self.handler = _RunLogHandler(worker, self.topic, self.flow_run_id)
        logging.getLogger(FORWARDED_LOGGER).addHandler(self.handler)

    def teardown(self, worker: Any) -> None:
        if self.handler is not None:
            logging.getLogger(FORWARDED_LOGGER).removeHandler(self.handler)


def forward_task_logs(client: Any, flow_run_id: str) -> Callable[[], None]:
    """Show the task-run log lines of flow run ``flow_run_id`` that tasks on the cluster's
    workers write in this process's logging too (with ``send_to_api=False``: the worker sent them
    to the API already). Returns the function that stops it."""
    topic = f"factorflow-task-logs-{flow_run_id}"

    def handle(event: tuple[float, dict[str, Any]]) -> None:
        record = logging.makeLogRecord(event[1])
        record.send_to_api = False
        logger = logging.getLogger(record.name)
        if record.levelno >= logger.getEffectiveLevel():
            logger.handle(record)

    plugin = _ForwardRunLogs(topic, flow_run_id)
    try:
        client.subscribe_topic(topic, handle)
        client.register_plugin(plugin, name=topic)
    except Exception as exc:  # noqa: BLE001 - the console copy is a convenience; the API has the logs
        logging.getLogger(__name__).warning("task logs from the Dask workers will not show here: %s", exc)

    def stop() -> None:
        with suppress(Exception):
            client.unregister_worker_plugin(topic)
        with suppress(Exception):
            client.unsubscribe_topic(topic)

    return stop
