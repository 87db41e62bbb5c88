"""Must-show: the retrain flow and a 3-cutoff backfill against a real ``prefect server start``
(free 127.0.0.1 port, its own SQLite database), checked through the Prefect client API: the
runs are Completed, named ``FLOW-KIND-DATASET@SNAPSHOT-DATE``, tagged, and carry a ``metrics``
table artifact whose values are the run's ``metrics.json``, a markdown summary embedding the
learning curve, and progress artifacts; a failing run's state message names the step; a run
left RUNNING by a dead process of this host is marked Crashed when the next flow run starts.
The server is stopped at the end whatever happens (tests/prefect_server.py).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(shared_prefect_api):
    """The session's shared ``prefect server start`` (conftest), this module's client pointed at it."""
    yield shared_prefect_api


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from factorflow.data.synth import write_synthetic_csv

    path = tmp_path_factory.mktemp("data") / "ops.csv"  # timestamps span 1995..2015
    write_synthetic_csv(str(path), 300, 200, 8000, seed=0)
    return path


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _artifacts(client, flow_run_id) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def _table(artifact) -> list[dict]:
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


@pytest.fixture(scope="module")
def dead_run(server):
    """A flow run left RUNNING by a process of this host that no longer exists."""
    from prefect import flow
    from prefect.states import Running

    from factorflow.flows.monitoring import HOST_LABEL, PID_LABEL
    from factorflow.storage.fs import host_name

    gone = subprocess.Popen(["true"])
    gone.wait()

    @flow(name="killed-earlier")
    def killed_earlier() -> None: ...

    with _client() as client:
        run = client.create_flow_run(killed_earlier, name="killed-earlier-run", tags=["factorflow"], state=Running())
        client.update_flow_run_labels(run.id, {HOST_LABEL: host_name(), PID_LABEL: str(gone.pid)})
        assert client.read_flow_run(run.id).state.is_running()
    return run.id, gone.pid


@pytest.fixture(scope="module")
def retrained(server, data, tmp_path_factory, dead_run):
    from factorflow.config import ComputeOptions, RetrainParams
    from factorflow.flows.retrain import retrain_flow

    store = str(tmp_path_factory.mktemp("store"))
    params = RetrainParams(compute=ComputeOptions(n_workers=1))
    state = retrain_flow(str(data), store, {"kind": "als", "rank": 4, "sweeps": 6}, None, params, return_state=True)
    return store, state


def test_retrain_run_completed_with_name_tags_and_labels(retrained):
    import os

    from factorflow.storage.fs import host_name

    store, state = retrained
    assert state.is_completed(), state.message
    summary = state.result()
    with _client() as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.state.is_completed()
    assert re.fullmatch(rf"retrain-als-ops@{summary['snapshot'][:8]}-\d{{4}}-\d\d-\d\dT\d\d:\d\dZ", run.name), run.name
    assert {"factorflow", "flow:retrain", "model:als", "dataset:ops", "manual"} <= set(run.tags)
    assert run.labels["factorflow.host"] == host_name() and run.labels["factorflow.pid"] == str(os.getpid())


def test_retrain_artifacts_equal_the_stored_metrics(retrained):
    store, state = retrained
    run_id = state.state_details.flow_run_id
    metrics = json.loads((Path(store) / "runs" / str(run_id) / "metrics.json").read_text())
    png = (Path(store) / "runs" / str(run_id) / "learning_curve.png").read_bytes()
    with _client() as client:
        arts = _artifacts(client, run_id)
    by_key = {}
    for a in arts:
        by_key.setdefault(a.key, []).append(a)
    (table,) = by_key["metrics"]
    rows = _table(table)
    assert rows[0]["model"] == "als"
    for k in ("rmse", "mae", "precision@10", "recall@10", "ndcg@10", "n"):
        assert rows[0][k] == metrics["test"][k], k  # exactly the stored value
    baselines = {r["model"].removeprefix("baseline: "): r for r in rows[1:]}
    assert set(baselines) == set(metrics["baselines"])
    for name, m in metrics["baselines"].items():
        assert baselines[name]["rmse"] == m["rmse"]
    (md,) = by_key["summary-als"]
    embedded = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", md.data)
    assert embedded and base64.b64decode(embedded[1]) == png
    assert f"{metrics['test']['rmse']:.4f}" in md.data
    progress = [a for a in arts if a.type == "progress"]
    assert progress and all(float(a.data) == 100.0 for a in progress)  # ingest, split, partition, train, ...
    assert "publish-decision" in by_key


def test_a_dead_run_is_marked_crashed_when_a_flow_starts(retrained, dead_run):
    run_id, pid = dead_run
    with _client() as client:
        state = client.read_flow_run(run_id).state
    assert state.is_crashed()
    assert f"its process {pid} on" in state.message and "gone" in state.message


def test_backfill_of_three_cutoffs(server, data, retrained):
    from factorflow.flows.backfill import backfill_flow

    store, _ = retrained  # the same store: the snapshot is reused
    state = backfill_flow(str(data), store, "2009-01-01", "2012-01-01", every="365d", model="bias",
                          return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert [r["status"] for r in summary["rows"]] == ["evaluated"] * 3
    run_id = state.state_details.flow_run_id
    with _client() as client:
        run = client.read_flow_run(run_id)
        arts = _artifacts(client, run_id)
    assert run.state.is_completed()
    assert re.fullmatch(rf"backfill-bias-ops@{summary['snapshot'][:8]}-2009-01-01\.\.2012-01-01-every-365d-"
                        r"\d{4}-\d\d-\d\dT\d\d:\d\dZ", run.name), run.name
    assert {"factorflow", "flow:backfill", "model:bias", "dataset:ops", "manual"} <= set(run.tags)
    tables = [_table(a) for a in arts if a.key == "metrics"]
    stored = [json.loads(p.read_text()) for p in sorted(Path(store, "runs").glob(f"{run_id}-cut*/metrics.json"))]
    assert len(tables) == len(stored) == 3
    assert sorted(t[0]["rmse"] for t in tables) == sorted(m["test"]["rmse"] for m in stored)
    (board,) = [_table(a) for a in arts if a.key == "backfill"]
    assert len(board) == 3


def test_a_failure_names_the_step_in_the_state_message(server, tmp_path):
    from factorflow.errors import InputError
    from factorflow.flows.retrain import retrain_flow

    bad = tmp_path / "bad.csv"
    bad.write_text("userId,movieId,rating,timestamp\n" + "".join(f"{u},x{u},oops,1\n" for u in range(50)))
    state = retrain_flow(str(bad), str(tmp_path / "store"), "bias", return_state=True)
    assert state.is_failed()
    with pytest.raises(InputError) as raised:
        state.result()
    with _client() as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.state.is_failed()
    assert run.state.message == f"ingest: {raised.value}"
    assert str(bad) in run.state.message
