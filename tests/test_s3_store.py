"""STORE as ``s3://bucket/prefix`` on a real S3-compatible server (moto's, on 127.0.0.1) (slow).

One moto server per module, started as a subprocess in its own process group and stopped
whatever happens. The CLI runs as it would against AWS: endpoint and credentials from the
environment only (``AWS_ENDPOINT_URL`` + ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``; one
command with ``FSSPEC_S3_ENDPOINT_URL`` instead). What is checked is read back independently,
with pyarrow's own S3 filesystem.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from cli_env import CLI, cli_env, error_lines, run_cli

pytestmark = pytest.mark.slow

BUCKET = "ff-bucket"
PREFIX = "team/store"
STORE = f"s3://{BUCKET}/{PREFIX}"
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
START_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _moto_api(endpoint: str, what: str, body: bytes) -> None:
    req = urllib.request.Request(f"{endpoint}/moto-api/{what}", data=body, method="POST",
                                 headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(req, timeout=30).read()


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """``(endpoint, env)``: a running moto server with bucket BUCKET, and the CLI's S3 variables."""
    log_dir = tmp_path_factory.mktemp("moto")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(log_dir / "moto.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, (log_dir / "moto.log").read_text()
            try:
                urllib.request.urlopen(endpoint, timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline, f"moto did not answer within {START_TIMEOUT_S} s"
                time.sleep(0.5)
        _s3(endpoint).mkdir(BUCKET)
        yield endpoint, {**KEYS, "AWS_ENDPOINT_URL": endpoint}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _s3(endpoint: str):
    """The test's own s3fs view of the server (no instance or listing cache)."""
    import s3fs

    return s3fs.S3FileSystem(key=KEYS["AWS_ACCESS_KEY_ID"], secret=KEYS["AWS_SECRET_ACCESS_KEY"],
                             endpoint_url=endpoint, skip_instance_cache=True, use_listings_cache=False)


def _pyarrow_s3(endpoint: str):
    from pyarrow import fs as pafs

    return pafs.S3FileSystem(access_key=KEYS["AWS_ACCESS_KEY_ID"], secret_key=KEYS["AWS_SECRET_ACCESS_KEY"],
                             endpoint_override=endpoint, region="us-east-1")


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("src") / "ratings.csv"
    proc = subprocess.run(CLI + ["synth", str(out), "--users", "300", "--items", "200", "--ratings", "8000",
                                 "--seed", "3"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def retrained(moto, source, tmp_path_factory):
    """ingest, then retrain on 2 Dask workers, both with STORE on S3; the retrain's summary."""
    _, env = moto
    home = tmp_path_factory.mktemp("prefect")
    ingest = run_cli(["ingest", str(source), "--store", STORE], home, timeout=600, **env)
    assert ingest.returncode == 0, ingest.stderr
    proc = run_cli(["retrain", str(source), "--store", STORE, "--name", "s3als", "--rank", "8", "--sweeps", "3",
                    "--workers", "2", "--json"], home, timeout=900, **env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):]), home


def test_ingest_retrain_recommend_with_the_store_on_s3(moto, retrained):
    endpoint, env = moto
    summary, home = retrained
    s3, arrow = _s3(endpoint), _pyarrow_s3(endpoint)
    root = f"{BUCKET}/{PREFIX}"
    keys = s3.find(root)
    assert keys and not [k for k in keys if "/.tmp-" in k or ".write-probe-" in k]

    # the snapshot, split and partitions were written to the bucket, each with its manifest
    snap = f"{root}/datasets/ratings/{summary['snapshot']}"
    manifest = json.loads(s3.cat_file(f"{snap}/manifest.json"))
    split = f"{snap}/splits/{summary['split']}"
    assert s3.exists(f"{split}/manifest.json") and s3.exists(f"{split}/train.parquet")
    [pdir] = s3.ls(f"{split}/partitions", detail=False)
    parts = json.loads(s3.cat_file(f"{pdir}/partitions.json"))
    assert len([k for k in s3.ls(pdir, detail=False) if k.endswith(".npz")]) == 2 * parts["n_blocks"] > 2
    assert parts["nnz"] == json.loads(s3.cat_file(f"{split}/manifest.json"))["n_train"]

    # the version CURRENT names is complete; its tables are Parquet any S3 reader can open
    version = summary["version"]
    assert s3.cat_file(f"{root}/models/s3als/CURRENT").decode().strip() == version
    vdir = f"{root}/models/s3als/versions/{version}"
    meta = json.loads(s3.cat_file(f"{vdir}/model.json"))
    assert set(meta["files"]) <= {k.rsplit("/", 1)[1] for k in s3.find(vdir)}
    users = pq.read_table(f"{vdir}/user_factors.parquet", filesystem=arrow)
    items = pq.read_table(f"{vdir}/item_factors.parquet", filesystem=arrow)
    assert users.num_rows == meta["n_users"] == manifest["n_users"]
    assert items.num_rows == meta["n_items"] == manifest["n_items"]
    assert users.schema.field("factors").type.list_size == 8 == meta["rank"]

    # the fit ran on the two Dask workers, which read the partition blocks from S3
    run = f"{root}/runs/{sorted(s3.ls(f'{root}/runs', detail=False))[-1].rsplit('/', 1)[1]}"
    assert json.loads(s3.cat_file(f"{run}/trained.json"))["dask_workers"] == 2
    assert s3.cat_file(f"{run}/learning_curve.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert abs(json.loads(s3.cat_file(f"{run}/metrics.json"))["test"]["rmse"]
               - summary["metrics"]["test"]["rmse"]) < 1e-9

    # recommend reads the tables from S3: the top 10 unseen items by μ + b_u + b_i + p·q
    user_row = 17
    raw_user = users.column("user_id")[user_row].as_py()
    proc = run_cli(["recommend", "--store", STORE, "--model", "s3als", "--user", str(raw_user), "-n", "10",
                    "--min-ratings", "0", "--json"], home, timeout=300, **env)
    assert proc.returncode == 0, proc.stderr
    recs = json.loads(proc.stdout)
    p = np.stack(users.column("factors").to_numpy(zero_copy_only=False))[user_row]
    q = np.stack(items.column("factors").to_numpy(zero_copy_only=False))
    scores = (meta["global_mean"] + users.column("bias").to_numpy()[user_row] + items.column("bias").to_numpy()
              + q @ p)
    seen = pq.read_table(f"{vdir}/seen.parquet", filesystem=arrow)
    seen_items = seen.column("item_idx").to_numpy()[seen.column("user_idx").to_numpy() == user_row]
    assert len(seen_items) > 0
    scores[seen_items] = -np.inf
    top = np.argsort(-scores, kind="stable")[:10]
    item_ids = items.column("item_id").to_numpy()
    assert [r["item"] for r in recs] == item_ids[top].tolist()
    np.testing.assert_allclose([r["score"] for r in recs], scores[top], atol=1e-4)
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)
    assert not set(item_ids[seen_items].tolist()) & {r["item"] for r in recs}


def test_publish_on_s3_is_atomic_and_current_switches(moto, retrained, monkeypatch):
    """Readers never see a half-copied version; a copy killed before model.json leaves no
    version; a complete publish switches CURRENT, and ``factorflow models`` lists them all."""
    from factorflow.storage import fs as fsio
    from factorflow.storage import registry as reg

    endpoint, env = moto
    summary, home = retrained
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("FSSPEC_S3_ENDPOINT_URL", raising=False)
    first = summary["version"]
    model = reg.load_model(STORE, "s3als")
    assert model.version == first

    def publish() -> str:
        return reg.publish(STORE, "s3als", model.factors, model.user_ids, model.item_ids,
                           {"kind": "als", "params": model.model_json["params"]})

    seen_versions: set[str] = set()
    problems: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                for v in reg.list_versions(STORE, "s3als"):
                    reg.load_model(STORE, "s3als", v)  # every listed version loads whole
                    seen_versions.add(v)
            except BaseException as exc:  # noqa: BLE001 - reported below
                problems.append(exc)
                return

    # a publish killed after the data objects were copied, before model.json (the store's s3fs
    # instance of this thread is the one publish uses; its sync methods are instance attributes)
    fs, _ = fsio.open_store(STORE)
    original = fs.cp_file

    def dies_at_the_marker(path1, path2, **kw):
        if path2.endswith("/model.json"):
            raise ConnectionError("killed mid-copy")
        return original(path1, path2, **kw)

    monkeypatch.setattr(fs, "cp_file", dies_at_the_marker)
    with pytest.raises(ConnectionError):
        publish()
    monkeypatch.setattr(fs, "cp_file", original)
    s3 = _s3(endpoint)
    versions_dir = f"{BUCKET}/{PREFIX}/models/s3als/versions"
    orphans = [p for p in s3.ls(versions_dir, detail=False) if not p.endswith(first)]
    assert len(orphans) == 1 and not s3.exists(f"{orphans[0]}/model.json")  # data only, no marker
    assert s3.exists(f"{orphans[0]}/user_factors.parquet")
    assert reg.list_versions(STORE, "s3als") == [first] == [reg.current_version(STORE, "s3als")]

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        second, third = publish(), publish()
    finally:
        stop.set()
        thread.join(timeout=120)
    assert not problems, problems[0]
    assert seen_versions >= {first}
    assert reg.list_versions(STORE, "s3als") == sorted([first, second, third])
    assert reg.current_version(STORE, "s3als") == third
    keys = s3.find(f"{BUCKET}/{PREFIX}")
    assert not [k for k in keys if "/.tmp-" in k]

    # the CLI sees the same, with the endpoint given the fsspec way instead of AWS_ENDPOINT_URL
    fsspec_env = cli_env(home, **KEYS, FSSPEC_S3_ENDPOINT_URL=endpoint)
    fsspec_env.pop("AWS_ENDPOINT_URL", None)
    proc = subprocess.run(CLI + ["models", "s3als", "--store", STORE, "--json"], capture_output=True, text=True,
                          timeout=300, env=fsspec_env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    text = json.dumps(listed)
    assert all(v in text for v in (first, second, third)) and orphans[0].rsplit("/", 1)[1] not in text


def test_missing_bucket_and_refused_credentials_are_one_line(moto, source, tmp_path):
    endpoint, env = moto
    missing = run_cli(["retrain", str(source), "--store", "s3://no-such-bucket/ff", "--rank", "8"],
                      tmp_path / "prefect", timeout=300, **env)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    [line] = error_lines(missing.stderr)
    assert "s3://no-such-bucket/ff" in line and "does not exist" in line and "create it" in line

    _moto_api(endpoint, "reset-auth", b"0")  # from now on moto checks the access key: "testing" is unknown
    try:
        proc = run_cli(["recommend", "--store", STORE, "--model", "s3als", "--user", "1"], tmp_path / "prefect",
                       timeout=300, **env)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        [line] = error_lines(proc.stderr)
        assert STORE in line and "access denied" in line and "AWS_ACCESS_KEY_ID" in line
    finally:
        _moto_api(endpoint, "reset-auth", b"inf")
