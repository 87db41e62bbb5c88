"""The retrain flow for real on a multi-process Dask cluster (slow).

Starts ``dask scheduler`` and two single-threaded ``dask worker`` processes on 127.0.0.1 (their
environment has no ``PREFECT_API_URL``) and a Prefect test server, then runs ``retrain_flow``
on ml-latest-small twice with the same seed and ``--blocks``: once against that cluster (the
flow's tasks go through Prefect's Dask task runner to the workers, and the train task drives
the ALS block tasks on the same cluster) and once with no address (thread pool + a LocalCluster
for the blocks). Checks: both Completed; the train task ran on a worker process, its task runs
and log lines were recorded against the flow run by the workers; the published factors of the
two runs are equal; the held-out RMSE bound, the published files and ``factorflow recommend``.
Also: two fits started at once from tasks on the two single-threaded workers both finish (the
train task secedes while its blocks run), and ``compare`` runs its concurrent chains there.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from dask_cluster import START_TIMEOUT_S, dask_processes

DATA = Path(__file__).parent / "data" / "ml-latest-small"
BLOCKS = 4
ADDRESS_ENV = ("FACTORFLOW_DASK_ADDRESS", "DASK_SCHEDULER_ADDRESS")
slow = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and two single-threaded worker processes on 127.0.0.1."""
    with dask_processes(tmp_path_factory.mktemp("dask"), 2) as procs:
        yield procs


@pytest.fixture(scope="module")
def prefect_server(shared_prefect_api):
    """The session's shared Prefect server (conftest)."""
    yield shared_prefect_api


@pytest.fixture(scope="module")
def no_address_env():
    with pytest.MonkeyPatch.context() as mp:
        for var in ADDRESS_ENV:
            mp.delenv(var, raising=False)
        yield


def _retrain(store: str, compute) -> object:
    from factorflow.config import RetrainParams
    from factorflow.flows.retrain import retrain_flow

    params = RetrainParams(compute=compute, item_titles=str(DATA / "movies.csv"))
    return retrain_flow(str(DATA / "ratings.csv"), store, "als", None, params, return_state=True)


@pytest.fixture(scope="module")
def on_cluster(tmp_path_factory, cluster, prefect_server, no_address_env):
    from factorflow.config import ComputeOptions

    store = str(tmp_path_factory.mktemp("store_cluster"))
    return store, _retrain(store, ComputeOptions(dask_address=cluster.address, n_blocks=BLOCKS))


@pytest.fixture(scope="module")
def on_local_cluster(tmp_path_factory, prefect_server, no_address_env):
    from factorflow.config import ComputeOptions

    store = str(tmp_path_factory.mktemp("store_local"))
    return store, _retrain(store, ComputeOptions(n_workers=2, n_blocks=BLOCKS))


def _task_runs(flow_state) -> dict[str, object]:
    """The flow run's task runs by task name (each task ran once here)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flow_run_id = flow_state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {re.sub(r"-[0-9a-f]{3}$", "", r.name): r for r in runs}  # "train-1a2" → "train"


def _logs(task_run_id, pattern: str, timeout: float = 120) -> list[str]:
    """The task run's log messages once one matches ``pattern`` (workers send theirs in batches)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            logs = [log.message for log in
                    client.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[task_run_id])))]
            if any(re.search(pattern, m) for m in logs) or time.monotonic() > deadline:
                return logs
            time.sleep(0.5)


@slow
def test_both_runs_complete_with_rmse_bound(on_cluster, on_local_cluster):
    for _, state in (on_cluster, on_local_cluster):
        assert state.is_completed(), state
        m = state.result()["metrics"]
        assert state.result()["split"] == "random-f0.2-s42"
        assert m["split"]["n_test"] == round(0.2 * 100_836)
        assert m["test"]["rmse"] <= 0.850
        assert m["test"]["rmse"] < m["baselines"]["bias"]["rmse"] < m["baselines"]["global-mean"]["rmse"]
        assert 0 < m["test"]["ndcg@10"] <= 1


@slow
def test_cluster_run_publishes_the_local_cluster_runs_factors(on_cluster, on_local_cluster):
    from factorflow.storage.registry import load_model

    (store_a, state_a), (store_b, state_b) = on_cluster, on_local_cluster
    a = load_model(store_a, "als", state_a.result()["version"])
    b = load_model(store_b, "als", state_b.result()["version"])
    assert a.user_ids.equals(b.user_ids) and a.item_ids.equals(b.item_ids)
    for attr in ("user_factors", "item_factors", "user_bias", "item_bias"):
        x, y = getattr(a.factors, attr), getattr(b.factors, attr)
        assert x.shape == y.shape and np.isfinite(x).all()
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=attr)
    assert a.model_json["metrics"]["test"]["rmse"] == pytest.approx(b.model_json["metrics"]["test"]["rmse"], abs=1e-6)


@slow
def test_train_task_ran_on_a_worker_and_reported_to_the_flow_run(on_cluster, cluster):
    """The task runs are the workers' (recorded against the flow run with their log lines: the
    Prefect API reached processes started without PREFECT_API_URL); the train task's pid is a
    worker's, not this process's."""
    from distributed import Client

    _, state = on_cluster
    runs = _task_runs(state)
    for step in ("ingest", "split", "partition", "open-run", "train", "evaluate", "batch-recommend", "publish"):
        assert step in runs and runs[step].state.is_completed(), (step, runs.get(step))
        assert runs[step].flow_run_id == state.state_details.flow_run_id
    logs = _logs(runs["train"].id, r"train als: (\d+)/\1\b")  # the last sweep's progress line
    [where] = [m for m in logs if m.startswith("train als: running on ")] or [None]
    assert where is not None, logs
    found = re.fullmatch(r"train als: running on Dask worker (\S+) \(pid (\d+)\)", where)
    assert found, where
    with Client(cluster.address, timeout=f"{START_TIMEOUT_S}s") as client:
        pids = client.run(os.getpid)
    assert pids[found[1]] == int(found[2]) != os.getpid()
    sweeps = state.result()["params"]["sweeps"]
    assert any(m.startswith(f"train als: {sweeps}/{sweeps} ") for m in logs), logs  # per-sweep progress came
    assert any(f"Dask: 2 workers at {cluster.address}; {BLOCKS} blocks per side" in m for m in logs), logs
    evaluate_logs = _logs(runs["evaluate"].id, ".")
    assert evaluate_logs  # another worker task's lines arrived too


@slow
def test_local_run_trains_on_the_flows_process(on_local_cluster):
    _, state = on_local_cluster
    runs = _task_runs(state)
    logs = _logs(runs["train"].id, r"running on")
    assert f"train als: running on the flow's process (pid {os.getpid()})" in logs, logs


@slow
def test_published_files(on_cluster):
    store, state = on_cluster
    summary = state.result()
    vdir = Path(store) / "models" / "als" / "versions" / summary["version"]
    assert (Path(store) / "models" / "als" / "CURRENT").read_text().strip() == summary["version"]
    model = json.loads((vdir / "model.json").read_text())
    assert model["kind"] == "als"
    assert model["metrics"]["test"]["rmse"] == pytest.approx(summary["metrics"]["test"]["rmse"])
    for key in ("mae", "ndcg@10", "precision@10", "recall@10"):
        assert key in model["metrics"]["test"]
    assert "rmse" in model["metrics"]["train"] and "rmse" in model["metrics"]["baselines"]["bias"]
    assert model["dask_workers"] == 2
    assert len(model["learning_curve"]) == model["params"]["sweeps"]
    users = pq.read_table(vdir / "user_factors.parquet")
    items = pq.read_table(vdir / "item_factors.parquet")
    assert users.num_rows == 610 and items.num_rows == 9724
    assert items.schema.field("factors").type.list_size == model["params"]["rank"]
    recs = pq.read_table(vdir / "recommendations.parquet")
    assert recs.num_rows == 610 * 10


@slow
def test_recommend_returns_unseen_items(on_cluster, capsys):
    from factorflow.cli import main

    store, state = on_cluster
    summary = state.result()
    assert main(["recommend", "--model", "als", "--user", "1", "-n", "10", "--json", "--store", store]) == 0
    recs = json.loads(capsys.readouterr().out)
    snap = Path(store) / "datasets" / summary["dataset"] / summary["snapshot"]
    train = pq.read_table(snap / "splits" / summary["split"] / "train.parquet").to_pandas()
    users = pq.read_table(snap / "users.parquet").to_pandas().set_index("user_id")["user_idx"]
    items = pq.read_table(snap / "items.parquet").to_pandas().set_index("item_idx")["item_id"]
    seen = set(items[train.loc[train.user_idx == users[1], "item_idx"]])
    assert len(seen) > 0
    assert len(recs) == 10
    assert all(isinstance(r["item"], int) and r["item"] not in seen for r in recs)
    scores = [r["score"] for r in recs]
    assert scores == sorted(scores, reverse=True)
    # the batch file published with the version ranks the same way the CLI does
    vdir = Path(store) / "models" / "als" / "versions" / summary["version"]
    batch = pq.read_table(vdir / "recommendations.parquet").to_pandas()
    assert batch.loc[batch.user_id == 1].sort_values("rank")["item_id"].tolist() == [r["item"] for r in recs]


@slow
def test_two_fits_from_tasks_on_both_single_threaded_workers_finish(on_cluster, cluster):
    """Each worker's only thread runs a task that drives a block fit on this same cluster (as the
    train tasks of a ``compare`` on the Dask task runner do). Holding the threads while the block
    tasks wait would deadlock; ``dask_client`` inside a worker secedes, so both finish, with the
    same factors (same seed)."""
    from distributed import Client, wait

    store, state = on_cluster
    s = state.result()
    from factorflow.storage.partitions import find_partitions

    split_path = Path(store) / "datasets" / s["dataset"] / s["snapshot"] / "splits" / s["split"]
    parts = find_partitions(str(split_path), BLOCKS)
    assert parts is not None

    def fit_on_this_cluster(path: str) -> tuple[object, int, str]:
        from factorflow.models.als import ALS, ALSConfig
        from factorflow.parallel.block_driver import fit_blocks
        from factorflow.parallel.cluster import current_worker, dask_client
        from factorflow.storage.partitions import load_partitions

        with dask_client() as client:  # no address: the worker's own scheduler
            factors, history = fit_blocks(client, load_partitions(path), ALS(ALSConfig(rank=4, sweeps=3, seed=5)))
        return factors, len(history), current_worker().address

    with Client(cluster.address, timeout=f"{START_TIMEOUT_S}s") as client:
        workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
        assert len(workers) == 2
        futures = [client.submit(fit_on_this_cluster, parts.path, workers=[w], pure=False) for w in workers]
        try:
            done, not_done = wait(futures, timeout=300)
            assert not not_done, "the two fits did not finish within 300 s (deadlocked workers?)"
            (fa, na, wa), (fb, nb, wb) = client.gather(futures)
        finally:
            client.cancel(futures)
    assert [wa, wb] == workers and na == nb == 3
    for attr in ("user_factors", "item_factors", "user_bias", "item_bias"):
        assert np.isfinite(getattr(fa, attr)).all()
        np.testing.assert_allclose(getattr(fa, attr), getattr(fb, attr), rtol=1e-6, atol=1e-7, err_msg=attr)


@slow
def test_compare_runs_its_chains_on_the_cluster(tmp_path, cluster, prefect_server):
    """``compare`` with two block-driver models on the cluster: both train tasks run on workers at
    once (the flow's Dask task runner), sharing the cluster for their blocks; every row evaluated."""
    from factorflow.config import ComputeOptions, RetrainParams
    from factorflow.data.synth import write_synthetic_csv
    from factorflow.flows.compare import compare_flow

    src = tmp_path / "ratings.csv"
    write_synthetic_csv(str(src), 300, 200, 12_000, seed=3)
    models = [{"kind": "als", "rank": 4, "sweeps": 3}, {"kind": "pmf", "rank": 4, "sweeps": 3}]
    params = RetrainParams(compute=ComputeOptions(dask_address=cluster.address, n_blocks=2))
    state = compare_flow(str(src), str(tmp_path / "store"), models, params, return_state=True)
    assert state.is_completed(), state
    rows = {r["kind"]: r for r in state.result()["rows"]}
    assert {rows[k]["status"] for k in ("als", "pmf")} == {"evaluated"}, rows
    assert all(0 < rows[k]["rmse"] < 1.5 for k in ("als", "pmf")), rows
    runs = _task_runs(state)
    for kind in ("als", "pmf"):
        logs = _logs(runs[f"train-{kind}"].id, "running on")
        assert any(m.startswith(f"train {kind}: running on Dask worker ") for m in logs), logs


def test_flow_address_precedence(monkeypatch):
    """The runner's scheduler: its own address, else the flow run's compute options (a
    RetrainParams or a deployment's dict), else the environment, else none (thread pool)."""
    from factorflow.config import ComputeOptions, RetrainParams
    from factorflow.parallel.cluster import same_address
    from factorflow.tasks._runner import ClusterTaskRunner, flow_address

    for var in ADDRESS_ENV:
        monkeypatch.delenv(var, raising=False)
    given = {"source": "x.csv", "params": RetrainParams(compute=ComputeOptions(dask_address="tcp://a:1"))}
    assert flow_address(None, {"source": "x.csv", "params": RetrainParams()}) is None
    assert flow_address(None, given) == "tcp://a:1"
    assert flow_address("tcp://b:2", given) == "tcp://b:2"
    assert flow_address(None, {"params": {"compute": {"dask_address": "tcp://c:3"}}}) == "tcp://c:3"
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://e:5")
    assert flow_address(None, {}) == "tcp://e:5"
    monkeypatch.setenv("FACTORFLOW_DASK_ADDRESS", "tcp://d:4")
    assert flow_address(None, {}) == "tcp://d:4"
    assert flow_address(None, given) == "tcp://a:1"
    assert same_address("127.0.0.1:8786", "tcp://127.0.0.1:8786") and not same_address("tcp://h:1", "tcp://h:2")
    runner = ClusterTaskRunner("tcp://b:2")
    assert runner.duplicate() == runner and runner.duplicate() is not runner
    import pickle

    assert pickle.loads(pickle.dumps(runner)).address == "tcp://b:2"  # travels with its flow to the workers
