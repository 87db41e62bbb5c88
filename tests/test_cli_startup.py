"""The CLI's own Prefect start-up path (not the test harness's): no PREFECT_API_URL, a private
PREFECT_HOME, real subprocesses. Two runs at once both succeed; a SIGKILLed run leaves no
process behind; a dead PREFECT_API_URL and a start-up time-out are one line each."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from cli_env import CLI, cli_env, error_lines, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> Path:
    from factorflow.data.synth import write_synthetic_csv

    path = tmp_path_factory.mktemp("data") / "small.csv"
    write_synthetic_csv(str(path), 400, 300, 30_000, seed=3)
    return path


def _servers_of(home: Path) -> list[psutil.Process]:
    """Live private API servers started with PREFECT_HOME=home."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "factorflow.cli._api_server" in " ".join(p.info["cmdline"] or []) and \
                    p.environ().get("PREFECT_HOME") == str(home):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def test_two_cli_runs_at_once_both_publish(small_csv, tmp_path):
    """A fresh PREFECT_HOME (first migration) shared by two concurrent `retrain`s on one store."""
    home, store = tmp_path / "prefect", tmp_path / "store"
    procs = [subprocess.Popen(CLI + ["retrain", str(small_csv), "--store", str(store), "--name", name,
                                     "--sweeps", "3", "--workers", "1", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=cli_env(home, migrated=False),
                              stdin=subprocess.DEVNULL)
             for name in ("first", "second")]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err
        assert "factorflow: Prefect API ready at http://127.0.0.1:" in err
        summary = json.loads(out)
        assert summary["metrics"]["test"]["rmse"] < summary["metrics"]["baselines"]["global-mean"]["rmse"]
        assert (store / "models" / summary["model"] / "CURRENT").read_text().strip() == summary["version"]
    assert _servers_of(home) == []


def test_sigkilled_cli_leaves_no_process_behind(small_csv, tmp_path):
    home = tmp_path / "prefect"
    proc = subprocess.Popen(CLI + ["retrain", str(small_csv), "--store", str(tmp_path / "store"), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cli_env(home),
                            stdin=subprocess.DEVNULL)
    try:
        for line in proc.stderr:  # wait until the server answers and the flow has begun
            if "Beginning flow run" in line:
                break
        else:
            pytest.fail(f"the CLI ended (rc {proc.wait()}) before the flow began")
        family = psutil.Process(proc.pid).children(recursive=True)
        assert _servers_of(home), "no private API server was started"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        _, alive = psutil.wait_procs(family, timeout=60)
        assert alive == [], [" ".join(p.cmdline()) for p in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dead_prefect_api_url_is_one_line(small_csv, tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/api"
    t0 = time.monotonic()
    proc = run_cli(["retrain", str(small_csv), "--store", str(tmp_path / "store")], tmp_path / "prefect",
                   PREFECT_API_URL=url)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    [line] = error_lines(proc.stderr)
    assert line.startswith(f"factorflow: error: PREFECT_API_URL={url}: no Prefect API answers there")
    store = tmp_path / "store"  # checked writable before the API; nothing written into it
    assert not store.exists() or not any(store.iterdir())
    assert time.monotonic() - t0 < 120


def test_startup_timeout_is_one_line_and_stops_the_server(small_csv, tmp_path):
    home = tmp_path / "prefect"
    proc = run_cli(["retrain", str(small_csv), "--store", str(tmp_path / "store")], home, private_api=True,
                   FACTORFLOW_PREFECT_STARTUP_TIMEOUT="0.01")
    assert proc.returncode == 2, proc.stderr[-2000:]
    [line] = error_lines(proc.stderr)
    assert "the private Prefect API server did not answer within" in line
    assert "FACTORFLOW_PREFECT_STARTUP_TIMEOUT" in line
    assert "Traceback" not in proc.stderr
    assert _servers_of(home) == []
