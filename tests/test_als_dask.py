"""The Dask ALS driver equals the serial ALS, whatever the worker and block counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from factorflow.models.als import ALS, ALSConfig

DATA = Path(__file__).parent / "data" / "ml-latest-small" / "ratings.csv"
CONFIG = ALSConfig(rank=8, reg=0.1, sweeps=3, weighted=True, seed=3)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    from factorflow.data.ingest import ingest_source
    from factorflow.data.splits import make_split

    store = str(tmp_path_factory.mktemp("store"))
    return make_split(ingest_source(str(DATA), store, "ml"), "random", test_fraction=0.2, seed=1)


@pytest.fixture(scope="module")
def serial(split):
    from factorflow.storage.splits import train_csr

    return ALS(CONFIG).fit(train_csr(split))


@pytest.mark.parametrize("n_workers,n_blocks", [(1, 4), (2, 7), (None, 7)])
def test_dask_matches_serial(split, serial, n_workers, n_blocks):
    """Single-threaded worker processes, and the default LocalCluster: one process whose threads
    (one per core) solve blocks side by side."""
    from factorflow.data.partitions import build_partitions
    from factorflow.parallel.block_driver import fit_blocks
    from factorflow.parallel.cluster import dask_client, default_threads

    parts = build_partitions(split, n_blocks)
    with dask_client(n_workers=n_workers) as client:
        workers = client.scheduler_info()["workers"].values()
        assert [w["nthreads"] for w in workers] == ([1] * n_workers if n_workers else [default_threads()])
        factors, history = fit_blocks(client, parts, ALS(CONFIG))
    want = serial.factors()
    np.testing.assert_allclose(factors.user_factors, want.user_factors, atol=1e-6)
    np.testing.assert_allclose(factors.item_factors, want.item_factors, atol=1e-6)
    np.testing.assert_allclose(factors.user_bias, want.user_bias, atol=1e-6)
    np.testing.assert_allclose(factors.item_bias, want.item_bias, atol=1e-6)
    assert factors.global_mean == pytest.approx(want.global_mean)
    assert [h["sweep"] for h in history] == [1, 2, 3]
    np.testing.assert_allclose([h["train_rmse"] for h in history],
                               [h["train_rmse"] for h in serial.history], rtol=1e-6)
    objectives = [h["objective"] for h in history]
    assert all(b <= a * (1 + 1e-9) for a, b in zip(objectives[:-1], objectives[1:], strict=True))


def test_unreachable_scheduler_is_one_line_error():
    from factorflow.errors import ParameterError
    from factorflow.parallel.cluster import dask_client

    with pytest.raises(ParameterError, match="--dask-address='tcp://127.0.0.1:9'"):
        with dask_client("tcp://127.0.0.1:9"):
            pass
