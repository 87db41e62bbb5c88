"""Child process of tests/test_faults.py: publish versions of a model until done (or killed).

    python tests/_publish_child.py STORE NAME FIRST_SEED COUNT [GO_FILE]

Prints ``ready`` once its data is built, waits for GO_FILE to exist (when given), then
publishes COUNT versions with the factors of ``make_factors(seed)`` for seed = FIRST_SEED, …,
each with ``model.json`` ``{"kind": "als", "seed": seed}``, printing ``published SEED VERSION``
after each. Kept free of pytest so a child starts quickly.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

SHAPE = (20_000, 4_000, 32)  # users, items, rank: ~0.2 s per publish


def make_factors(seed: int):
    """The factors published for ``seed`` (the test recomputes them to compare)."""
    from factorflow.factors import FactorArrays

    n_users, n_items, k = SHAPE
    rng = np.random.default_rng(seed)
    return FactorArrays(
        user_factors=rng.normal(size=(n_users, k)).astype(np.float32),
        item_factors=rng.normal(size=(n_items, k)).astype(np.float32),
        user_bias=rng.normal(size=n_users).astype(np.float32),
        item_bias=rng.normal(size=n_items).astype(np.float32),
        global_mean=3.5 + seed / 1000,
    )


def ids():
    """Raw user and item ids of the published tables."""
    import pyarrow as pa

    n_users, n_items, _ = SHAPE
    return pa.array(np.arange(n_users) * 7), pa.array(np.arange(n_items) + 100)


def seen_matrix():
    """20 train items per user (fixed), so ``seen.parquet`` is written too."""
    import scipy.sparse as sp

    n_users, n_items, _ = SHAPE
    rows = np.repeat(np.arange(n_users), 20)
    cols = np.random.default_rng(12345).integers(0, n_items, rows.size)
    return sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_users, n_items))


def main(argv: list[str]) -> int:
    from factorflow.storage import registry as reg

    store, name, first_seed, count = argv[0], argv[1], int(argv[2]), int(argv[3])
    go_file = argv[4] if len(argv) > 4 and argv[4] else None
    users, items = ids()
    seen = seen_matrix()
    first = make_factors(first_seed)
    print("ready", flush=True)
    if go_file:
        while not os.path.exists(go_file):
            time.sleep(0.001)
    for seed in range(first_seed, first_seed + count):
        factors = first if seed == first_seed else make_factors(seed)
        version = reg.publish(store, name, factors, users, items, {"kind": "als", "seed": seed}, seen=seen)
        print(f"published {seed} {version}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
