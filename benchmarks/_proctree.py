"""Run a command and sample the resident memory of its whole process tree (psutil).

Shared by the benchmarks that measure a CLI run or a Dask fit, whose memory is spread over
several processes (the CLI, its Prefect API server, the LocalCluster's worker processes):
``getrusage`` of one process would miss most of it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

MB = 1 << 20


def role(p: Any) -> str:
    """What a process of the tree is, from its command line."""
    cmd = " ".join(p.cmdline())
    if "factorflow.cli._api_server" in cmd:
        return "prefect api server"
    if "resource_tracker" in cmd:
        return "multiprocessing resource tracker"
    if "multiprocessing" in cmd:
        return "dask workers"
    if "factorflow" in cmd and "retrain" in cmd:
        return "cli (flow)"
    if "--child" in cmd:
        return "driver"
    return "other: " + p.name()


def run_sampled(cmd: list[str], env: dict[str, str] | None, log_dir: Path, sample_s: float = 0.2) -> dict:
    """Run ``cmd`` (stdout/stderr to ``log_dir``), sampling RSS every ``sample_s``.

    Returns wall-clock ``started``/``ended`` (``time.time()``), ``returncode``, the peak of the
    tree's summed RSS (``peak_rss_tree_mb``; shared pages count once per process, so an upper
    bound), the largest single process (``peak_rss_one_process_mb``) and the peak of each role's
    sum (``peak_rss_by_role_mb``). A peak between two samples can be missed.
    """
    import psutil

    peak_sum = peak_one = 0
    peak_by: dict[str, int] = {}
    with open(log_dir / "stdout.txt", "wb") as out, open(log_dir / "stderr.txt", "wb") as err:
        started = time.time()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            by_role: dict[str, int] = {}
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                procs = []
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    name = role(p)
                except psutil.Error:
                    continue
                if not rss:  # a zombie, or a process that just exited
                    continue
                peak_one = max(peak_one, rss)
                by_role[name] = by_role.get(name, 0) + rss
            peak_sum = max(peak_sum, sum(by_role.values()))
            for name, rss in by_role.items():
                peak_by[name] = max(peak_by.get(name, 0), rss)
            time.sleep(sample_s)
        ended = time.time()
    return {"started": started, "ended": ended, "returncode": proc.returncode,
            "peak_rss_tree_mb": peak_sum / MB, "peak_rss_one_process_mb": peak_one / MB,
            "peak_rss_by_role_mb": {k: v / MB for k, v in sorted(peak_by.items())}}
