"""Soak: many `factorflow retrain` cycles on one Prefect server and one Dask cluster, with faults.

Starts, each in its own process group (all stopped on exit, Ctrl-C, SIGTERM or failure):

* ``prefect server start --host 127.0.0.1 --port P`` with a private ``PREFECT_HOME``; every
  child gets ``PREFECT_API_URL=http://127.0.0.1:P/api`` (no per-cycle ephemeral server);
* ``dask scheduler`` and two single-threaded ``dask worker`` processes on 127.0.0.1.

Makes a synthetic dataset with ``factorflow synth`` (planted rank 10, ≥ 20 ratings per user,
so every model clears the publish gate), then runs ``--cycles`` ``factorflow retrain`` processes
with ``--dask-address``. Cycle c trains on a seeded 90% row sample of it, a new sample every
second cycle (so half the cycles ingest/split/partition new bytes and half reuse the cache).
Every ``--kill-every``-th cycle a monitor SIGKILLs one ``dask worker`` (nanny and worker
process) as soon as that cycle's ALS block solves are running on it, and starts a
replacement. From the first published version on, ``--readers`` loops of ``factorflow
recommend --model NAME --user U --json`` read CURRENT continuously.

At the end every version is verified (``load_model`` works, factors and biases finite,
``model.json`` carries test/train/baseline metrics), a summary line and a table are printed,
and JSON goes to ``--out``::

    soak: cycles=N faults_injected=F reader_errors=0 nonzero_exits=0 failed_versions=0

``reader_errors``: recommend calls that failed (non-zero exit, or output that is not a list of
finite scores); ``nonzero_exits``: non-zero exits of any retrain or recommend process;
``failed_versions``: versions failing verification. Exit status 0 when all three are 0.

    python benchmarks/soak.py                      # 20 cycles, a worker killed in 5 of them
    python benchmarks/soak.py --cycles 4 --keep    # quick look; keeps the work folder
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODEL = "soak"


def _exe(name: str) -> list[str]:
    """A console script of this environment (``factorflow``, ``dask``, ``prefect``)."""
    path = BIN / name
    if path.exists():
        return [str(path)]
    found = shutil.which(name)
    if found:
        return [found]
    if name == "factorflow":
        return [sys.executable, "-m", "factorflow"]
    raise SystemExit(f"soak: error: {name!r} is not installed next to {sys.executable} nor on PATH")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Stopping(Exception):
    """A process was to start after :meth:`Processes.stop_all`; it was killed at once."""


class Processes:
    """Every process the soak starts, each in a new session (= its own process group).

    ``stop_all`` ends them all: SIGTERM to each group, SIGKILL to any still there after a grace
    period. Safe to call from ``finally`` after Ctrl-C; a process that already ended is skipped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[int, tuple[str, subprocess.Popen]] = {}
        self._closed = False

    def start(self, what: str, cmd: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
        """Start a long-running process, its output appended to ``log`` (or discarded)."""
        with open(log or os.devnull, "ab") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=ROOT)
        return self._register(what, proc)

    def run(self, what: str, cmd: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, str]:
        """Run to completion; returns (exit status, stdout, stderr). A timeout kills the group."""
        proc = self._register(what, subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            start_new_session=True, cwd=ROOT))
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(proc)
            out, err = proc.communicate()
            err += f"\nsoak: killed after {timeout:.0f} s"
        except BaseException:  # Ctrl-C or SIGTERM while waiting: the child's group goes too
            self.kill(proc)
            proc.wait()
            raise
        finally:
            self.forget(proc)
        return proc.returncode, out, err

    def _register(self, what: str, proc: subprocess.Popen) -> subprocess.Popen:
        with self._lock:
            if not self._closed:
                self._live[proc.pid] = (what, proc)
                return proc
        self.kill(proc)  # started by another thread while stop_all ran
        proc.wait()
        raise Stopping(what)

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    def forget(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._live.pop(proc.pid, None)

    def stop_all(self, grace: float = 20.0) -> None:
        with self._lock:
            self._closed = True
            live = list(self._live.values())
            self._live.clear()
        for _, proc in live:
            self.kill(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _, proc in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for _, proc in live:  # SIGKILL what is left, and any child a parent left in its group
            self.kill(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(cond, timeout: float, what: str, alive: subprocess.Popen | None = None,
                log: Path | None = None, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if alive is not None and alive.poll() is not None:
            tail = _tail(log) if log else ""
            raise RuntimeError(f"{what}: the process exited with status {alive.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s\n{_tail(log) if log else ''}")
        time.sleep(interval)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


class DaskCluster:
    """``dask scheduler`` + worker processes, and a monitoring client of the soak's own."""

    def __init__(self, procs: Processes, env: dict[str, str], folder: Path, timeout: float) -> None:
        from distributed import Client

        self.procs, self.env, self.folder, self.timeout = procs, env, folder, timeout
        self.logs = folder / "logs"
        sched_file = folder / "scheduler.json"
        log = self.logs / "dask-scheduler.log"
        sched = procs.start("dask scheduler", [*_exe("dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                               "--no-dashboard", "--scheduler-file", str(sched_file)], env, log)
        _wait_until(lambda: sched_file.exists() and sched_file.stat().st_size > 0, timeout, "dask scheduler start",
                    sched, log)
        self.address = json.loads(sched_file.read_text())["address"]
        self.workers: list[subprocess.Popen] = []
        self.n_started = 0
        self.client = Client(self.address, timeout=f"{timeout:.0f}s")

    def add_worker(self) -> subprocess.Popen:
        self.n_started += 1
        log = self.logs / f"dask-worker-{self.n_started}.log"
        proc = self.procs.start(f"dask worker {self.n_started}", [
            *_exe("dask"), "worker", self.address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
            "--host", "127.0.0.1", "--local-directory", str(self.folder / "dask")], self.env, log)
        self.workers.append(proc)
        return proc

    def n_workers(self) -> int:
        return len(self.client.scheduler_info()["workers"])

    def wait_for(self, n: int) -> None:
        _wait_until(lambda: self.n_workers() == n, self.timeout, f"{n} dask workers registered")

    def kill_worker_mid_fit(self, stop: threading.Event, record: dict[str, Any]) -> None:
        """Wait until ALS block solves run; SIGKILL the group of one worker running one; restart it."""
        t0 = time.monotonic()
        while not stop.is_set():
            try:
                busy = sorted(w for w, keys in self.client.processing().items()
                              if any(str(k).startswith("_solve-") for k in keys))
                if busy:
                    address = random.choice(busy)
                    nanny_pid = self.client.run(os.getppid, workers=[address])[address]
                    victim = next(p for p in self.workers if p.pid == nanny_pid)
                    self.procs.kill(victim)
                    victim.wait(timeout=30)
                    self.procs.forget(victim)
                    self.workers.remove(victim)
                    record.update(killed=address, after_s=round(time.monotonic() - t0, 2))
                    self.add_worker()
                    return
            except Exception as exc:  # noqa: BLE001 - e.g. the worker ended between two calls: try again
                record["monitor_error"] = f"{type(exc).__name__}: {exc}"
            time.sleep(0.02)


@dataclass
class ReaderStats:
    calls: int = 0
    errors: int = 0
    exit_codes: Counter = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)
    first_errors: list[str] = field(default_factory=list)


def reader_loop(procs: Processes, env: dict[str, str], store: str, users: list[str], stop: threading.Event,
                stats: ReaderStats, lock: threading.Lock, seed: int) -> None:
    """Call ``factorflow recommend`` back to back for random users until ``stop`` is set."""
    rng = random.Random(seed)
    while not stop.is_set():
        user = rng.choice(users)
        t0 = time.perf_counter()
        try:
            rc, out, err = procs.run("factorflow recommend", [
                *_exe("factorflow"), "recommend", "--model", MODEL, "--user", user, "--json", "-n", "5",
                "--store", store], env, timeout=600)
        except Stopping:
            return
        seconds = time.perf_counter() - t0
        problem = None if rc == 0 else f"exit {rc}: {(err.strip().splitlines() or ['(no stderr)'])[-1][:300]}"
        if problem is None:
            try:
                recs = json.loads(out)
                if not (isinstance(recs, list) and recs
                        and all(math.isfinite(float(r["score"])) and "item" in r for r in recs)):
                    problem = f"unexpected output: {out[:200]!r}"
            except (ValueError, KeyError, TypeError) as exc:
                problem = f"output is not the JSON list ({exc}): {out[:200]!r}"
        with lock:
            if stop.is_set() and rc < 0:
                return  # killed by the soak's own shutdown: not a reader error
            stats.calls += 1
            stats.exit_codes[rc] += 1
            stats.seconds.append(seconds)
            if problem:
                stats.errors += 1
                if len(stats.first_errors) < 10:
                    stats.first_errors.append(f"user {user}: {problem}")


def make_variant(lines: list[str], header: str, variant: int, path: Path, keep: float = 0.9) -> int:
    """Write a seeded ``keep`` sample of the rows (order kept); returns its row count."""
    rng = random.Random(1000 + variant)
    rows = [ln for ln in lines if rng.random() < keep]
    path.write_text(header + "".join(rows))
    return len(rows)


def verify_versions(store: str) -> list[dict[str, Any]]:
    """Load every version of the model and check its factors and metrics; one row per version."""
    import numpy as np

    from factorflow.storage import registry as reg

    rows = []
    for version in reg.list_versions(store, MODEL):
        row: dict[str, Any] = {"version": version, "ok": False}
        try:
            meta = reg.read_model_json(store, MODEL, version)
            row["status"] = meta.get("status", "published")
            model = reg.load_model(store, MODEL, version)
            f = model.factors
            finite = all(np.isfinite(a).all() for a in (f.user_factors, f.item_factors, f.user_bias, f.item_bias))
            finite = finite and math.isfinite(f.global_mean)
            m = meta.get("metrics") or {}
            test_rmse = (m.get("test") or {}).get("rmse")
            baselines = m.get("baselines") or {}
            has_metrics = (isinstance(test_rmse, (int, float)) and math.isfinite(test_rmse)
                           and "rmse" in (m.get("train") or {}) and all("rmse" in b for b in baselines.values())
                           and bool(baselines))
            row.update(test_rmse=test_rmse, global_mean_rmse=(baselines.get("global-mean") or {}).get("rmse"),
                       n_users=f.n_users, n_items=f.n_items, finite=bool(finite), metrics=has_metrics)
            row["ok"] = bool(finite and has_metrics and row["status"] == "published")
        except Exception as exc:  # noqa: BLE001 - a version that cannot be read is what we count
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    return rows


def _summary_json(out: str) -> dict[str, Any] | None:
    start = out.find("{")
    try:
        return json.loads(out[start:]) if start >= 0 else None
    except ValueError:
        return None


def soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    procs = Processes()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    store = str(work / "store")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect-home"), "PREFECT_API_URL": api,
           "PYTHONUNBUFFERED": "1"}
    env.pop("FACTORFLOW_DASK_ADDRESS", None)
    server_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    server_env.update(PREFECT_UI_ENABLED="false", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    stop = threading.Event()
    readers: list[threading.Thread] = []
    dask: DaskCluster | None = None
    t_start = time.monotonic()
    try:
        # 1. the Prefect server and the Dask cluster
        log = logs / "prefect-server.log"
        t0 = time.monotonic()
        server = procs.start("prefect server", [*_exe("prefect"), "server", "start", "--host", "127.0.0.1",
                                                "--port", str(port)], server_env, log)
        dask = DaskCluster(procs, env, work, args.startup_timeout)
        for _ in range(2):
            dask.add_worker()
        print(f"soak: waiting for the Prefect API at {api} and 2 dask workers at {dask.address} ...", flush=True)
        _wait_until(lambda: _healthy(f"{api}/health"), args.startup_timeout, "prefect server start", server, log)
        dask.wait_for(2)
        startup_s = time.monotonic() - t0
        print(f"soak: Prefect server and Dask cluster up in {startup_s:.0f} s", flush=True)

        # 2. synthetic data
        base = work / "synth.csv"
        rc, _, err = procs.run("factorflow synth", [
            *_exe("factorflow"), "synth", str(base), "--users", str(args.users), "--items", str(args.items),
            "--ratings", str(args.ratings), "--seed", str(args.seed), "--min-user-ratings", "20"], env, 600)
        if rc != 0:
            raise RuntimeError(f"factorflow synth exited {rc}: {err.strip()[-500:]}")
        header, *lines = base.read_text().splitlines(keepends=True)
        users = sorted({ln.split(",", 1)[0] for ln in lines})

        # 3. the cycles
        cycles: list[dict[str, Any]] = []
        stats, stats_lock = ReaderStats(), threading.Lock()
        for c in range(1, args.cycles + 1):
            variant = (c - 1) // 2
            data = work / f"ratings-v{variant}.csv"
            n_rows = make_variant(lines, header, variant, data) if not data.exists() else None
            kill = args.kill_every > 0 and c % args.kill_every == 0
            record: dict[str, Any] = {}
            monitor_stop = threading.Event()
            monitor = None
            if kill:
                monitor = threading.Thread(target=dask.kill_worker_mid_fit, args=(monitor_stop, record), daemon=True)
                monitor.start()
            t0 = time.perf_counter()
            rc, out, err = procs.run(f"retrain {c}", [
                *_exe("factorflow"), "retrain", str(data), "--store", store, "--dataset", "soak", "--name", MODEL,
                "--dask-address", dask.address, "--rank", str(args.rank), "--sweeps", str(args.sweeps),
                "--blocks", str(args.blocks), "--json"], env, timeout=args.cycle_timeout)
            seconds = time.perf_counter() - t0
            monitor_stop.set()
            if monitor is not None:
                monitor.join(timeout=60)
            (logs / f"retrain-{c:02d}.log").write_text(out + "\n--- stderr ---\n" + err)
            summary = _summary_json(out) if rc == 0 else None
            m = (summary or {}).get("metrics") or {}
            row = {
                "cycle": c, "data": data.name, "rows": n_rows, "fault": "worker SIGKILL" if record.get("killed") else
                ("planned, fit ended first" if kill else ""), "kill_after_s": record.get("after_s"),
                "exit": rc, "seconds": round(seconds, 1), "version": (summary or {}).get("version"),
                "test_rmse": (m.get("test") or {}).get("rmse"),
                "global_mean_rmse": ((m.get("baselines") or {}).get("global-mean") or {}).get("rmse"),
            }
            if rc != 0:
                row["error"] = (err.strip().splitlines() or ["(no stderr)"])[-1][:300]
            if record.get("monitor_error") and not record.get("killed"):
                row["monitor_error"] = record["monitor_error"]
            cycles.append(row)
            killed = f"worker killed {record.get('after_s')} s into the cycle" if record.get("killed") else ""
            print(f"soak: cycle {c:2d}/{args.cycles}  exit {rc}  {seconds:5.1f} s  {killed}"
                  f"{'  ' + row['error'] if rc else ''}", flush=True)
            if rc == 0 and not readers:
                for i in range(args.readers):
                    t = threading.Thread(target=reader_loop, args=(procs, env, store, users, stop, stats, stats_lock,
                                                                   args.seed + i), daemon=True)
                    t.start()
                    readers.append(t)
            if dask.n_workers() != 2 or len(dask.workers) != 2:
                while len(dask.workers) < 2:
                    dask.add_worker()
                dask.wait_for(2)

        # 4. stop the readers, verify every version
        stop.set()
        for t in readers:
            t.join(timeout=660)
        versions = verify_versions(store)
        from factorflow.storage.registry import current_version

        published = [r["version"] for r in cycles if r["exit"] == 0 and r["version"]]
        current = current_version(store, MODEL) if published else None
        with stats_lock:
            reader = {
                "calls": stats.calls, "errors": stats.errors,
                "exit_codes": {str(k): v for k, v in sorted(stats.exit_codes.items())},
                "median_seconds": round(sorted(stats.seconds)[len(stats.seconds) // 2], 2) if stats.seconds else None,
                "first_errors": stats.first_errors,
            }
        # a killed cycle trained on the same bytes as an undisturbed one must give the same model
        undisturbed = {}
        for r in cycles:
            if not r["fault"] and r["test_rmse"] is not None:
                undisturbed.setdefault(r["data"], r["test_rmse"])
        twins = [r for r in cycles if r["fault"] == "worker SIGKILL" and r["test_rmse"] is not None
                 and undisturbed.get(r["data"]) is not None]
        for r in twins:
            r["same_rmse_as_undisturbed"] = abs(r["test_rmse"] - undisturbed[r["data"]]) <= 1e-6
        retrain_nonzero = sum(1 for r in cycles if r["exit"] != 0)
        recommend_nonzero = sum(v for k, v in stats.exit_codes.items() if k != 0)
        return {
            "summary": {
                "cycles": len(cycles), "faults_injected": sum(1 for r in cycles if r["fault"] == "worker SIGKILL"),
                "reader_errors": stats.errors, "nonzero_exits": retrain_nonzero + recommend_nonzero,
                "failed_versions": sum(1 for v in versions if not v["ok"]),
                "retrain_nonzero_exits": retrain_nonzero, "recommend_nonzero_exits": recommend_nonzero,
                "reader_calls": stats.calls, "versions": len(versions),
                "published_cycles": sum(1 for r in cycles if r["exit"] == 0),
                "current": current, "current_is_last_published": bool(published) and current == published[-1],
                "killed_cycles_compared": len(twins),
                "killed_cycles_same_rmse": sum(1 for r in twins if r["same_rmse_as_undisturbed"]),
                "startup_seconds": round(startup_s, 1), "wall_seconds": round(time.monotonic() - t_start, 1),
            },
            "cycles": cycles, "reader": reader, "versions": versions,
        }
    finally:
        stop.set()
        handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:  # a second Ctrl-C must not cut the clean-up short
            if dask is not None:
                with contextlib.suppress(Exception):
                    dask.client.close(timeout=10)
            procs.stop_all()
            for t in readers:
                t.join(timeout=30)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)


def print_report(result: dict[str, Any]) -> None:
    s = result["summary"]
    print("\n| cycle | data | fault | exit | seconds | test RMSE | global-mean RMSE | version |")
    print("|---:|---|---|---:|---:|---:|---:|---|")
    for r in result["cycles"]:
        fault = r["fault"] + (f" at {r['kill_after_s']} s" if r.get("kill_after_s") is not None else "")
        rmse = "" if r["test_rmse"] is None else f"{r['test_rmse']:.4f}"
        base = "" if r["global_mean_rmse"] is None else f"{r['global_mean_rmse']:.4f}"
        print(f"| {r['cycle']} | {r['data']} | {fault} | {r['exit']} | {r['seconds']} | {rmse} | {base} | "
              f"{r['version'] or r.get('error', '')} |")
    rd = result["reader"]
    print(f"\nrecommend: {rd['calls']} calls, {rd['errors']} failed, exit codes {rd['exit_codes']}, "
          f"median {rd['median_seconds']} s per call")
    for e in rd["first_errors"]:
        print(f"  reader error: {e}")
    bad = [v for v in result["versions"] if not v["ok"]]
    print(f"cycles with a worker killed mid-fit: {s['killed_cycles_same_rmse']} of {s['killed_cycles_compared']} "
          "gave the test RMSE (to 1e-6) of the undisturbed cycle on the same data")
    print(f"CURRENT names {s['current']} "
          f"({'the last published version' if s['current_is_last_published'] else 'NOT the last published version'})")
    print(f"versions: {s['versions']} verified, {len(bad)} failed; {s['published_cycles']} cycles published; "
          f"start-up {s['startup_seconds']} s, wall {s['wall_seconds']} s")
    for v in bad:
        print(f"  failed version {v['version']}: {v.get('error') or v}")
    print(f"\nsoak: cycles={s['cycles']} faults_injected={s['faults_injected']} reader_errors={s['reader_errors']} "
          f"nonzero_exits={s['nonzero_exits']} failed_versions={s['failed_versions']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=20, help="retrain cycles (default 20)")
    ap.add_argument("--kill-every", type=int, default=4, help="SIGKILL a dask worker mid-fit every K-th cycle "
                                                               "(default 4; 0 = never)")
    ap.add_argument("--readers", type=int, default=1, help="concurrent recommend loops (default 1)")
    ap.add_argument("--users", type=int, default=1500, help="synthetic users (default 1500)")
    ap.add_argument("--items", type=int, default=600, help="synthetic items (default 600)")
    ap.add_argument("--ratings", type=int, default=60_000, help="synthetic ratings (default 60,000)")
    ap.add_argument("--seed", type=int, default=0, help="synth seed (default 0)")
    ap.add_argument("--rank", type=int, default=10, help="ALS rank (default 10)")
    ap.add_argument("--sweeps", type=int, default=8, help="ALS sweeps (default 8)")
    ap.add_argument("--blocks", type=int, default=8, help="partition blocks per side (default 8)")
    ap.add_argument("--startup-timeout", type=float, default=600, help="seconds for the Prefect server and Dask "
                                                                       "processes to come up (default 600)")
    ap.add_argument("--cycle-timeout", type=float, default=900, help="seconds before a retrain is killed "
                                                                     "(default 900)")
    ap.add_argument("--workdir", help="work folder (default: a new temporary folder, removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, store)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "soak.json"))
    args = ap.parse_args()
    if args.cycles < 1 or args.readers < 0 or args.kill_every < 0:
        ap.error("--cycles must be >= 1, --readers and --kill-every >= 0")

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_sigterm)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="ff-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"soak: work folder {work}", flush=True)
    try:
        result = soak(args, work)
    except KeyboardInterrupt:
        print("soak: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"soak: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if not (args.keep or args.workdir):
            shutil.rmtree(work, ignore_errors=True)
    result["params"] = {k: v for k, v in vars(args).items() if k not in ("out", "workdir", "keep")}
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                         "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    print_report(result)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    s = result["summary"]
    return 0 if s["reader_errors"] == s["nonzero_exits"] == s["failed_versions"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
