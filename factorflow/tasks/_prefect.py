"""The small Prefect plumbing every task shares: progress reporting, I/O retries, cache keys."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from factorflow.errors import FactorflowError
from factorflow.progress import Progress

#: Seconds between two updates of a task's progress artifact (each is one call to the Prefect API).
ARTIFACT_INTERVAL_S = 1.0


def task_progress(step: str, unit: str = "it") -> Progress:
    """A ``Progress`` that updates a Prefect progress artifact (at most once per
    :data:`ARTIFACT_INTERVAL_S`, and at the end), logs each ~10%, and drives a tqdm bar when
    stderr is a terminal (the CLI)."""
    logger = get_run_logger()
    artifact = create_progress_artifact(0.0, description=step)
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(desc=step, unit=unit, dynamic_ncols=True, leave=False)
    last_bucket = [-1]
    last_sent = [0.0, -1.0]  # monotonic time and percentage of the last artifact update

    def _update(done: float, total: float | None, message: str = "") -> None:
        nonlocal bar
        pct = 100.0 * done / total if total else 0.0
        now = time.monotonic()
        finished = bool(total) and done >= total
        # one API call per update: at most one per ARTIFACT_INTERVAL_S, and always the last one
        if (finished or now - last_sent[0] >= ARTIFACT_INTERVAL_S) and pct != last_sent[1]:
            update_progress_artifact(artifact, min(pct, 100.0))
            last_sent[0], last_sent[1] = now, pct
        bucket = int(pct // 10) if total and total > 20 else int(done)
        if bucket != last_bucket[0]:
            last_bucket[0] = bucket
            of = f"/{total:,.0f}" if total else ""
            logger.info("%s: %s%s %s", step, f"{done:,.0f}", of, message)
        if bar is not None:
            bar.total = total
            bar.n = done
            if message:
                bar.set_postfix_str(message, refresh=False)
            bar.refresh()
            if total and done >= total:
                bar.close()
                bar = None

    return _update


def retry_on_io_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a task only for transient I/O failures, never for a user error (bad input)."""
    try:
        state.result()
    except FactorflowError:
        return False
    except (OSError, TimeoutError):
        return True
    except Exception:
        return False
    return False


def stable_key(*parts: Any) -> str:
    """A cache key from JSON-able parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()
