"""Running the real ``factorflow`` CLI as a subprocess, isolated from the user's Prefect home."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "factorflow"]


def cli_env(prefect_home: Path, *, migrated: bool = True, **extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: no PREFECT_API_URL (the CLI starts its own server),
    a private PREFECT_HOME (its own database), and ``extra`` variables.

    With ``migrated`` (the default) a new home starts with a copy of an empty, already migrated
    database (:func:`prefect_server.migrated_database`), so the CLI's private server starts as it
    does on a user's second run, not with a first migration (tens of seconds on a busy machine);
    ``migrated=False`` leaves the home empty for tests of that first start-up itself.
    """
    if migrated:
        seed_prefect_home(Path(prefect_home))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false", **extra)
    return env


def seed_prefect_home(home: Path) -> None:
    """Put a migrated empty Prefect database at ``home/prefect.db`` unless the home has one."""
    from prefect_server import migrated_database

    db = home / "prefect.db"
    if not db.exists():
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(migrated_database(), db)


def run_cli(args: list[str], prefect_home: Path, timeout: float = 900, **extra: str) -> subprocess.CompletedProcess:
    """``factorflow ARGS`` to completion; stdout and stderr captured as text."""
    return subprocess.run(CLI + list(args), check=False, capture_output=True, text=True, timeout=timeout,
                          env=cli_env(prefect_home, **extra), stdin=subprocess.DEVNULL)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("factorflow: error:")]
