"""Running the real ``factorflow`` CLI as a subprocess, isolated from the user's Prefect home."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "factorflow"]


def cli_env(prefect_home: Path, **extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: no PREFECT_API_URL (the CLI starts its own server),
    a private PREFECT_HOME (its own database), and ``extra`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false", **extra)
    return env


def run_cli(args: list[str], prefect_home: Path, timeout: float = 900, **extra: str) -> subprocess.CompletedProcess:
    """``factorflow ARGS`` to completion; stdout and stderr captured as text."""
    return subprocess.run(CLI + list(args), check=False, capture_output=True, text=True, timeout=timeout,
                          env=cli_env(prefect_home, **extra), stdin=subprocess.DEVNULL)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("factorflow: error:")]
