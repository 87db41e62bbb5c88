"""Running the real ``factorflow`` CLI as a subprocess, isolated from the user's Prefect home."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

CLI = [sys.executable, "-m", "factorflow"]

#: The commands that run a Prefect flow (and so start a private API server without PREFECT_API_URL).
FLOW_COMMANDS = frozenset({"retrain", "compare", "backfill", "demo"})

_shared: dict[str, object] = {}


def shared_server():
    """One real ``prefect server start`` shared by the session's flow runs that do not test a
    server's own start-up (the CLI's private one, ``serve``'s): started on first use, stopped by
    :func:`stop_shared_server` at the session's end or at exit. Each CLI run or test module
    pointed at it skips starting and stopping a server of its own: seconds each, minutes per suite.
    Tests find their runs by id, so sharing the database changes nothing they check. Under
    pytest-xdist each worker process is a session of its own, with its own server."""
    if "server" not in _shared:
        from prefect_server import running_server

        stack = ExitStack()
        directory = Path(tempfile.mkdtemp(prefix="factorflow-test-shared-prefect-"))
        stack.callback(shutil.rmtree, directory, ignore_errors=True)
        server = stack.enter_context(running_server(directory))
        _shared.update(server=server, stack=stack)
        atexit.register(stop_shared_server)
    return _shared["server"]


def shared_api_url() -> str:
    """The shared server's API URL (:func:`shared_server`)."""
    return shared_server().url


def stop_shared_server() -> None:
    stack = _shared.pop("stack", None)
    _shared.pop("server", None)
    if isinstance(stack, ExitStack):
        stack.close()


def cli_env(prefect_home: Path, *, migrated: bool = True, api_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: a private PREFECT_HOME, ``extra`` variables, and
    PREFECT_API_URL = ``api_url`` when given, else none (the CLI starts its own server).

    Without an ``api_url`` and with ``migrated`` (the default) a new home starts with a copy of an
    empty, already migrated database (:func:`prefect_server.migrated_database`), so the CLI's
    private server starts as it does on a user's second run, not with a first migration (tens of
    seconds on a busy machine); ``migrated=False`` leaves the home empty for tests of that first
    start-up itself.
    """
    if migrated and api_url is None:
        seed_prefect_home(Path(prefect_home))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false", **extra)
    if api_url is not None and "PREFECT_API_URL" not in extra:
        env["PREFECT_API_URL"] = api_url
    return env


def seed_prefect_home(home: Path) -> None:
    """Put a migrated empty Prefect database at ``home/prefect.db`` unless the home has one."""
    from prefect_server import migrated_database

    db = home / "prefect.db"
    if not db.exists():
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(migrated_database(), db)


def run_cli(args: list[str], prefect_home: Path, timeout: float = 900, *, private_api: bool = False,
            **extra: str) -> subprocess.CompletedProcess:
    """``factorflow ARGS`` to completion; stdout and stderr captured as text. Its flow runs report to
    the session's shared server (:func:`shared_api_url`), or with ``private_api`` the CLI starts
    its own as on a user's machine (``extra`` may also name a ``PREFECT_API_URL``)."""
    flow = bool(args) and args[0] in FLOW_COMMANDS
    url = shared_api_url() if flow and not private_api and "PREFECT_API_URL" not in extra else None
    return subprocess.run(CLI + list(args), check=False, capture_output=True, text=True, timeout=timeout,
                          env=cli_env(prefect_home, api_url=url, **extra), stdin=subprocess.DEVNULL)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("factorflow: error:")]
