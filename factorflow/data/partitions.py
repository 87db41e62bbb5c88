"""Sparse user/item row blocks of a split's train part: the units the Dask ALS sweeps map over.

The train ratings as a users×items CSR (side ``user``) and as its transpose, an items×users
CSR (= CSC by item, side ``item``), are each cut into contiguous row ranges balanced by the
number of ratings (degrees are heavy-tailed, so equal row counts would not balance work).
This module is the maths (:func:`balanced_boundaries`, :func:`default_n_blocks`,
:func:`assemble`); :func:`build_partitions` composes it with the store: the blocks are
written, and read back (``RowBlock``, ``load_block``, ``load_partitions``), by
:mod:`factorflow.storage.partitions`, which also describes the files.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from factorflow.errors import check_param
from factorflow.progress import Progress
from factorflow.storage.partitions import SIDES, find_partitions, write_partitions
from factorflow.storage.splits import train_csr

if TYPE_CHECKING:
    import scipy.sparse as sp

    from factorflow.storage.partitions import PartitionsRef
    from factorflow.storage.splits import SplitRef


def balanced_boundaries(indptr: np.ndarray, n_blocks: int) -> np.ndarray:
    """Row boundaries ``0 = b_0 < b_1 < … < b_P = n_rows`` of P contiguous blocks balanced by nnz.

    ``b_k`` is the row boundary whose cumulative nnz ``indptr[b_k]`` is nearest to ``k·nnz/P``,
    then nudged so no block is empty. Each boundary is then within half a row of its target, so
    every block holds ``nnz/P ± max_row_nnz`` (a row heavier than the mean is its own block, at
    worst). ``P`` is clamped to ``[1, n_rows]``; with no rows the result is ``[0, 0]``.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    n_rows = indptr.size - 1
    check_param(isinstance(n_blocks, (int, np.integer)) and n_blocks >= 1, "n_blocks", n_blocks, "an integer ≥ 1")
    if n_rows <= 0:
        return np.array([0, 0], dtype=np.int64)
    p = int(min(n_blocks, n_rows))
    cum = indptr - indptr[0]
    targets = np.arange(1, p) * (cum[-1] / p)
    hi = np.clip(np.searchsorted(cum, targets, side="left"), 1, n_rows)  # first cum ≥ target
    lo = hi - 1
    inner = np.where(targets - cum[lo] <= cum[hi] - targets, lo, hi)
    k = np.arange(1, p)
    inner = np.clip(inner, k, n_rows - p + k)  # room for ≥1 row per block on each side
    inner = np.maximum.accumulate(inner - k) + k  # strictly increasing, still within the bounds
    return np.concatenate([[0], inner, [n_rows]]).astype(np.int64)


def default_n_blocks(nnz: int) -> int:
    """``max(4, min(64, nnz // 200_000))``: blocks of ≥200k ratings keep per-task overhead small
    next to the solve; at least 4 so even small data exercises the parallel path; at most 64,
    enough to keep a 16–32-core cluster busy with stragglers balanced (MovieLens-20M → 64).
    Independent of the machine, so the same split maps to the same folder everywhere."""
    return int(max(4, min(64, nnz // 200_000)))


def _block_arrays(m: sp.csr_matrix, start: int, stop: int) -> dict[str, np.ndarray]:
    """Rows ``[start, stop)`` of ``m`` as the arrays of a block file; ``indices`` and ``data`` are
    views of ``m`` when it already has the file's dtypes (the writer serializes them at once)."""
    a, b = int(m.indptr[start]), int(m.indptr[stop])
    return {
        "indptr": m.indptr[start : stop + 1].astype(np.int64) - a,
        "indices": np.asarray(m.indices[a:b], dtype=np.int32),
        "data": np.asarray(m.data[a:b], dtype=np.float32),
        "start": np.int64(start),
        "stop": np.int64(stop),
        "n_cols": np.int64(m.shape[1]),
    }


def build_partitions(
    split: SplitRef, n_blocks: int | None = None, progress: Progress | None = None
) -> PartitionsRef:
    """Write (or reuse) ``SPLIT/partitions/pP/``: ``partitions.json`` + ``user_XXX.npz`` + ``item_XXX.npz``.

    ``n_blocks`` defaults to :func:`default_n_blocks`; each side uses ``min(P, its rows)`` blocks.
    """
    if n_blocks is not None:
        check_param(isinstance(n_blocks, int) and n_blocks >= 1, "n_blocks", n_blocks, "an integer ≥ 1")
    nnz_hint = split.manifest.get("n_train")
    by_user = None
    if n_blocks is None:
        if nnz_hint is None:
            by_user = train_csr(split)
            nnz_hint = by_user.nnz
        n_blocks = default_n_blocks(int(nnz_hint))
    existing = find_partitions(split.path, n_blocks)
    if existing is not None:
        return existing
    if by_user is None:
        by_user = train_csr(split)
    return write_csr_partitions(split.path, split.split, by_user, n_blocks, progress)


def write_csr_partitions(split_path: str, split_name: str, by_user: sp.csr_matrix, n_blocks: int,
                         progress: Progress | None = None) -> PartitionsRef:
    """Cut ``by_user`` (users×items, sorted column indices) and its transpose into ``n_blocks``
    nnz-balanced row blocks per side and write them as ``split_path/partitions/pP/``.

    What :func:`build_partitions` does once it has the split's train CSR; also for a benchmark
    that partitions a matrix it made in memory (``split_path`` is then any folder).
    """
    check_param(isinstance(n_blocks, (int, np.integer)) and n_blocks >= 1, "n_blocks", n_blocks, "an integer ≥ 1")
    by_item = by_user.T.tocsr()
    by_item.sort_indices()
    mats = {"user": by_user, "item": by_item}
    bounds = {s: balanced_boundaries(mats[s].indptr, n_blocks) for s in SIDES}
    total = sum(len(b) - 1 for b in bounds.values())
    nnz = int(by_user.nnz)
    manifest: dict[str, Any] = {
        "split": split_name,
        "n_users": int(by_user.shape[0]),
        "n_items": int(by_user.shape[1]),
        "nnz": nnz,
        "n_blocks": int(n_blocks),
        "global_mean": float(by_user.data.astype(np.float64).mean()) if nnz else 0.0,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }

    def blocks() -> Iterator[tuple[str, int, dict[str, np.ndarray]]]:  # cut as they are written
        for side in SIDES:
            m, bnd = mats[side], bounds[side]
            for b in range(len(bnd) - 1):
                yield side, b, _block_arrays(m, int(bnd[b]), int(bnd[b + 1]))

    return write_partitions(split_path, int(n_blocks), manifest, blocks(), total=total, progress=progress)
