"""A real ``prefect server start`` on a free 127.0.0.1 port, for the integration tests.

``running_server(directory)`` starts the server with its own ``PREFECT_HOME`` and SQLite
database under ``directory`` (a copy of an empty database migrated once per Prefect version,
:func:`migrated_database`), polls ``/api/health`` until it answers (a loaded machine takes
minutes: ``$FACTORFLOW_TEST_SERVER_TIMEOUT``, default 600 s), yields a :class:`PrefectServer`,
and stops the server's whole process group at the end whatever happens (SIGTERM, then
SIGKILL after 20 s). ``use_server(server)`` points this process's Prefect client at it
(``PREFECT_API_URL`` in the environment and in Prefect's settings) for the duration, and
drains the logs and events still queued for it before it goes.

A module-scoped fixture is a few lines::

    @pytest.fixture(scope="module")
    def server(tmp_path_factory):
        with running_server(tmp_path_factory.mktemp("prefect")) as s, use_server(s):
            yield s
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_ENV = "FACTORFLOW_TEST_SERVER_TIMEOUT"


@dataclass(frozen=True)
class PrefectServer:
    url: str  # http://127.0.0.1:PORT/api
    home: Path  # its PREFECT_HOME
    log: Path  # its stdout and stderr
    pid: int  # the process group leader

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a subprocess that reports to this server (no other PREFECT_* settings)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_API_URL=self.url, PREFECT_HOME=str(self.home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   **extra)
        return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def migrated_database() -> Path:
    """An empty SQLite database with Prefect's migrations applied, made once per Prefect version
    (``prefect server database upgrade``) and kept in the temp folder: each server starts on a
    copy instead of migrating a new database (tens of seconds on a loaded machine)."""
    import prefect

    template = Path(tempfile.gettempdir()) / f"factorflow-test-prefect-{prefect.__version__}.db"
    if template.exists():
        return template
    work = Path(tempfile.mkdtemp(prefix="factorflow-test-prefect-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(work), PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{work / 'new.db'}",
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    done = subprocess.run([_prefect_exe(), "server", "database", "upgrade", "-y"], env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"prefect server database upgrade failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    os.replace(work / "new.db", template)  # atomic: a concurrent maker's copy is as good
    shutil.rmtree(work, ignore_errors=True)
    return template


def _prefect_exe() -> str:
    exe = Path(sys.executable).with_name("prefect")
    return str(exe) if exe.exists() else "prefect"


@contextmanager
def running_server(directory: Path, timeout: float | None = None, ui: bool = False) -> Iterator[PrefectServer]:
    """A ``prefect server start`` with its home and database in ``directory`` (see module docstring)."""
    import httpx

    timeout = timeout or float(os.environ.get(TIMEOUT_ENV, "600"))
    directory = Path(directory)
    home = directory / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home),
               PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{directory / 'prefect.db'}",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="true" if ui else "false",
               PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false")
    log = directory / "server.log"
    shutil.copyfile(migrated_database(), directory / "prefect.db")
    with open(log, "ab") as out:
        proc = subprocess.Popen([_prefect_exe(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        started = time.monotonic()
        with httpx.Client(timeout=5.0) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"prefect server exited with {proc.returncode} while starting; "
                                       f"log {log}:\n{log.read_text()[-3000:]}")
                with suppress(httpx.HTTPError):
                    if client.get(f"{url}/health").status_code == 200:
                        break
                if time.monotonic() - started > timeout:
                    raise RuntimeError(f"prefect server did not answer {url}/health within {timeout:.0f} s; "
                                       f"log {log}:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield PrefectServer(url, home, log, proc.pid)
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the process group ``proc`` leads, SIGKILL it after ``grace`` seconds; reap ``proc``."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    with suppress(ProcessLookupError):  # the leader's children, and the leader if it is still there
        os.killpg(proc.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@contextmanager
def use_server(server: PrefectServer) -> Iterator[None]:
    """Point this process's Prefect client at ``server`` (env and settings) for the duration."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    saved = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.url}):
            try:
                yield
            finally:
                drain_to_api()
    finally:
        if saved is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = saved


def drain_to_api(timeout: float = 30.0) -> None:
    """Send the logs and events this process still queues for the API, before the server goes."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with suppress(RuntimeError):  # never started
            worker.drain_all(timeout=timeout)
