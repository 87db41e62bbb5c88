"""A flow run whose process is killed does not stay RUNNING: against a real Prefect server, a
``factorflow retrain`` subprocess is SIGKILLed while its run is RUNNING; ``factorflow runs reap``
marks it Crashed with a message naming the dead process (a live run is left alone). A run of
another host whose heartbeats stopped is crashed by the heartbeat rule, and Prefect's zombie
automation installs. The rules themselves are checked without a server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from cli_env import CLI

from factorflow.flows.monitoring import HOST_LABEL, PID_LABEL, PID_START_LABEL, process_labels
from factorflow.flows.reaper import process_gone, silent_for


@pytest.fixture(scope="module")
def server(shared_prefect_api):
    """The session's shared ``prefect server start`` (conftest), this module's client pointed at it."""
    yield shared_prefect_api


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _running_run_of(client, pid: int):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
        type=FlowRunFilterStateType(any_=[StateType.RUNNING]))))
    return next((r for r in runs if r.labels.get(PID_LABEL) == str(pid)), None)


@pytest.mark.slow
def test_a_killed_cli_run_is_marked_crashed(server, tmp_path):
    from factorflow.data.synth import write_synthetic_csv
    from factorflow.flows.reaper import reap

    source = tmp_path / "killed.csv"
    write_synthetic_csv(str(source), 300, 200, 8000, seed=2)
    proc = subprocess.Popen(CLI + ["retrain", str(source), "--store", str(tmp_path / "store"), "--model", "als",
                                   "--rank", "4", "--sweeps", "200", "--workers", "1"],
                            env=server.env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        with _client() as client:
            while (run := _running_run_of(client, proc.pid)) is None:
                assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, "the retrain run never showed RUNNING"
                time.sleep(0.3)
            # alive on this host: left alone, even when its heartbeats look stale
            assert [r.id for r in reap(stale_after=0.001, dry_run=True, client=client)] == []
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI and all it started, at once
            proc.wait()
            time.sleep(1.0)
            assert client.read_flow_run(run.id).state.is_running()  # what the UI showed forever before
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()

    done = subprocess.run(CLI + ["runs", "reap"], env=server.env(), capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"marked Crashed: {run.name} ({run.id})" in done.stdout
    with _client() as client:
        state = client.read_flow_run(run.id).state
        tasks = client.read_task_runs(flow_run_filter=_by_id(run.id))
    assert state.is_crashed()
    assert state.message.startswith(f"factorflow reaper: its process {proc.pid} on ")
    assert "is gone (killed or crashed)" in state.message
    assert not any(t.state.is_running() for t in tasks)


def _by_id(flow_run_id):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))


@pytest.mark.slow
def test_a_silent_run_of_another_host_is_crashed_and_the_automation_installs(server):
    from prefect import flow
    from prefect.states import Running

    from factorflow.flows.reaper import AUTOMATION_NAME, install_zombie_automation, reap

    @flow(name="elsewhere")
    def elsewhere() -> None: ...

    with _client() as client:
        run = client.create_flow_run(elsewhere, tags=["factorflow"], state=Running())
        client.update_flow_run_labels(run.id, {HOST_LABEL: "another-host", PID_LABEL: "1"})
        assert reap(stale_after=3600, client=client) == []  # it started just now
        time.sleep(2.5)
        reaped = reap(stale_after=2, client=client)
        assert [r.id for r in reaped] == [str(run.id)]
        state = client.read_flow_run(run.id).state
        assert state.is_crashed() and "no heartbeat for" in state.message

        first = install_zombie_automation(600, client=client)
        second = install_zombie_automation(600, client=client)  # replaces, never duplicates
        (automation,) = client.read_automations_by_name(AUTOMATION_NAME)
        assert str(automation.id) == second != first
        assert automation.trigger.posture == "Proactive"
        assert automation.trigger.within == timedelta(seconds=600)


def test_process_rule():
    me = process_labels()
    assert process_gone(me) is None  # this process runs
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = {**me, PID_LABEL: str(gone.pid)}
    dead.pop(PID_START_LABEL, None)
    assert process_gone(dead) == f"its process {gone.pid} on {me[HOST_LABEL]} is gone (killed or crashed)"
    if PID_START_LABEL in me:  # Linux: a pid now used by another process is not the run's
        reused = {**me, PID_START_LABEL: str(int(me[PID_START_LABEL]) - 1)}
        assert "the pid now belongs to another process" in process_gone(reused)
    assert process_gone({**dead, HOST_LABEL: "another-host"}) is None  # not ours to judge
    assert process_gone({}) is None


def test_heartbeat_rule():
    now = datetime(2025, 1, 7, 3, 0, tzinfo=UTC)
    assert silent_for(now - timedelta(seconds=500), now, 540) is None
    assert silent_for(now - timedelta(seconds=541), now, 540) == \
        "no heartbeat for 541 s (since 2025-01-07 02:50:59Z; the limit is 540 s)"
    assert silent_for(None, now, 540) is None
