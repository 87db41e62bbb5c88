"""The Prefect API a CLI flow run reports to: ``$PREFECT_API_URL`` when set, else a private one.

Prefect's own ephemeral server gives up after 20 s (on a loaded machine its start-up takes
longer), and a CLI killed with SIGKILL leaves it running forever. So the CLI starts its
own: one uvicorn process serving Prefect's app on a socket the CLI has already bound
(``factorflow.cli._api_server``), which dies with the CLI however the CLI ends. It waits
as long as start-up takes (``$FACTORFLOW_PREFECT_STARTUP_TIMEOUT`` s, default 600), saying
what it waits for. Concurrent CLI runs each start their own server; a lock in
``PREFECT_HOME`` lets one start at a time, so the shared database is migrated once.
A configured ``PREFECT_API_URL`` that does not answer is a one-line error.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from factorflow.errors import ParameterError

TIMEOUT_ENV = "FACTORFLOW_PREFECT_STARTUP_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
REPORT_EVERY_S = 30.0


def say(message: str) -> None:
    print(f"factorflow: {message}", file=sys.stderr, flush=True)


def startup_timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ParameterError(f"{TIMEOUT_ENV}={text!r}: must be a number of seconds > 0")
    return value


@contextmanager
def prefect_api(log: Callable[[str], None] = say) -> Iterator[str]:
    """Yield the API URL flows in this process report to, starting a private server if needed."""
    import prefect.settings as ps

    configured = ps.PREFECT_API_URL.value()
    if configured:
        _check_reachable(configured)
        yield configured
        return
    timeout = startup_timeout()
    with _start_lock(Path(ps.PREFECT_HOME.value())):
        server, url, logfile = _start_server(timeout, log)
    try:
        with ps.temporary_settings(updates={ps.PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                _drain_to_api()
    finally:
        _stop(server)
        with suppress(OSError):
            os.unlink(logfile)


def _drain_to_api(timeout: float = 30.0) -> None:
    """Send the logs and events still queued in this process before the server goes away."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with suppress(RuntimeError):  # never started
            worker.drain_all(timeout=timeout)


def _check_reachable(url: str) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        exc = client.api_healthcheck()
    if exc is not None:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ParameterError(
            f"PREFECT_API_URL={url}: no Prefect API answers there ({reason}); start one with "
            "`prefect server start`, or unset PREFECT_API_URL to let factorflow start a private one"
        )


@contextmanager
def _start_lock(home: Path) -> Iterator[None]:
    """An exclusive lock on ``PREFECT_HOME`` while one server starts (migrations run once)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, servers may race on a first-ever migration
        yield
        return
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".factorflow-api-start.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another factorflow run is starting its Prefect API server; waiting for it")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _start_server(timeout: float, log: Callable[[str], None]) -> tuple[subprocess.Popen, str, str]:
    from prefect.settings import get_current_settings

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        **get_current_settings().to_environment_variables(exclude_unset=True),
    }
    env.pop("PREFECT_API_URL", None)
    fd, logfile = tempfile.mkstemp(prefix="factorflow-prefect-api-", suffix=".log")
    log(f"starting a private Prefect API server for this run (PREFECT_API_URL is not set; "
        f"waiting up to {timeout:.0f} s)")
    started = time.monotonic()
    try:
        server = subprocess.Popen(
            [sys.executable, "-m", "factorflow.cli._api_server", "--fd", str(sock.fileno()),
             "--parent", str(os.getpid())],
            pass_fds=(sock.fileno(),), env=env, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
        )
    finally:
        os.close(fd)
        sock.close()  # the child holds its own copy
    try:
        _wait_healthy(server, url, started, timeout, logfile, log)
    except BaseException:
        _stop(server)
        raise
    log(f"Prefect API ready at {url} ({time.monotonic() - started:.1f} s)")
    return server, url, logfile


def _wait_healthy(server: subprocess.Popen, url: str, started: float, timeout: float, logfile: str,
                  log: Callable[[str], None]) -> None:
    import httpx

    next_report = started + REPORT_EVERY_S
    with httpx.Client(timeout=5.0) as client:
        while True:
            code = server.poll()
            if code is not None:
                raise ParameterError(f"the private Prefect API server exited with code {code} while starting: "
                                     f"{_last_line(logfile)} (log: {logfile})")
            with suppress(httpx.HTTPError):
                if client.get(f"{url}/health").status_code == 200:
                    return
            now = time.monotonic()
            if now - started > timeout:
                raise ParameterError(
                    f"the private Prefect API server did not answer within {timeout:.0f} s (log: {logfile}); "
                    f"raise {TIMEOUT_ENV}, or start one with `prefect server start` and set PREFECT_API_URL")
            if now >= next_report:
                log(f"still waiting for the Prefect API server ({now - started:.0f} s of up to {timeout:.0f} s)")
                next_report += REPORT_EVERY_S
            time.sleep(0.2)


def _last_line(path: str) -> str:
    with suppress(OSError), open(path, errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
        if lines:
            return lines[-1]
    return "no output"


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
