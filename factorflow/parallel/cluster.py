"""Getting a ``dask.distributed`` client: an existing cluster or a LocalCluster sized to the machine.

The address comes from the ``address`` argument, else ``$FACTORFLOW_DASK_ADDRESS``, else
``$DASK_SCHEDULER_ADDRESS``, else — when this code runs inside a Dask worker (a task of
Prefect's Dask task runner) — that worker's own scheduler; with none, a LocalCluster is started:
by default one worker process with a thread per core (the block kernels release the GIL, so its
threads solve blocks side by side and share one copy of the other side's factors: on 2 cores
a Dask sweep cost 1.17× and 1.13× the in-process one at ranks 64 and 10, against 1.35× and 1.49×
with two single-threaded processes), or ``n_workers`` single-threaded processes when asked.

Inside a worker, a fit on the worker's own cluster drives its block tasks through
``distributed.worker_client()``, which secedes the task's thread from the worker's pool while it
waits: a train task blocking a single-threaded worker would otherwise leave no thread for the
block tasks it waits for (two concurrent fits on two such workers never finished).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from distributed import Client, LocalCluster, worker_client

from factorflow.errors import ParameterError
from factorflow.threads import cores

ADDRESS_ENV = ("FACTORFLOW_DASK_ADDRESS", "DASK_SCHEDULER_ADDRESS")


def resolve_address(address: str | None = None) -> str | None:
    """The scheduler address to connect to (the argument, the environment, else the scheduler of
    the Dask worker running this code), or None for a new LocalCluster."""
    if address:
        return address
    for var in ADDRESS_ENV:
        if os.environ.get(var):
            return os.environ[var]
    worker = current_worker()
    return worker.scheduler.address if worker is not None else None


def current_worker() -> Any | None:
    """The ``distributed.Worker`` whose task is running in this thread, or None."""
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:  # not inside a Dask task
        return None


def same_address(a: str, b: str) -> bool:
    """Whether two scheduler addresses name the same endpoint (``tcp://`` is the default scheme)."""
    def norm(addr: str) -> str:
        return (addr if "://" in addr else f"tcp://{addr}").rstrip("/")

    return norm(a) == norm(b)


def default_threads() -> int:
    """Threads of the default LocalCluster's one worker: this process's cores, at most 8."""
    return min(cores(), 8)


@contextmanager
def dask_client(address: str | None = None, n_workers: int | None = None) -> Iterator[Client]:
    """Yield a connected client; a LocalCluster started here is closed on exit.

    Inside a task on a Dask worker, with no address or that worker's own scheduler's, the client
    is the worker's (``worker_client``: the task's thread leaves the worker's pool until the
    block exits, so the tasks it submits can run on the same worker)."""
    address = resolve_address(address)
    worker = current_worker()
    if worker is not None and address is not None and same_address(address, worker.scheduler.address):
        # a task on this cluster (the Dask task runner's train task): the worker's client, seceded
        with worker_client() as client:
            yield client
        return
    # distributed logs every key it cancels (and benign shutdown races) at INFO: keep warnings only.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if address:
        try:
            client = Client(address, timeout="20s")
        except OSError as exc:
            raise ParameterError(
                f"--dask-address={address!r}: cannot connect to a Dask scheduler there ({exc}); "
                "start one with 'dask scheduler' or leave the option out to use a LocalCluster"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    cluster = _local_cluster(n_workers)
    client = Client(cluster)
    try:
        yield client
    finally:
        _quiet_shutdown(client)
        client.close()
        cluster.close()


def _local_cluster(n_workers: int | None) -> LocalCluster:
    """A LocalCluster of one worker process with a thread per core, or of ``n_workers``
    single-threaded worker processes."""
    if n_workers is not None and n_workers < 1:
        raise ParameterError(f"--workers={n_workers}: must be at least 1")
    return LocalCluster(
        n_workers=n_workers or 1,
        threads_per_worker=1 if n_workers else default_threads(),
        processes=True,
        dashboard_address=":0",  # a free port: None still binds the scheduler's HTTP server to 8787
        host="127.0.0.1",
        silence_logs=logging.WARNING,
    )


@contextmanager
def shared_cluster(address: str | None = None, n_workers: int | None = None) -> Iterator[str]:
    """Yield the scheduler address that several fits share (each connects its own client with
    :func:`dask_client`): the given or configured address (:func:`resolve_address`; nothing is
    started), else a LocalCluster started here (``n_workers`` processes) and closed on exit."""
    address = resolve_address(address)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if address:
        with dask_client(address):  # unreachable: one line now, not one failure per fit later
            pass
        yield address
        return
    cluster = _local_cluster(n_workers)
    try:
        yield cluster.scheduler_address
    finally:
        with suppress(Exception), Client(cluster, timeout="10s") as client:
            _quiet_shutdown(client)
        cluster.close()


def _quiet_shutdown(client: Client) -> None:
    """Before a LocalCluster started here closes: its workers log nothing more. A worker whose
    heartbeat meets the scheduler already closing logs that benign race at ERROR with a traceback
    (on a busy machine), which would land on the CLI's stderr after a run that succeeded."""
    with suppress(Exception):
        client.run(_silence_distributed_logs)


def _silence_distributed_logs() -> None:
    logging.getLogger("distributed").setLevel(logging.CRITICAL + 1)


def gpu_workers(client: Client) -> list[str]:
    """Addresses of the cluster's workers that declare a GPU resource (``dask worker --resources GPU=1``)."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return sorted(addr for addr, w in workers.items() if float((w.get("resources") or {}).get("GPU", 0)) >= 1)
