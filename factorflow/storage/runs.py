"""A flow run's scratch folder ``STORE/runs/RUN/``, and the retention rule that bounds ``runs/``.

The scratch (factors, history, metrics, learning curve, batch recommendations) is what the
tasks of one run hand each other; once a run has published, its version holds everything
a reader needs. Retention, applied when a run starts: the newest :data:`KEEP_RUNS` run
folders (``$FACTORFLOW_KEEP_RUNS``, default 10) are kept; an older one is deleted unless its
run may still be writing it — its ``owner.json`` names a process of this host that still
runs (and touched the folder within a week: an older one is a reused pid), or (written on
another host, or without an owner file) it changed in the last 24 h.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from factorflow.errors import ParameterError
from factorflow.storage import fs as fsio
from factorflow.storage.layout import run_dir, runs_dir

OWNER_FILE = "owner.json"
KEEP_RUNS = 10
RECENT_S = 24 * 3600.0


def keep_runs() -> int:
    text = os.environ.get("FACTORFLOW_KEEP_RUNS")
    if not text:
        return KEEP_RUNS
    if not text.isdigit():
        raise ParameterError(f"FACTORFLOW_KEEP_RUNS={text!r}: must be a whole number of runs (>= 0)")
    return int(text)


@dataclass(frozen=True)
class RunRef:
    """One flow run's scratch folder (``path``: a URL every task reopens) and what was trained there.

    ``kind``/``params``/``dask_workers``/``seconds`` (wall time of the fit; None before it, or
    from an older run) are filled by the train step (:meth:`trained`); the arrays and the
    learning curve stay in the folder (``factors.npz``, ``history.json``).
    """

    path: str
    run_id: str
    kind: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    dask_workers: int | None = None
    seconds: float | None = None
    fit: dict[str, Any] = field(default_factory=dict)  # what the fit reports about itself (model.json "fit")

    def file(self, name: str) -> str:
        """URL of one file of the run folder (names: the ``RUN_*`` constants of storage.layout)."""
        return fsio.join(self.path, name)

    def trained(self, kind: str, params: dict[str, Any], dask_workers: int | None,
                seconds: float | None = None, fit: dict[str, Any] | None = None) -> RunRef:
        return replace(self, kind=kind, params=dict(params), dask_workers=dask_workers, seconds=seconds,
                       fit=dict(fit or {}))


def open_run(store: str, run_id: str) -> RunRef:
    """:func:`start_run` as a :class:`RunRef`."""
    return RunRef(start_run(store, run_id), run_id)


def start_run(store: str, run_id: str) -> str:
    """Create ``STORE/runs/RUN_ID/`` with its owner file; return it as a URL the tasks reopen."""
    fs, root = fsio.open_store(store)
    path = run_dir(root, run_id)
    fsio.makedirs(fs, path)
    fsio.write_json(fs, fsio.join(path, OWNER_FILE), {
        "host": fsio.host_name(), "pid": os.getpid(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    })
    return fsio.url_of(fs, path)


def prune_runs(store: str, keep: int | None = None) -> list[str]:
    """Delete the run folders the retention rule (module docstring) lets go; return their paths."""
    keep = keep_runs() if keep is None else keep
    fs, root = fsio.open_store(store)
    base = runs_dir(root)
    if not fs.isdir(base):
        return []
    now = time.time()
    runs = [(p, _changed(fs, p)) for p in fs.ls(base, detail=False) if fs.isdir(p)]
    runs.sort(key=lambda r: r[1], reverse=True)
    removed = []
    for path, changed in runs[keep:]:
        if _maybe_live(fs, path, changed, now):
            continue
        try:
            fs.rm(path, recursive=True)
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def _changed(fs, path: str) -> float:
    """Newest modification time of the folder and its files (0 when unknown)."""
    times = [fsio.modified_time(fs, p) for p in [path, *fs.ls(path, detail=False)]]
    return max((t for t in times if t is not None), default=0.0)


def _maybe_live(fs, path: str, changed: float, now: float) -> bool:
    try:
        owner = fsio.read_json(fs, fsio.join(path, OWNER_FILE))
    except (FileNotFoundError, ValueError):
        owner = None
    if isinstance(owner, dict) and owner.get("host") == fsio.host_name() and isinstance(owner.get("pid"), int):
        if owner["pid"] == os.getpid():
            return True
        # a live pid that has not touched its folder for a week is a reused pid, not the writer
        return fsio.pid_alive(owner["pid"]) and now - changed < 7 * RECENT_S
    return now - changed < RECENT_S
