"""Fault injection: the work survives killed processes, racing writers and transient I/O.

- a ``dask worker`` process SIGKILLed in the middle of a Dask ALS fit (between sweeps, and
  while it runs block solves): the fit finishes with the factors of an undisturbed fit;
- ``registry.publish`` SIGKILLed at random moments: CURRENT always names a complete version
  whose factors are the ones published, never a half-written one;
- two processes publishing the same model at once: both versions complete, CURRENT one of them;
- a transient ``OSError`` on reading a partition block: retried, same factors; permanent errors
  (a corrupt block) are not retried.

Everything is real: ``dask scheduler``/``dask worker`` subprocesses on 127.0.0.1, publish in
child processes (tests/_publish_child.py), files on disk; the only stand-in is a tiny fsspec
filesystem that fails the first open of one block file.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from _publish_child import SHAPE, ids, make_factors, seen_matrix
from dask_cluster import START_TIMEOUT_S, DaskProcesses, wait_until
from fsspec.implementations.local import LocalFileSystem

DATA = Path(__file__).parent / "data" / "ml-latest-small" / "ratings.csv"
N_SWEEPS = 6
KILL_AFTER_SWEEP = 2
CHILD = Path(__file__).with_name("_publish_child.py")


def _config():
    from factorflow.models.als import ALSConfig

    return ALSConfig(rank=8, reg=0.1, sweeps=N_SWEEPS, weighted=True, seed=3)


def _als():
    from factorflow.models.als import ALS

    return ALS(_config())


def _assert_same_factors(got, want) -> None:
    for attr in ("user_factors", "item_factors", "user_bias", "item_bias"):
        np.testing.assert_allclose(getattr(got, attr), getattr(want, attr), atol=1e-6, err_msg=attr)
    assert got.global_mean == pytest.approx(want.global_mean)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    from factorflow.data.ingest import ingest_source
    from factorflow.data.partitions import build_partitions
    from factorflow.data.splits import make_split

    store = str(tmp_path_factory.mktemp("store"))
    split = make_split(ingest_source(str(DATA), store, "ml"), "random", test_fraction=0.2, seed=1)
    return build_partitions(split, 6)


@pytest.fixture(scope="module")
def reference(parts):
    """The undisturbed fit: same seed, in-process threads, no fault."""
    from distributed import Client, LocalCluster

    from factorflow.parallel.block_driver import fit_blocks

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        factors, history = fit_blocks(client, parts, _als())
    assert len(history) == N_SWEEPS
    return factors


# --- a worker killed mid-fit ---------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_procs(tmp_path_factory):
    procs = DaskProcesses(tmp_path_factory.mktemp("dask"))
    try:
        yield procs
    finally:
        procs.close()


@pytest.fixture
def client(dask_procs):
    """A client of a cluster with exactly two live workers (replacing any killed before)."""
    from distributed import Client

    while len(dask_procs.workers) < 2:
        dask_procs.add_worker()
    with Client(dask_procs.address, timeout=f"{START_TIMEOUT_S}s") as c:
        c.wait_for_workers(2, timeout=START_TIMEOUT_S)
        wait_until(lambda: len(c.scheduler_info()["workers"]) == 2, START_TIMEOUT_S, "exactly 2 workers")
        yield c


def test_worker_killed_between_sweeps(parts, reference, dask_procs, client):
    """SIGKILL one of two workers right after sweep 2 of 6 (the next scatter races the death)."""
    from factorflow.parallel.block_driver import fit_blocks

    victim_address = min(client.scheduler_info()["workers"])
    victim = dask_procs.worker_process(client, victim_address)
    killed = []

    def kill_after_sweep(sweep, factors):
        if sweep == KILL_AFTER_SWEEP:
            dask_procs.kill(victim)
            killed.append(sweep)
        return {}

    factors, history = fit_blocks(client, parts, _als(), callback=kill_after_sweep)
    assert killed == [KILL_AFTER_SWEEP]
    assert victim.returncode == -signal.SIGKILL
    assert victim_address not in client.scheduler_info()["workers"]
    assert len(client.scheduler_info()["workers"]) == 1
    assert [h["sweep"] for h in history] == list(range(1, N_SWEEPS + 1))
    _assert_same_factors(factors, reference)


def test_worker_killed_while_solving(parts, reference, dask_procs, client):
    """SIGKILL a worker while it runs block solves in sweep 3+ (preferring the holder of the
    scattered factors, so the half-sweep may lose them and be re-run)."""
    from distributed import Client

    from factorflow.parallel.block_driver import fit_blocks

    started = threading.Event()
    done = threading.Event()
    kill: dict[str, object] = {}

    def killer() -> None:
        started.wait()
        try:
            with Client(dask_procs.address, timeout=f"{START_TIMEOUT_S}s") as watcher:
                while not done.is_set():
                    busy = {w for w, keys in watcher.processing().items()
                            if any(str(k).startswith("_solve_group-") for k in keys)}
                    if busy:
                        holders = {w for k, who in watcher.who_has().items() if str(k).startswith("tuple-")
                                   for w in who}
                        address = min(busy & holders or busy)
                        victim = dask_procs.worker_process(watcher, address)
                        kill["sweep"] = len(sweeps_done)
                        dask_procs.kill(victim)
                        return
                    time.sleep(0.002)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            kill["error"] = exc

    sweeps_done: list[int] = []

    def on_sweep(sweep, factors):
        sweeps_done.append(sweep)
        if sweep == KILL_AFTER_SWEEP:
            started.set()
        return {}

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        factors, history = fit_blocks(client, parts, _als(), callback=on_sweep)
    finally:
        done.set()
        started.set()
        thread.join(timeout=60)
    assert "error" not in kill, kill
    assert "sweep" in kill, "the fit ended before a worker could be killed mid-sweep"
    assert KILL_AFTER_SWEEP <= kill["sweep"] < N_SWEEPS
    assert len(client.scheduler_info()["workers"]) == 1
    assert [h["sweep"] for h in history] == list(range(1, N_SWEEPS + 1))
    _assert_same_factors(factors, reference)


# --- publish killed at random moments, and racing publishes ---------------------------------


@pytest.fixture
def spawn_child():
    """``spawn(store, name, first_seed, count, go_file)`` starts tests/_publish_child.py, which
    publishes once ``go_file`` exists (see :func:`_wait_ready`); children left are killed after."""
    procs: list[subprocess.Popen] = []
    path = os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")]))

    def spawn(store: str, name: str, first_seed: int, count: int, go_file: Path) -> subprocess.Popen:
        args = [sys.executable, str(CHILD), store, name, str(first_seed), str(count), str(go_file)]
        procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, "PYTHONPATH": path}))
        return procs[-1]

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def _wait_ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()  # blocks until the child has imported and built its data (or died)
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")


def _check_store(store: str, name: str) -> str:
    """CURRENT names a complete version with the factors of its seed; every version is loadable."""
    from factorflow.storage import registry as reg

    current = reg.current_version(store, name)
    model = reg.load_model(store, name)
    assert model.version == current
    _assert_published(model)
    versions = reg.list_versions(store, name)
    assert current in versions
    base = Path(store) / "models" / name / "versions"
    for entry in os.listdir(base):  # anything not marked temporary is a complete version
        assert entry.startswith(".tmp-") or entry in versions, entry
    for v in versions:
        meta = reg.read_model_json(store, name, v)
        assert meta["version"] == v and meta["n_users"] == SHAPE[0]
    return current


def _assert_published(model) -> None:
    want = make_factors(model.model_json["seed"])
    for attr in ("user_factors", "item_factors", "user_bias", "item_bias"):
        np.testing.assert_array_equal(getattr(model.factors, attr), getattr(want, attr), err_msg=attr)
    assert model.factors.global_mean == pytest.approx(want.global_mean)
    assert model.user_ids.to_pylist()[:3] == [0, 7, 14]


def test_publish_killed_at_random_moments(tmp_path, spawn_child):
    from factorflow.storage import registry as reg

    store, name = str(tmp_path / "store"), "als"
    reg.publish(store, name, make_factors(0), *ids(), {"kind": "als", "seed": 0}, seen=seen_matrix())
    current = _check_store(store, name)

    n_kills, span_s = 15, 0.8  # delays stratified over [0, span): every phase of publish gets hit
    delays = (np.arange(n_kills) + np.random.default_rng().random(n_kills)) * span_s / n_kills
    mid_write = 0
    base = Path(store) / "models" / name / "versions"

    def spawn(i: int) -> subprocess.Popen:  # child i publishes seeds 100(i+1), ... until killed
        return spawn_child(store, name, 100 * (i + 1), 1000, tmp_path / f"go-{i}")

    upcoming = [spawn(0), spawn(1)]  # two start up while one publishes: start-up dominates a round
    for i, delay in enumerate(np.random.default_rng().permutation(delays)):
        child = upcoming.pop(0)
        _wait_ready(child)
        if i + 2 < n_kills:
            upcoming.append(spawn(i + 2))
        (tmp_path / f"go-{i}").touch()
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
        out = child.stdout.read()
        child.stdout.close()
        child.stderr.close()
        published = [line.split()[2] for line in out.splitlines() if line.startswith("published")]
        before = current
        current = _check_store(store, name)
        # CURRENT is the previous one or a version of this child: at least its last reported one
        # (versions sort by time; the kill may fall between a switch and its report)
        seed = reg.read_model_json(store, name, current)["seed"]
        assert current == before or 100 * (i + 1) <= seed < 100 * (i + 1) + 1000, (current, seed)
        if published:
            assert current >= published[-1], (current, published)
        mid_write += any(e.startswith(".tmp-") for e in os.listdir(base))
        for e in os.listdir(base):  # start each round clean so the count above means this round
            if e.startswith(".tmp-"):
                shutil.rmtree(base / e)
    assert mid_write >= 1, "no kill landed while a version was being written"
    assert len(reg.list_versions(store, name)) >= 2


def test_racing_publishes(tmp_path, spawn_child):
    from factorflow.storage import registry as reg

    store, name, rounds = str(tmp_path / "store"), "als", 3
    pairs = [[spawn_child(store, name, 10 * rnd + j, 1, tmp_path / f"go-{rnd}") for j in (1, 2)]
             for rnd in range(rounds)]  # all start up at once; each pair publishes on its go file
    for rnd, children in enumerate(pairs):
        for child in children:
            _wait_ready(child)
        (tmp_path / f"go-{rnd}").touch()  # both children poll for it every millisecond
        versions = {}
        for child in children:
            out, err = child.communicate(timeout=START_TIMEOUT_S)
            assert child.returncode == 0, err
            assert "Traceback" not in err
            [line] = [ln for ln in out.splitlines() if ln.startswith("published")]
            _, seed, version = line.split()
            versions[version] = int(seed)
        assert len(versions) == 2
        for version, seed in versions.items():
            model = reg.load_model(store, name, version)
            assert model.model_json["seed"] == seed
            _assert_published(model)
        current = _check_store(store, name)
        assert current in versions
    assert len(reg.list_versions(store, name)) == 2 * rounds
    assert not [e for e in os.listdir(Path(store) / "models" / name) if e.startswith(".tmp-")]


# --- transient I/O while loading partition blocks -------------------------------------------


class FlakyLocalFileSystem(LocalFileSystem):
    """The local filesystem under ``flaky://``, failing the first N opens of chosen files."""

    protocol = ("flaky",)
    failures: ClassVar[dict[str, int]] = {}  # file name -> opens still to fail
    opens: ClassVar[Counter] = Counter()
    errors: ClassVar[dict[str, type[OSError]]] = {}
    _lock = threading.Lock()

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(str(path).removeprefix("flaky://"))

    def unstrip_protocol(self, name: str) -> str:
        return "flaky://" + self._strip_protocol(name)

    def _open(self, path, mode="rb", **kwargs):
        name = posixpath.basename(path)
        with self._lock:
            self.opens[name] += 1
            if self.failures.get(name, 0) > 0:
                self.failures[name] -= 1
                raise self.errors.get(name, OSError)(errno.EIO, "injected I/O error", path)
        return super()._open(path, mode=mode, **kwargs)

    @classmethod
    def reset(cls, **failures: int) -> None:
        cls.failures.clear()
        cls.failures.update(failures)
        cls.opens.clear()
        cls.errors.clear()


@pytest.fixture
def flaky_parts(parts):
    import fsspec

    from factorflow.storage.partitions import PartitionsRef

    fsspec.register_implementation("flaky", FlakyLocalFileSystem, clobber=True)
    FlakyLocalFileSystem.reset()
    yield PartitionsRef("flaky://" + parts.path, parts.manifest)
    FlakyLocalFileSystem.reset()


def _retry_records(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "factorflow.storage.partitions" and "retrying" in r.getMessage()]


def test_transient_block_read_error_is_retried(flaky_parts, reference, caplog):
    from distributed import Client, LocalCluster

    from factorflow.parallel.block_driver import fit_blocks

    FlakyLocalFileSystem.reset(**{"user_001.npz": 1, "item_004.npz": 2})
    with caplog.at_level(logging.WARNING, logger="factorflow.storage.partitions"), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        factors, history = fit_blocks(client, flaky_parts, _als())
    assert FlakyLocalFileSystem.failures == {"user_001.npz": 0, "item_004.npz": 0}  # all injected errors hit
    opens = FlakyLocalFileSystem.opens
    assert opens["user_001.npz"] >= 2 and opens["item_004.npz"] >= 3  # failed (×1, ×2), then read
    retries = _retry_records(caplog)
    assert len(retries) == 3, retries
    assert sum("user block 1 " in m for m in retries) == 1 and sum("item block 4 " in m for m in retries) == 2
    assert len(history) == N_SWEEPS
    _assert_same_factors(factors, reference)


def test_block_read_gives_up_after_bounded_retries(flaky_parts, caplog):
    from factorflow.storage.partitions import LOAD_ATTEMPTS, load_block

    FlakyLocalFileSystem.reset(**{"user_000.npz": 100})
    t0 = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="factorflow.storage.partitions"), \
            pytest.raises(OSError, match="injected I/O error"):
        load_block(flaky_parts.path, "user", 0)
    assert FlakyLocalFileSystem.opens["user_000.npz"] == LOAD_ATTEMPTS
    assert len(_retry_records(caplog)) == LOAD_ATTEMPTS - 1
    assert time.perf_counter() - t0 < 10


def test_user_errors_are_not_retried(flaky_parts, parts, tmp_path, caplog):
    from factorflow.errors import InputError, NotFoundError
    from factorflow.storage.partitions import load_block

    caplog.set_level(logging.WARNING, logger="factorflow.storage.partitions")
    FlakyLocalFileSystem.reset(**{"user_000.npz": 1})
    FlakyLocalFileSystem.errors["user_000.npz"] = PermissionError
    with pytest.raises(PermissionError):
        load_block(flaky_parts.path, "user", 0)
    assert FlakyLocalFileSystem.opens["user_000.npz"] == 1
    with pytest.raises(NotFoundError, match="no user block 99"):
        load_block(flaky_parts.path, "user", 99)

    corrupt = tmp_path / "corrupt"
    shutil.copytree(parts.path, corrupt)
    (corrupt / "item_000.npz").write_bytes(b"not a zip file")
    FlakyLocalFileSystem.reset()
    with pytest.raises((InputError, ValueError)):
        load_block(f"flaky://{corrupt}", "item", 0)
    assert FlakyLocalFileSystem.opens["item_000.npz"] <= 1
    assert _retry_records(caplog) == []
