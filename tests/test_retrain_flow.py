"""The Prefect flows through a Prefect test server and the real CLI (slow).

- the ingest flow's task is ``Cached`` from its second run while the snapshot exists, rebuilt
  when it is deleted;
- a user error inside the retrain flow (the CLI, its private Prefect API) is one line, exit 2;
- a store that is a file is a one-line error.

The retrain flow end to end on ml-latest-small with a real ``dask scheduler`` and two ``dask
worker`` processes (RMSE bound, published files, ``recommend``, the same factors as on a
LocalCluster) is tests/test_distributed.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_env import run_cli

DATA = Path(__file__).parent / "data" / "ml-latest-small"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_server(shared_prefect_api):
    """The session's shared Prefect server (conftest)."""
    yield shared_prefect_api


def _task_states(flow_state) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flow_run_id = flow_state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return [r.state.name for r in runs]


def test_ingest_flow_is_cached_from_the_second_run_while_the_snapshot_exists(tmp_path, prefect_server):
    import shutil

    from factorflow.flows.ingest import ingest_flow

    src = str(DATA / "ratings.csv")
    states = [ingest_flow(src, str(tmp_path), return_state=True) for _ in range(2)]
    first, again = (s.result() for s in states)
    assert first["manifest"]["rows_kept"] == 100_836 and first["reused"] is False
    assert again["snapshot"] == first["snapshot"]
    assert _task_states(states[0]) == ["Completed"] and _task_states(states[1]) == ["Cached"]
    shutil.rmtree(tmp_path / "datasets")  # a deleted snapshot is rebuilt, never served from the cache
    third = ingest_flow(src, str(tmp_path), return_state=True)
    assert _task_states(third) == ["Completed"] and third.result()["reused"] is False
    assert (tmp_path / "datasets" / first["name"] / first["snapshot"] / "manifest.json").exists()


def test_retrain_bad_file_is_one_line_without_traceback(tmp_path):
    """A user error inside the flow: exit 2, one 'factorflow: error:' line, no traceback, no model."""
    bad = tmp_path / "bad.csv"
    bad.write_text("userId,movieId,rating,timestamp\n1,1,4.0,1\n1,2,abc,2\n2,1,3.0,3\n")
    store = tmp_path / "store"
    # The CLI's own Prefect start-up path: once this failed under load (exit 1) when Prefect's
    # ephemeral server gave up after 20 s; the CLI now waits for its private server.
    proc = run_cli(["retrain", str(bad), "--store", str(store)], tmp_path / "prefect", timeout=900, private_api=True)
    # On failure show everything the CLI said: pytest's repr of the CompletedProcess is cut short,
    # and an exit 1 is only diagnosable from its traceback.
    said = f"exit {proc.returncode}\n--- stderr ---\n{proc.stderr}\n--- stdout ---\n{proc.stdout}"
    assert proc.returncode == 2, said
    errors = [line for line in proc.stderr.splitlines() if line.startswith("factorflow: error:")]
    assert errors == [f"factorflow: error: {bad}: 1 of 3 rows rejected (33.3% > --max-reject-fraction 1%); "
                      "first bad lines: 3 (non-numeric rating)"], said
    assert "Traceback" not in proc.stderr, said
    assert not (store / "models").exists() and not (store / "datasets" / "bad").exists()


def test_store_that_is_a_file_is_one_line_error(tmp_path, capsys):
    from factorflow.cli import main

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    assert main(["ingest", str(DATA / "ratings.csv"), "--store", str(blocker / "store")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"factorflow: error: {blocker / 'store'}: {blocker} is a file, not a folder; choose another path"
