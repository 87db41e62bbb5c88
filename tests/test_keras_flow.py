"""Keras kinds in the retrain flow, through the real CLI (slow):

- ``--device gpu`` with a ``dask scheduler`` and a ``dask worker --resources GPU=1`` on
  127.0.0.1 sends the fit to that worker (the log names it; progress comes back per epoch);
  without a scheduler it trains on the flow's process and says so.
- keras-deep, whose r̂ is not a dot product, is published with its ``network.keras``;
  ``recommend`` scores with the saved network (its list equals the flow's precomputed
  ``recommendations.parquet``), ``predict`` equals the network's own predictions, ``models``
  says how the version is served, and fold-in is refused in one line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from cli_env import error_lines, run_cli

pytestmark = pytest.mark.slow
QUICK = ["--epochs", "3", "--rank", "8", "--batch-size", "256", "--lr", "0.003"]


def _dask_exe() -> str:
    exe = Path(sys.executable).with_name("dask")
    return str(exe) if exe.exists() else shutil.which("dask")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from factorflow.data.synth import write_synthetic_csv

    d = tmp_path_factory.mktemp("keras_flow")
    src = d / "ratings.csv"
    write_synthetic_csv(str(src), 300, 200, 12_000, seed=3)
    return d, src


@pytest.fixture(scope="module")
def gpu_cluster(tmp_path_factory):
    """``dask scheduler`` plus one ``dask worker --resources GPU=1`` (a CPU machine declaring the
    resource: what is tested is the routing, not the chip)."""
    from distributed import Client

    d = tmp_path_factory.mktemp("dask_gpu")
    sched_file = d / "scheduler.json"
    procs = [subprocess.Popen([_dask_exe(), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(sched_file)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(600):
            if sched_file.exists() and sched_file.stat().st_size > 0:
                break
            time.sleep(0.1)
        procs.append(subprocess.Popen(
            [_dask_exe(), "worker", "--scheduler-file", str(sched_file), "--nworkers", "1", "--nthreads", "1",
             "--resources", "GPU=1", "--no-dashboard", "--host", "127.0.0.1", "--local-directory", str(d)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        address = json.loads(sched_file.read_text())["address"]
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(1, timeout=120)
            worker = next(iter(client.scheduler_info()["workers"]))
        yield address, worker
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="module")
def deep_on_gpu_worker(synthetic, gpu_cluster):
    d, src = synthetic
    address, worker = gpu_cluster
    store = d / "store"
    proc = run_cli(["retrain", str(src), "--store", str(store), "--model", "keras-deep", "--name", "deep",
                    *QUICK, "--device", "gpu", "--dask-address", address, "--json"], d / "prefect")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return store, json.loads(proc.stdout), proc.stderr, worker, d


def test_device_gpu_trains_on_the_worker_with_the_gpu_resource(deep_on_gpu_worker):
    _, summary, stderr, worker, _ = deep_on_gpu_worker
    assert f"trained keras-deep on Dask worker {worker}" in stderr, stderr[-3000:]
    assert "train keras-deep: 3/3" in stderr  # per-epoch progress came back from the worker
    assert summary["kind"] == "keras-deep"


def test_device_gpu_without_a_scheduler_trains_here_and_says_so(synthetic):
    d, src = synthetic
    proc = run_cli(["retrain", str(src), "--store", str(d / "store_here"), "--model", "keras-mf", "--epochs", "1",
                    "--rank", "4", "--device", "gpu", "--json"], d / "prefect")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no Dask scheduler given" in proc.stderr
    assert "training keras-mf on the flow's process (tensorflow on CPU)" in proc.stderr


def test_network_kind_is_published_with_its_network_and_served_by_it(deep_on_gpu_worker):
    from factorflow.serving.network import network_from_bytes
    from factorflow.serving.published import predict, recommend_for_user
    from factorflow.storage.registry import load_model

    store, summary, _, _, d = deep_on_gpu_worker
    vdir = store / "models" / "deep" / "versions" / summary["version"]
    meta = json.loads((vdir / "model.json").read_text())
    assert meta["serving"] == "network" and "network.keras" in meta["files"]
    model = load_model(str(store), "deep")
    network = network_from_bytes((vdir / "network.keras").read_bytes())
    rng = np.random.default_rng(0)
    u = rng.integers(0, model.factors.n_users, 500)
    i = rng.integers(0, model.factors.n_items, 500)
    direct = np.asarray(network.predict({"user": u.astype(np.int32), "item": i.astype(np.int32)}, verbose=0),
                        dtype=np.float64).reshape(-1) + model.factors.global_mean
    lo, hi = meta["rating_range"]
    served = predict(model, model.user_ids.take(u).to_pylist(), model.item_ids.take(i).to_pylist())
    np.testing.assert_allclose(served, np.clip(direct, lo, hi), atol=1e-5)
    # the saved network is not the tables' dot product: serving through the tables would differ
    assert np.abs(model.factors.score_pairs(u, i) - direct).max() > 1e-3

    recs = pq.read_table(vdir / "recommendations.parquet").to_pandas()
    for user in recs["user_id"].unique()[:3]:
        served = recommend_for_user(model, user, n=10)
        assert served.ranked.item_idx.tolist() == recs[recs.user_id == user].sort_values("rank")["item_idx"].tolist()


def test_models_says_how_each_version_is_served_and_fold_in_is_refused(deep_on_gpu_worker):
    store, summary, _, _, d = deep_on_gpu_worker
    proc = run_cli(["models", "deep", "--store", str(store)], d / "prefect")
    assert proc.returncode == 0 and "kind=keras-deep" in proc.stdout and "serving=network" in proc.stdout
    item = pq.read_table(store / "models" / "deep" / "versions" / summary["version"] / "item_factors.parquet")
    first = item.column("item_id")[0].as_py()
    proc = run_cli(["recommend", "--model", "deep", "--store", str(store), "--ratings", f"{first}=5"], d / "prefect")
    assert proc.returncode != 0
    assert len(error_lines(proc.stderr)) == 1 and "cannot fold in" in proc.stderr
    assert "Traceback" not in proc.stderr
