"""Where the time of one whole ``factorflow retrain`` goes: a stage table and the peak memory.

Runs the real CLI in a subprocess exactly as a user does — ``python -m factorflow retrain CSV
--store STORE --rank K --sweeps S`` with nothing else set: a fresh local store, the CLI's own
private Prefect API server, a LocalCluster for the ALS blocks — on a cached synthetic
MovieLens-20M-shaped CSV (``factorflow.data.synth``; 138,493 users × 26,744 items × 20,000,263
ratings at the default ``--ratings``, scaled as ``benchmarks/ingest.py`` does for smaller runs).

Stage times come from what the run itself records, not from guessing at log output:

* Prefect's database (the SQLite file in the ``PREFECT_HOME`` the CLI used) holds the flow run
  and every task run with their ``start_time``/``end_time`` — the same figures the Prefect UI
  shows — and every log line with its timestamp. The flow run is found by its id, which names the
  run's scratch folder ``STORE/runs/RUN/``.
* This script records the wall-clock times at which it started the CLI and saw it exit.

So: **start-up** = CLI launched → flow run started (imports, request checks, private API server
start, flow run creation); **ingest / split / partition / evaluate / batch top-N / publish** = those
task runs; **train** = the ``open-run`` and ``train`` task runs (the LocalCluster start, read from
the train task's ``Dask: N workers at`` log line, is shown beside it, and so is the fit itself: the
sum of the per-sweep seconds in the published ``model.json``'s learning curve; the rest is
open-run, block loading, the held-out RMSE after each sweep, saving the factors and closing the
cluster); **in the flow, between tasks** = flow run time not inside any task run; **shut-down** =
flow run end → CLI exit (Prefect's engine teardown, draining logs, stopping the API server). The
rows add up to **total**, the CLI's wall time.

Peak RSS is sampled (psutil, every ``--sample-s``) over the CLI's whole process tree — the CLI,
its API server, the Dask scheduler's nanny and worker processes — and reported as the peak of the
sum (shared pages counted once per process, so an upper bound) and the peak of the largest single
process.

The ``PREFECT_HOME`` is ``benchmarks/data/prefect-home`` (its database is migrated once, the first
time, outside the measurement: a user's second run, not their very first). The store is deleted
afterwards unless ``--keep-store``.

    python benchmarks/retrain_stages.py                                     # 20M, rank 64, 5 sweeps
    python benchmarks/retrain_stages.py --ratings 2000000 --rank 10 --sweeps 3 --out /tmp/small.json

Target (issue 11): the whole retrain at 20M, rank 64, 5 sweeps ≤ 150 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _proctree import run_sampled  # noqa: E402  (process-tree RSS sampling)
from ingest import ML20M_RATINGS, ensure_csv  # noqa: E402  (the shared cached-CSV helper)

TARGET_S = 150.0
#: The table's rows: (key, label, Prefect task names whose run times it sums).
TASK_STAGES = [
    ("ingest", "ingest", ("ingest",)),
    ("split", "split", ("split",)),
    ("partition", "partition", ("partition",)),
    ("train", "train", ("open-run", "train")),
    ("evaluate", "evaluate", ("evaluate",)),
    ("batch_top_n", "batch top-N", ("batch-recommend",)),
    ("publish", "publish", ("publish",)),
]


def _utc_seconds(text: str | None) -> float | None:
    """A Prefect database timestamp (naive UTC text) as POSIX seconds."""
    if not text:
        return None
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def ensure_prefect_home(home: Path) -> float | None:
    """Migrate an empty Prefect database in ``home`` once; the seconds it took, None if it existed."""
    if (home / "prefect.db").exists():
        return None
    home.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("prefect")
    t0 = time.perf_counter()
    subprocess.run([str(exe) if exe.exists() else "prefect", "server", "database", "upgrade", "-y"],
                   env=cli_env(home), check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - t0


def cli_env(home: Path) -> dict[str, str]:
    """The user's environment without PREFECT_* settings (so the CLI starts its private API), with
    ``home`` as PREFECT_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def read_prefect_run(db: Path, flow_run_id: str) -> tuple[dict, list[dict], list[dict]]:
    """The flow run, its task runs and its log lines from Prefect's database."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        con.row_factory = sqlite3.Row
        flow = con.execute("select name, start_time, end_time, state_type from flow_run where id = ?",
                           (flow_run_id,)).fetchone()
        if flow is None:
            raise SystemExit(f"flow run {flow_run_id} is not in {db}")
        tasks = con.execute("select name, start_time, end_time, state_type from task_run where flow_run_id = ? "
                            "order by start_time", (flow_run_id,)).fetchall()
        logs = con.execute("select timestamp, message, task_run_id from log where flow_run_id = ? order by timestamp",
                           (flow_run_id,)).fetchall()
    finally:
        con.close()
    return dict(flow), [dict(t) for t in tasks], [dict(x) for x in logs]


def task_base_name(run_name: str) -> str:
    """``'batch-recommend-a5f'`` → ``'batch-recommend'`` (Prefect appends a 3-hex suffix)."""
    head, _, tail = run_name.rpartition("-")
    return head if head and len(tail) == 3 else run_name


def stage_table(proc: dict, flow: dict, tasks: list[dict], logs: list[dict], model_json: dict) -> dict:
    """Seconds per stage (see the module docstring); the rows add up to the CLI's wall time."""
    flow_start, flow_end = _utc_seconds(flow["start_time"]), _utc_seconds(flow["end_time"])
    spans: dict[str, float] = {}
    for t in tasks:
        s, e = _utc_seconds(t["start_time"]), _utc_seconds(t["end_time"])
        if s is not None and e is not None:
            name = task_base_name(t["name"])
            spans[name] = spans.get(name, 0.0) + (e - s)
    stages = {"start_up": flow_start - proc["started"]}
    for key, _, names in TASK_STAGES:
        stages[key] = sum(spans.get(n, 0.0) for n in names)
    stages["between_tasks"] = (flow_end - flow_start) - sum(spans.values())
    stages["shut_down"] = proc["ended"] - flow_end
    stages["total"] = proc["ended"] - proc["started"]
    train = next((t for t in tasks if task_base_name(t["name"]) == "train"), None)
    ready = next((x for x in logs if x["message"].startswith("Dask: ") and " workers at " in x["message"]), None)
    curve = model_json.get("learning_curve") or []
    sweeps = [float(p["seconds"]) for p in curve]
    detail = {
        "cluster_start": (_utc_seconds(ready["timestamp"]) - _utc_seconds(train["start_time"]))
        if train and ready else None,
        "fit_sweeps_sum": sum(sweeps) if sweeps else None,
        "sweep_seconds": sweeps,
        "sweep_median_after_first": sorted(sweeps[1:])[len(sweeps[1:]) // 2] if len(sweeps) > 1 else None,
        "train_rest": (stages["train"] - (_utc_seconds(ready["timestamp"]) - _utc_seconds(train["start_time"]))
                       - sum(sweeps)) if train and ready and sweeps else None,
        "other_tasks_seconds": {k: v for k, v in spans.items()
                                if k not in {n for _, _, ns in TASK_STAGES for n in ns}},
    }
    return {"stages": stages, "train_detail": detail}


def print_table(result: dict) -> None:
    s, d = result["stages"], result["train_detail"]
    total = s["total"]
    rows = [("start-up", s["start_up"])] + [(label, s[key]) for key, label, _ in TASK_STAGES] + [
        ("in the flow, between tasks", s["between_tasks"]), ("shut-down", s["shut_down"])]
    print(f"\n{result['shape']['ratings']:,} ratings, rank {result['rank']}, {result['sweeps']} sweeps "
          f"(load average at start {result['load_before'][0]:.2f})")
    print(f"{'stage':<28} {'seconds':>8} {'share':>6}")
    for label, sec in rows:
        print(f"{label:<28} {sec:8.1f} {sec / total:6.1%}")
    print(f"{'total':<28} {total:8.1f}   (target ≤ {TARGET_S:.0f} s at 20M)")
    if result.get("api_server_start_s") is not None:
        print(f"  start-up: the private Prefect API server took {result['api_server_start_s']:.1f} s to answer")
    if d["cluster_start"] is not None:
        print(f"  train: LocalCluster start {d['cluster_start']:.1f} s; fit (sum of sweeps) "
              f"{d['fit_sweeps_sum']:.1f} s (median after the first {d['sweep_median_after_first'] or 0:.1f} s); "
              f"the rest (open-run, block loading, held-out RMSE after each sweep, saving, cluster close) "
              f"{d['train_rest']:.1f} s")
    m = result["memory"]
    print(f"peak RSS: process tree {m['peak_rss_tree_mb']:,.0f} MB (sum); largest process "
          f"{m['peak_rss_one_process_mb']:,.0f} MB; peak sum by role (MB): "
          + ", ".join(f"{k} {v:,.0f}" for k, v in m["peak_rss_by_role_mb"].items()))
    print(f"test RMSE {result['test_rmse']:.4f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ratings", type=int, default=ML20M_RATINGS, help="synthetic ratings (default: the 20M shape)")
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--sweeps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    p.add_argument("--data-dir", default=str(HERE / "data"))
    p.add_argument("--prefect-home", default=None, help="default DATA_DIR/prefect-home")
    p.add_argument("--sample-s", type=float, default=0.2, help="RSS sampling interval")
    p.add_argument("--keep-store", action="store_true", help="keep the store (its path is printed)")
    p.add_argument("--out", default=str(HERE / "results" / "retrain_stages.json"))
    p.add_argument("extra", nargs="*", help="more retrain options after --, e.g. -- --workers 2")
    args = p.parse_args(argv)

    csv = ensure_csv(args.data_dir, args.ratings, args.seed)
    home = Path(args.prefect_home or Path(args.data_dir) / "prefect-home")
    migrated = ensure_prefect_home(home)
    if migrated is not None:
        print(f"migrated a new Prefect database in {home} in {migrated:.1f} s (not measured)", flush=True)
    work = Path(tempfile.mkdtemp(prefix="retrain-stages-", dir=args.data_dir))
    store = work / "store"
    cmd = [sys.executable, "-m", "factorflow", "retrain", csv, "--store", str(store), "--rank", str(args.rank),
           "--sweeps", str(args.sweeps), "--json", *args.extra]
    print("$", " ".join(cmd[1:]), flush=True)
    load_before = os.getloadavg()
    try:
        proc = run_sampled(cmd, cli_env(home), work, args.sample_s)
        if proc["returncode"] != 0:
            sys.stderr.write((work / "stderr.txt").read_text()[-4000:])
            raise SystemExit(f"factorflow retrain exited with {proc['returncode']} (logs in {work})")
        summary = json.loads((work / "stdout.txt").read_text())
        ready = re.search(r"Prefect API ready at \S+ \(([\d.]+) s\)", (work / "stderr.txt").read_text())
        runs = [Path(r).name for r in glob.glob(str(store / "runs" / "*"))]
        if len(runs) != 1:
            raise SystemExit(f"expected one run folder under {store}/runs, found {runs}")
        flow, tasks, logs = read_prefect_run(home / "prefect.db", runs[0])
        model_json = json.loads(next((store / "models").glob(f"*/versions/{summary['version']}/model.json"))
                                .read_text())
        table = stage_table(proc, flow, tasks, logs, model_json)
        mj_split = model_json.get("split") or {}
        snapshot = model_json.get("dataset") or {}
        result = {
            "command": "python benchmarks/retrain_stages.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "cli": " ".join(["factorflow", *cmd[3:]]),
            "csv": os.path.basename(csv),
            "shape": {"ratings": args.ratings, "users": model_json.get("n_users"), "items": model_json.get("n_items"),
                      "n_train": mj_split.get("n_train"), "n_test": mj_split.get("n_test")},
            "rank": args.rank,
            "sweeps": args.sweeps,
            **table,
            "memory": {k: v for k, v in proc.items() if k.startswith("peak_")},
            "test_rmse": summary["metrics"]["test"]["rmse"],
            "dask_workers": model_json.get("dask_workers"),
            "split": mj_split.get("id"),
            "snapshot": snapshot.get("snapshot"),
            "flow_state": flow["state_type"],
            "flow_run_id": runs[0],
            "api_server_start_s": float(ready.group(1)) if ready else None,  # as the CLI reports it
            "task_runs": [{"name": t["name"], "seconds": _utc_seconds(t["end_time"]) - _utc_seconds(t["start_time"]),
                           "state": t["state_type"]} for t in tasks if t["start_time"] and t["end_time"]],
            "target_total_s": TARGET_S,
            "load_before": list(load_before),
            "load_after": list(os.getloadavg()),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    finally:
        if args.keep_store:
            print(f"store and CLI logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_table(result)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
