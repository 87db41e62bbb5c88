"""``factorflow serve`` smoke test against a real Prefect server: a deployment scheduled every few
seconds produces a Completed scheduled run within a bounded wait; SIGTERM then stops serve with
exit code 0, the schedule paused and no process of it left behind. Without PREFECT_API_URL,
serve refuses in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli_env import CLI, error_lines, run_cli
from prefect_server import running_server, use_server

WAIT_S = float(os.environ.get("FACTORFLOW_TEST_SERVE_WAIT", "600"))  # generous: the machine may be loaded


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("prefect")) as s, use_server(s):
        yield s


def _group(pgid: int) -> list[int]:
    """The live (non-zombie) processes of process group ``pgid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry))
    return out


def _scheduled_runs(client, deployment_id) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


@pytest.mark.slow
def test_serve_runs_the_schedule_and_stops_cleanly(server, tmp_path):
    from prefect.client.orchestration import get_client

    from factorflow.data.synth import write_synthetic_csv

    source = tmp_path / "serve.csv"
    write_synthetic_csv(str(source), 200, 100, 4000, seed=1)
    store = tmp_path / "store"
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(CLI + ["serve", "--source", str(source), "--store", str(store), "--every", "5",
                                       "--model", "bias", "--reap-every", "30"],
                                env=server.env(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        completed = None
        deadline = time.monotonic() + WAIT_S
        with get_client(sync_client=True) as client:
            while completed is None:
                assert proc.poll() is None, f"serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"no completed scheduled run in {WAIT_S:.0f} s:\n" \
                                                    f"{log.read_text()[-3000:]}"
                try:
                    deployment = client.read_deployment_by_name("retrain/nightly-retrain")
                except Exception:  # not created yet
                    time.sleep(1)
                    continue
                runs = _scheduled_runs(client, deployment.id)
                completed = next((r for r in runs if r.state and r.state.is_completed()), None)
                time.sleep(1)
            assert completed.auto_scheduled
            assert {"factorflow", "flow:retrain", "model:bias", "dataset:serve", "scheduled"} <= set(completed.tags)
            assert completed.name.startswith("retrain-bias-serve@")
            assert (store / "models" / "bias" / "CURRENT").exists()

            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=180)
            assert code == 0, log.read_text()[-3000:]
            assert "serve stopped" in log.read_text()
            assert client.read_deployment_by_name("retrain/nightly-retrain").paused  # schedules paused on shutdown
            deadline = time.monotonic() + 30
            while _group(proc.pid) and time.monotonic() < deadline:  # runs it started end with it
                time.sleep(0.5)
            assert _group(proc.pid) == []
            assert all(not r.state.is_running() for r in _scheduled_runs(client, deployment.id))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in _group(proc.pid):
            os.kill(pid, signal.SIGKILL)


def test_serve_needs_a_prefect_server(tmp_path):
    source = tmp_path / "r.csv"
    source.write_text("userId,movieId,rating\n1,1,4\n")
    done = run_cli(["serve", "--source", str(source), "--store", str(tmp_path / "s")], tmp_path / "home", timeout=120)
    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        "factorflow: error: factorflow serve needs a Prefect server that outlives it: start one with "
        "deploy/start-prefect-server.sh (or `prefect server start`) and export "
        "PREFECT_API_URL=http://127.0.0.1:4200/api"]


def test_prefect_yaml_declares_the_deployments_serve_builds():
    import yaml

    from factorflow.flows.deployments import build_deployments

    spec = yaml.safe_load((Path(__file__).parents[1] / "deploy" / "prefect.yaml").read_text())
    declared = {d["name"]: d for d in spec["deployments"]}
    built = {d.name: d for d in build_deployments("/data/r.csv", "/store", {"kind": "als", "rank": 8})}
    assert set(declared) == set(built) == {"nightly-retrain", "backfill", "compare"}
    for name, d in built.items():
        assert declared[name]["entrypoint"] == d.entrypoint  # module paths, e.g. factorflow.flows.retrain.retrain_flow
        assert set(declared[name]["parameters"]) <= set(d._parameter_openapi_schema.properties)
        assert {"source", "store"} <= set(declared[name]["parameters"])
    assert declared["nightly-retrain"]["schedules"] == [{"cron": "0 3 * * *", "timezone": "UTC"}]
    assert built["nightly-retrain"].schedules[0].schedule.cron == "0 3 * * *"
    assert built["nightly-retrain"].parameters["model"] == {"kind": "als", "rank": 8}
    assert not built["backfill"].schedules and not built["compare"].schedules


def test_deployment_parameters_are_compact_json():
    from factorflow.config import PublishOptions, RetrainParams
    from factorflow.flows.deployments import build_deployments, model_parameter, params_parameter
    from factorflow.models.registry import make_config

    assert model_parameter("als") == model_parameter({"kind": "als", "rank": 50}) == "als"  # 50: the default
    assert model_parameter(make_config("als", {"rank": 8})) == {"kind": "als", "rank": 8}
    params = RetrainParams(publish=PublishOptions(keep_versions=5), warm_start=True)
    assert params_parameter(params) == {"publish": {"keep_versions": 5}, "warm_start": True}
    (nightly, *_) = build_deployments("/r.csv", "/s", "bias", params=params, interval=5)
    assert nightly.parameters == {"source": "/r.csv", "store": "/s", "model": "bias", "name": None,
                                  "params": {"publish": {"keep_versions": 5}, "warm_start": True}}
    assert nightly.schedules[0].schedule.interval.total_seconds() == 5


@pytest.mark.parametrize(("text", "seconds"), [("30", 30), ("90s", 90), ("30m", 1800), ("12h", 43200),
                                               ("1d", 86400), ("1w", 604800), ("0.5", 0.5)])
def test_every(text, seconds):
    from factorflow.cli.cmd_serve import parse_every

    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["0", "-5", "1y", "soon", ""])
def test_every_refuses(text):
    from factorflow.cli.cmd_serve import parse_every
    from factorflow.errors import ParameterError

    with pytest.raises(ParameterError, match="--every="):
        parse_every(text)
