"""The Dask driver: maps a model's block kernel over resident partition blocks.

Any model with the :class:`~factorflow.models.base.BlockAlternating` capability (ALS now) is
fitted here by the shared loop :func:`factorflow.models.loop.fit_alternating`; this module only
supplies its ``solve_side``. Blocks are loaded once onto the workers, dealt round-robin over
their threads, and stay there across steps. Per half-step the other side's factors are
scattered once (to one worker; the others fetch it from there), and each worker gets one task
that runs the model's pure kernel ``solve_rows`` over the blocks it holds — its share of the
host's cores solving that many blocks at once, one numba thread each — and the new factors are
gathered on the driver. So no block moves, the driver handles one result per worker, and the
task graph never grows with the number of steps. (One task per block cost 1.5–2.7× the
in-process sweep at rank 10: the driver and scheduler spent a core on 64 results per
half-step, and work stealing moved blocks between workers.) The model's ``half_step_context``
(e.g. a hyper-parameter draw) travels with the scatter. Each row's solve is independent of the
blocking, so the result equals the model's serial ``fit`` (same seed ⇒ same factors, any
worker or block count).

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
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from distributed import Client, Future, wait

from factorflow.factors import FactorArrays
from factorflow.models.base import BlockAlternating, StepCallback
from factorflow.models.loop import fit_alternating
from factorflow.progress import Progress
from factorflow.storage.partitions import PartitionsRef, RowBlock, load_block
from factorflow.threads import cores, numba_threads

log = logging.getLogger(__name__)

#: Tries per half-step when workers are lost during it (the first try included).
HALF_SWEEP_ATTEMPTS = 4
#: Seconds to wait for at least one worker before re-running a half-step.
WORKER_WAIT_S = 120.0

Solved = tuple[np.ndarray, np.ndarray, float, float, tuple[np.ndarray, ...] | None]


class _WorkerLost(Exception):
    """A half-step lost its scattered factors or its connection to a worker; it can be re-run."""


def _solve(block: RowBlock, shared: tuple[tuple[np.ndarray, np.ndarray], Any], mu: float,
           model: BlockAlternating, threads: int) -> tuple[Any, ...]:
    """The model's kernel on one block with ``threads`` numba threads, tagged with the block's row
    range (and its optional per-row extra arrays)."""
    other, context = shared
    with numba_threads(threads):
        factors, bias, sse, penalty, *extra = model.solve_rows(block.indptr, block.indices, block.data, other,
                                                               mu, context, block.start)
    return block.start, block.stop, factors, bias, float(sse), float(penalty), (extra[0] if extra else None)


def _solve_group(blocks: list[RowBlock], shared: tuple[tuple[np.ndarray, np.ndarray], Any], mu: float,
                 model: BlockAlternating, host_threads: dict[str, int]) -> list[tuple[Any, ...]]:
    """The kernel on every block this worker holds. The worker's share of its host's cores
    (cores × its threads ÷ all worker threads on the host) solves that many blocks at once, one
    numba thread each (the kernels release the GIL): the workers together use every core, never
    oversubscribe it, and no core idles at the end of a block waiting for the other's rows."""
    from distributed import get_worker

    state = get_worker().state
    mine = state.nthreads
    # its share of the host's cores, split between the tasks running on it now (concurrent fits)
    threads = max(1, cores() * mine // max(mine, _threads_on_my_host(host_threads)) // max(1, state.executing_count))
    if len(blocks) == 1:  # the whole share inside the one block
        return [_solve(blocks[0], shared, mu, model, threads)]
    if threads == 1:
        return [_solve(block, shared, mu, model, 1) for block in blocks]
    with ThreadPoolExecutor(min(threads, len(blocks)), thread_name_prefix="factorflow-block") as pool:
        return list(pool.map(lambda block: _solve(block, shared, mu, model, 1), blocks))


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
    """One ``load_block`` task per block, dealt round-robin over the workers' threads (blocks are
    balanced by ratings, so each worker holds work in proportion to its threads). The placement
    is a preference: a block whose worker is gone is loaded again on another one."""
    slots = [addr for addr, w in sorted(client.scheduler_info(n_workers=-1)["workers"].items())
             for _ in range(max(1, int(w.get("nthreads", 1))))]
    return [client.submit(_load_resident, parts.path, side, b, pure=False,
                          **_prefer(slots[b % len(slots)] if slots else None))
            for b in range(len(parts.manifest[side]))]


def _prefer(worker: str | None) -> dict[str, Any]:
    """``submit`` options that prefer ``worker`` (any worker when it is gone or None)."""
    return {"workers": [worker], "allow_other_workers": True} if worker else {}


def _by_holder(client: Client, blocks: list[Future]) -> dict[str | None, list[Future]]:
    """The block futures grouped by the worker holding each (None: held by none right now, e.g.
    being loaded again after its worker died)."""
    who = client.who_has(blocks)
    groups: dict[str | None, list[Future]] = {}
    for f in blocks:
        holders = sorted(who.get(f.key) or ())
        groups.setdefault(holders[0] if holders else None, []).append(f)
    return groups


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
    # One task per worker over the blocks it holds: no block moves, and the driver handles a few
    # results per half-step instead of one per block.
    futures = [client.submit(_solve_group, group, other_f, mu, model, host_threads, pure=False, **_prefer(holder))
               for holder, group in _by_holder(client, blocks).items()]
    try:
        results = [r for group in client.gather(futures) for r in group]
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
