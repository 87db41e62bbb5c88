"""Dask driver for biased ALS over partition blocks.

Per half-sweep it maps the pure kernel :func:`factorflow.models.als.solve_block` over the
row blocks of one side, with the other side's factors broadcast once, and gathers the new
factors on the driver — so the task graph holds P tasks per half-sweep and never grows
with the number of sweeps. Blocks are loaded once onto the workers and stay there across
sweeps. Each row's solve is independent of the blocking, so the result equals the serial
:class:`factorflow.models.als.ALS` (same seed ⇒ same factors, any worker or block count).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from distributed import Client, Future, wait

from ..models.als import ALSConfig, init_factors, penalty, solve_block, sweep_message
from ..models.base import FactorArrays
from ..partitions import PartitionsRef, RowBlock, load_block
from ..progress import Progress, report


def _solve(block: RowBlock, other: tuple[np.ndarray, np.ndarray], mu: float,
           cfg: ALSConfig) -> tuple[int, int, np.ndarray, np.ndarray, float, float]:
    """Kernel call on one block; also returns the block's share of the regularization term."""
    factors, bias, sse = solve_block(
        block.indptr, block.indices, block.data, other[0], other[1], mu, cfg.reg, cfg.weighted, cfg.reg_bias
    )
    reg_term = penalty(factors, bias, np.diff(block.indptr), cfg.reg, cfg.weighted, cfg.reg_bias)
    return block.start, block.stop, factors, bias, float(sse), reg_term


def _load_blocks(client: Client, parts: PartitionsRef, side: str) -> list[Future]:
    n_blocks = len(parts.manifest[side])
    return [
        client.submit(load_block, parts.path, side, b, pure=False)
        for b in range(n_blocks)
    ]


def _half_sweep(client: Client, blocks: list[Future], other: tuple[np.ndarray, np.ndarray],
                out_factors: np.ndarray, out_bias: np.ndarray, mu: float, cfg: ALSConfig) -> tuple[float, float]:
    """Solve one side in place; returns (sse after the update, that side's regularization term)."""
    [other_f] = client.scatter([other], broadcast=True, hash=False)
    futures = [client.submit(_solve, blk, other_f, mu, cfg, pure=False) for blk in blocks]
    sse = reg_total = 0.0
    for start, stop, factors, bias, block_sse, block_reg in client.gather(futures):
        out_factors[start:stop] = factors
        out_bias[start:stop] = bias
        sse += block_sse
        reg_total += block_reg
    client.cancel([other_f, *futures])
    return sse, reg_total


def fit_als_dask(
    client: Client,
    parts: PartitionsRef,
    config: ALSConfig,
    *,
    callback: Callable[[int, FactorArrays], dict[str, Any]] | None = None,
    progress: Progress | None = None,
) -> tuple[FactorArrays, list[dict[str, Any]]]:
    """Fit biased ALS on the partitions at ``parts``; returns the factors and a per-sweep history.

    History rows: sweep, train_rmse (after the item half-sweep), objective, seconds, plus
    whatever ``callback(sweep, factors)`` returns (e.g. test RMSE for the learning curve).
    """
    m = parts.manifest
    n_users, n_items, nnz, mu = int(m["n_users"]), int(m["n_items"]), int(m["nnz"]), float(m["global_mean"])
    W, b, U, c = init_factors(config, n_users, n_items)
    user_blocks = _load_blocks(client, parts, "user")
    item_blocks = _load_blocks(client, parts, "item")
    wait(user_blocks + item_blocks)
    history: list[dict[str, Any]] = []
    try:
        for sweep in range(1, config.sweeps + 1):
            t0 = time.perf_counter()
            _, user_penalty = _half_sweep(client, user_blocks, (U, c), W, b, mu, config)
            sse, item_penalty = _half_sweep(client, item_blocks, (W, b), U, c, mu, config)
            factors = FactorArrays(W.copy(), U.copy(), b.copy(), c.copy(), mu)
            row: dict[str, Any] = {
                "sweep": sweep,
                "train_rmse": float(np.sqrt(sse / max(nnz, 1))),
                "objective": sse + user_penalty + item_penalty,
                "seconds": time.perf_counter() - t0,
            }
            if callback is not None:
                row.update(callback(sweep, factors))
            history.append(row)
            report(progress, sweep, config.sweeps, sweep_message(row))
    finally:
        client.cancel(user_blocks + item_blocks)
    return FactorArrays(W, U, b, c, mu), history

