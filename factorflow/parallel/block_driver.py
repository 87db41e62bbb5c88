"""The Dask driver: maps a model's block kernel over resident partition blocks.

Any model with the :class:`~factorflow.models.base.BlockAlternating` capability (ALS now) is
fitted here by the shared loop :func:`factorflow.models.loop.fit_alternating`; this module only
supplies its ``solve_side``. Per half-step it maps the model's pure kernel ``solve_rows`` over
the row blocks of one side, with the other side's factors scattered once (to one worker; the
others fetch it from there when their first block needs it), and gathers the new factors on
the driver — so the task graph holds P tasks per half-step and never grows with the number of
steps. The model's ``half_step_context`` (e.g. a hyper-parameter draw) travels with the
scatter. Blocks are loaded once onto the workers and stay there across steps. Each row's solve
is independent of the blocking, so the result equals the model's serial ``fit`` (same seed ⇒
same factors, any worker or block count).

Losing a worker mid-fit (killed, out of memory, network) costs time, never data or results:

- blocks are loaded by tasks (``load_block`` futures, not scattered data), so the scheduler
  recomputes the blocks a dead worker held from their graph on a surviving worker;
- the other side's factors are scattered data, which the scheduler cannot recompute. If the
  scatter fails because its worker died (``CommClosedError``), or every holder dies so the
  block solves are cancelled ("lost dependencies"), the half-step is re-run from the driver's
  copy: re-scatter, re-submit. A half-step is a pure function of (blocks, other side), so the
  re-run gives the same factors. At most :data:`HALF_SWEEP_ATTEMPTS` tries per half-step,
  waiting for a worker between them.

The scatter is deliberately not ``broadcast=True``: the scheduler's replicate step behind it
keeps retrying a worker that died during it and never returns (distributed 2026.8), which
turned one lost worker into a hung fit.

Errors raised by the tasks themselves (a bad block file, a kernel error) are not retried here;
transient I/O while loading a block is retried inside ``load_block``.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import CancelledError
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from distributed import Client, Future, wait

from factorflow.factors import FactorArrays
from factorflow.models.base import BlockAlternating, StepCallback
from factorflow.models.loop import fit_alternating
from factorflow.progress import Progress
from factorflow.storage.partitions import PartitionsRef, RowBlock, load_block
from factorflow.threads import numba_threads, share_of_cores

log = logging.getLogger(__name__)

#: Tries per half-step when workers are lost during it (the first try included).
HALF_SWEEP_ATTEMPTS = 4
#: Seconds to wait for at least one worker before re-running a half-step.
WORKER_WAIT_S = 120.0

Solved = tuple[np.ndarray, np.ndarray, float, float, tuple[np.ndarray, ...] | None]


class _WorkerLost(Exception):
    """A half-step lost its scattered factors or its connection to a worker; it can be re-run."""


def _solve(block: RowBlock, shared: tuple[tuple[np.ndarray, np.ndarray], Any], mu: float,
           model: BlockAlternating, host_threads: dict[str, int]) -> tuple[Any, ...]:
    """The model's kernel on one block, tagged with the block's row range (and its optional
    per-row extra arrays). It runs with this worker's share of the host's cores as numba threads
    (cores ÷ worker threads on the host), so the workers together never oversubscribe it."""
    other, context = shared
    with numba_threads(share_of_cores(_threads_on_my_host(host_threads))):
        factors, bias, sse, penalty, *extra = model.solve_rows(block.indptr, block.indices, block.data, other,
                                                               mu, context, block.start)
    return block.start, block.stop, factors, bias, float(sse), float(penalty), (extra[0] if extra else None)


def _threads_on_my_host(host_threads: dict[str, int]) -> int:
    """Worker threads on the host of the worker running this task (from the driver's census)."""
    from distributed import get_worker

    worker = get_worker()
    host = urlsplit(worker.address).hostname or ""
    return host_threads.get(host) or worker.state.nthreads


def host_thread_census(client: Client) -> dict[str, int]:
    """Worker threads per host of the cluster, e.g. {"127.0.0.1": 2} for a 2-worker LocalCluster."""
    census: dict[str, int] = {}
    for w in client.scheduler_info(n_workers=-1)["workers"].values():
        census[w["host"]] = census.get(w["host"], 0) + int(w["nthreads"])
    return census


def _load_resident(path: str, side: str, b: int) -> RowBlock:
    """:func:`load_block`, its arrays made writable once here (read from bytes they are not, and
    the kernel would otherwise copy them every half-step to keep one compiled signature)."""
    block = load_block(path, side, b)
    for name in ("indptr", "indices", "data"):
        a = getattr(block, name)
        if not a.flags.writeable:
            setattr(block, name, a.copy())
    return block


def _load_blocks(client: Client, parts: PartitionsRef, side: str) -> list[Future]:
    return [client.submit(_load_resident, parts.path, side, b, pure=False) for b in range(len(parts.manifest[side]))]


def _half_step(client: Client, blocks: list[Future], other: tuple[np.ndarray, np.ndarray], context: Any,
               n_rows: int, mu: float, model: BlockAlternating, host_threads: dict[str, int]) -> Solved:
    """Solve every row of one side; re-run (up to :data:`HALF_SWEEP_ATTEMPTS` tries) when a lost
    worker takes the scattered factors with it."""
    for attempt in range(1, HALF_SWEEP_ATTEMPTS + 1):
        try:
            return _half_step_once(client, blocks, other, context, n_rows, mu, model,
                                   host_threads or host_thread_census(client))
        except _WorkerLost as exc:
            if attempt == HALF_SWEEP_ATTEMPTS:
                raise exc.__cause__ from None
            log.warning("half-sweep lost a worker (%s); re-running it (try %d of %d)",
                        exc, attempt + 1, HALF_SWEEP_ATTEMPTS)
            time.sleep(0.2 * attempt)
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
            host_threads = {}  # re-counted: the cluster changed
    raise AssertionError("unreachable")


def _half_step_once(client: Client, blocks: list[Future], other: tuple[np.ndarray, np.ndarray], context: Any,
                    n_rows: int, mu: float, model: BlockAlternating, host_threads: dict[str, int]) -> Solved:
    try:
        [other_f] = client.scatter([(other, context)], hash=False)
    except OSError as exc:  # CommClosedError: the worker it went to died
        raise _WorkerLost(f"scatter failed: {type(exc).__name__}: {exc}") from exc
    futures = [client.submit(_solve, blk, other_f, mu, model, host_threads, pure=False) for blk in blocks]
    try:
        results = client.gather(futures)
    except CancelledError as exc:  # every holder of the scattered factors died: dependents cancelled
        raise _WorkerLost(f"{type(exc).__name__}: {exc}") from exc
    finally:
        client.cancel([other_f, *futures])
    k, dtype = other[0].shape[1], results[0][2].dtype if results else other[0].dtype
    factors, bias = np.empty((n_rows, k), dtype=dtype), np.empty(n_rows, dtype=dtype)
    sse = penalty = 0.0
    first_extra = results[0][6] if results else None
    extra = None if first_extra is None else tuple(
        np.empty((n_rows, *a.shape[1:]), dtype=a.dtype) for a in first_extra)
    for start, stop, block_f, block_b, block_sse, block_penalty, block_extra in results:
        factors[start:stop] = block_f
        bias[start:stop] = block_b
        sse += block_sse
        penalty += block_penalty
        if extra is not None:
            for whole, part in zip(extra, block_extra, strict=True):
                whole[start:stop] = part
    return factors, bias, sse, penalty, extra


def fit_blocks(client: Client, parts: PartitionsRef, model: BlockAlternating, *,
               callback: StepCallback | None = None,
               progress: Progress | None = None) -> tuple[FactorArrays, list[dict[str, Any]]]:
    """Fit ``model`` on the partitions at ``parts``; returns the factors and the per-step history
    (also handed to ``model.set_fitted``, so ``model.factors()`` works afterwards).

    History rows are those of :func:`factorflow.models.loop.fit_alternating` (step, train_rmse,
    objective, seconds, plus what ``callback(step, factors)`` returns).
    """
    m = parts.manifest
    n_users, n_items, nnz, mu = int(m["n_users"]), int(m["n_items"]), int(m["nnz"]), float(m["global_mean"])
    blocks = {"user": _load_blocks(client, parts, "user"), "item": _load_blocks(client, parts, "item")}
    rows = {"user": n_users, "item": n_items}
    wait(blocks["user"] + blocks["item"])
    census = host_thread_census(client)
    try:
        factors, history = fit_alternating(
            model, lambda side, other, context: _half_step(client, blocks[side], other, context, rows[side], mu, model,
                                                           census),
            n_users, n_items, nnz, mu, callback=callback, progress=progress)
    finally:
        client.cancel(blocks["user"] + blocks["item"])
    model.set_fitted(factors, history)
    return factors, history
