"""Dask driver for biased ALS over partition blocks.

Per half-sweep it maps the pure kernel :func:`factorflow.models.als.solve_block` over the
row blocks of one side, with the other side's factors scattered once (to one worker; the
others fetch it from there when their first block needs it), and gathers the new factors on
the driver — so the task graph holds P tasks per half-sweep and never grows
with the number of sweeps. Blocks are loaded once onto the workers and stay there across
sweeps. Each row's solve is independent of the blocking, so the result equals the serial
:class:`factorflow.models.als.ALS` (same seed ⇒ same factors, any worker or block count).

Losing a worker mid-fit (killed, out of memory, network) costs time, never data or results:

- blocks are loaded by tasks (``load_block`` futures, not scattered data), so the scheduler
  recomputes the blocks a dead worker held from their graph on a surviving worker;
- the other side's factors are scattered data, which the scheduler cannot recompute. If the
  scatter fails because its worker died (``CommClosedError``), or every holder dies so the
  block solves are cancelled ("lost dependencies"), the half-sweep is re-run from the driver's
  copy: re-scatter, re-submit. A half-sweep is a pure function of (blocks, other side), so the
  re-run gives the same factors. At most :data:`HALF_SWEEP_ATTEMPTS` tries per half-sweep,
  waiting for a worker between them.

The scatter is deliberately not ``broadcast=True``: the scheduler's replicate step behind it
keeps retrying a worker that died during it and never returns (distributed 2026.8), which
turned one lost worker into a hung fit.

Errors raised by the tasks themselves (a bad block file, a kernel error) are not retried here;
transient I/O while loading a block is retried inside :func:`factorflow.data.partitions.load_block`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import Any

import numpy as np
from distributed import Client, Future, wait

from factorflow.models.als import ALSConfig, init_factors, penalty, solve_block, sweep_message
from factorflow.factors import FactorArrays
from factorflow.data.partitions import PartitionsRef, RowBlock, load_block
from factorflow.progress import Progress, report

log = logging.getLogger(__name__)

#: Tries per half-sweep when workers are lost during it (the first try included).
HALF_SWEEP_ATTEMPTS = 4
#: Seconds to wait for at least one worker before re-running a half-sweep.
WORKER_WAIT_S = 120.0


class _WorkerLost(Exception):
    """A half-sweep lost its scattered factors or its connection to a worker; it can be re-run."""


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
    """Solve one side in place; returns (sse after the update, that side's regularization term).

    Re-run (up to :data:`HALF_SWEEP_ATTEMPTS` tries) when a lost worker takes the scattered
    factors with it; ``out_*`` are written only from a complete gather.
    """
    for attempt in range(1, HALF_SWEEP_ATTEMPTS + 1):
        try:
            return _half_sweep_once(client, blocks, other, out_factors, out_bias, mu, cfg)
        except _WorkerLost as exc:
            if attempt == HALF_SWEEP_ATTEMPTS:
                raise exc.__cause__ from None
            log.warning("ALS half-sweep lost a worker (%s); re-running it (try %d of %d)",
                        exc, attempt + 1, HALF_SWEEP_ATTEMPTS)
            time.sleep(0.2 * attempt)
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    raise AssertionError("unreachable")


def _half_sweep_once(client: Client, blocks: list[Future], other: tuple[np.ndarray, np.ndarray],
                     out_factors: np.ndarray, out_bias: np.ndarray, mu: float,
                     cfg: ALSConfig) -> tuple[float, float]:
    try:
        [other_f] = client.scatter([other], hash=False)
    except OSError as exc:  # CommClosedError: the worker it went to died
        raise _WorkerLost(f"scatter failed: {type(exc).__name__}: {exc}") from exc
    futures = [client.submit(_solve, blk, other_f, mu, cfg, pure=False) for blk in blocks]
    try:
        results = client.gather(futures)
    except CancelledError as exc:  # every holder of the scattered factors died: dependents cancelled
        raise _WorkerLost(f"{type(exc).__name__}: {exc}") from exc
    finally:
        client.cancel([other_f, *futures])
    sse = reg_total = 0.0
    for start, stop, factors, bias, block_sse, block_reg in results:
        out_factors[start:stop] = factors
        out_bias[start:stop] = bias
        sse += block_sse
        reg_total += block_reg
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

