"""Shared test data: ml-latest-small as arrays with the seeded random 80/20 split of the benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

ML_SMALL = Path(__file__).parent / "data" / "ml-latest-small" / "ratings.csv"


@pytest.fixture(scope="session")
def ml_small_split():
    """``(train_csr, test_users, test_items, test_ratings)``: dense ids over the whole file, test =
    ``default_rng(0).permutation(n)[:round(0.2 n)]`` (the protocol of benchmarks/als_tuning.py)."""
    import pandas as pd

    df = pd.read_csv(ML_SMALL)
    u = np.unique(df["userId"], return_inverse=True)[1]
    i = np.unique(df["movieId"], return_inverse=True)[1]
    r = df["rating"].to_numpy(np.float32)
    test = np.zeros(len(df), bool)
    test[np.random.default_rng(0).permutation(len(df))[: round(0.2 * len(df))]] = True
    train = sp.csr_matrix((r[~test], (u[~test], i[~test])), shape=(u.max() + 1, i.max() + 1))
    return train, u[test], i[test], r[test]


@pytest.fixture(scope="module")
def shared_prefect_api():
    """This module's flows report to the session's shared Prefect server (``cli_env.shared_server``)."""
    from cli_env import shared_server
    from prefect_server import use_server

    server = shared_server()
    with use_server(server):
        yield server


def pytest_sessionfinish(session, exitstatus):
    """Stop the Prefect server the session's CLI runs shared (if one was started)."""
    from cli_env import stop_shared_server

    stop_shared_server()
