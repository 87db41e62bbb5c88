"""A real Dask cluster for the tests: ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1.

Each process runs in its own process group (``start_new_session``) and is stopped by group in
:meth:`DaskProcesses.close` (SIGTERM, then SIGKILL), so a nanny's worker child never outlives
the test. Start-ups are polled with a generous timeout: the test machine is often loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

START_TIMEOUT_S = 180  # for a process to come up on a loaded machine


def dask_exe() -> str:
    exe = Path(sys.executable).with_name("dask")
    return str(exe) if exe.exists() else str(shutil.which("dask"))


def wait_until(cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def stop_group(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the process group of ``proc`` (started with its own session); SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace)
    try:  # a nanny's worker child may outlive a SIGTERMed nanny for a moment
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class DaskProcesses:
    """A ``dask scheduler`` plus ``dask worker`` processes (one single-threaded worker each)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        sched_file = folder / "scheduler.json"
        self.scheduler = subprocess.Popen(
            [dask_exe(), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(sched_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.workers: list[subprocess.Popen] = []
        try:
            wait_until(lambda: sched_file.exists() and sched_file.stat().st_size > 0, START_TIMEOUT_S,
                       "dask scheduler start")
            self.address: str = json.loads(sched_file.read_text())["address"]
        except BaseException:
            self.close()
            raise

    def add_worker(self, *extra: str) -> subprocess.Popen:
        """Start one ``dask worker`` (``extra``: more options, e.g. ``--resources GPU=1``). It does
        not inherit ``PREFECT_API_URL``: a worker started by hand knows nothing of the flow's API."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
        proc = subprocess.Popen(
            [dask_exe(), "worker", self.address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
             "--host", "127.0.0.1", "--local-directory", str(self.folder), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
        self.workers.append(proc)
        return proc

    def wait_for_workers(self, n: int) -> list[str]:
        """Block until ``n`` workers are registered; their addresses."""
        from distributed import Client

        with Client(self.address, timeout=f"{START_TIMEOUT_S}s") as client:
            client.wait_for_workers(n, timeout=START_TIMEOUT_S)
            return sorted(client.scheduler_info(n_workers=-1)["workers"])

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL a worker's whole process group (nanny + worker process)."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        self.workers.remove(proc)

    def worker_process(self, client, address: str) -> subprocess.Popen:
        """The ``dask worker`` process (the nanny) behind a worker address."""
        nanny_pid = client.run(os.getppid, workers=[address])[address]
        [proc] = [p for p in self.workers if p.pid == nanny_pid]
        return proc

    def close(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            stop_group(proc)


@contextmanager
def dask_processes(folder: Path, n_workers: int = 2, *worker_options: str) -> Iterator[DaskProcesses]:
    """A scheduler and ``n_workers`` single-threaded workers, all registered; stopped on exit."""
    procs = DaskProcesses(folder)
    try:
        for _ in range(n_workers):
            procs.add_worker(*worker_options)
        procs.wait_for_workers(n_workers)
        yield procs
    finally:
        procs.close()
