"""Parquet tables of a published factor model: one row per user / item, plus the train pairs.

``user_factors.parquet``: ``user_id`` (raw id, int64 or string), ``user_idx int32``,
``bias float32``, ``n_ratings int32`` (train count; null when unknown) and ``factors
fixed_size_list<float32>[K]``; rows in ``user_idx`` order. ``item_factors.parquet`` is the
same with ``item_*`` names and an optional ``title string``. ``seen.parquet`` holds the
train pairs ``user_idx int32, item_idx int32`` sorted by (user, item) in small row groups,
so reading one user's items touches only the row groups whose min/max stats cover it.
Any Parquet reader can serve these tables; this module is the one that writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from fsspec import AbstractFileSystem

from factorflow.errors import InputError, ParameterError
from factorflow.storage import parquet as pqio

if TYPE_CHECKING:
    import pyarrow.parquet as pq  # the type of storage.parquet.open_file's result

SEEN_ROW_GROUP = 1 << 16  # 64Ki pairs ≈ 512 KiB raw per row group


def normalize_ids(ids: pa.Array | pa.ChunkedArray, what: str) -> pa.Array:
    """Raw ids as one ``int64`` or ``string`` array; rejects nulls and other types."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if not isinstance(ids, pa.Array):
        ids = pa.array(ids)
    if ids.null_count:
        raise ParameterError(f"{what}: {ids.null_count} null ids; every raw id must be present")
    if pa.types.is_integer(ids.type):
        return ids.cast(pa.int64())
    if pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type):
        return ids.cast(pa.string())
    raise ParameterError(f"{what}: type {ids.type} is not supported; raw ids must be integers or strings")


def factors_column(factors: np.ndarray) -> pa.FixedSizeListArray:
    """An (n, K) array as a ``fixed_size_list<float32>[K]`` column (no copy beyond the cast)."""
    f = np.ascontiguousarray(factors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(f.reshape(-1)), int(f.shape[1]))


def factor_table(side: str, ids: pa.Array, bias: np.ndarray, factors: np.ndarray,
                 n_ratings: np.ndarray | None = None, titles: pa.Array | None = None) -> pa.Table:
    """The published table of one side (``side`` is ``"user"`` or ``"item"``)."""
    n = len(ids)
    counts = (pa.nulls(n, pa.int32()) if n_ratings is None
              else pa.array(np.asarray(n_ratings, dtype=np.int32)))
    cols = {
        f"{side}_id": ids,
        f"{side}_idx": pa.array(np.arange(n, dtype=np.int32)),
        "bias": pa.array(np.asarray(bias, dtype=np.float32)),
        "n_ratings": counts,
    }
    if factors.shape[1] > 0:  # a rank-0 model (the bias baselines) has no factors column
        cols["factors"] = factors_column(factors)
    if titles is not None:
        cols["title"] = titles.cast(pa.string())
    return pa.table(cols)


@dataclass
class SideTable:
    """One side read back: arrays in dense index order."""

    ids: pa.Array
    bias: np.ndarray  # float32 (n,)
    factors: np.ndarray  # float32 (n, K)
    n_ratings: np.ndarray | None  # int32 (n,), None when not recorded
    titles: pa.Array | None


def read_factor_table(fs: AbstractFileSystem, path: str, side: str) -> SideTable:
    """Read ``user_factors.parquet`` / ``item_factors.parquet`` into dense arrays."""
    try:
        table = pqio.read_table(fs, path)
    except FileNotFoundError as exc:
        raise InputError(f"{path}: missing; the model version is incomplete") from exc
    idx = table.column(f"{side}_idx").to_numpy()
    if not np.array_equal(idx, np.arange(len(idx))):
        order = np.argsort(idx, kind="stable")
        if not np.array_equal(idx[order], np.arange(len(idx))):
            raise InputError(f"{path}: {side}_idx is not a permutation of 0..{len(idx) - 1}")
        table = table.take(pa.array(order))
    if "factors" in table.column_names:
        col = table.column("factors").combine_chunks()
        flat = col.flatten().to_numpy(zero_copy_only=False)
        factors = np.asarray(flat, dtype=np.float32).reshape(len(table), col.type.list_size)
    else:  # rank 0: prediction is μ + b + c
        factors = np.zeros((len(table), 0), dtype=np.float32)
    counts_col = table.column("n_ratings")
    counts = None if counts_col.null_count == len(table) and len(table) else (
        counts_col.fill_null(0).to_numpy().astype(np.int32))
    titles = table.column("title").combine_chunks() if "title" in table.column_names else None
    return SideTable(
        ids=table.column(f"{side}_id").combine_chunks(),
        bias=table.column("bias").to_numpy().astype(np.float32),
        factors=factors,
        n_ratings=counts,
        titles=titles,
    )


def seen_table(seen: sp.spmatrix) -> pa.Table:
    """Train pairs of a users×items matrix, sorted by (user_idx, item_idx)."""
    csr = sp.csr_matrix(seen)
    csr.sort_indices()
    users = np.repeat(np.arange(csr.shape[0], dtype=np.int32), np.diff(csr.indptr))
    return pa.table({"user_idx": pa.array(users), "item_idx": pa.array(csr.indices.astype(np.int32))})


def write_seen(fs: AbstractFileSystem, path: str, seen: sp.spmatrix,
               row_group_size: int = SEEN_ROW_GROUP) -> None:
    """Write ``seen.parquet`` in row groups of ``row_group_size`` pairs (with min/max stats)."""
    pqio.write_table(fs, path, seen_table(seen), row_group_size=row_group_size, write_statistics=True)


def read_seen_user(fs: AbstractFileSystem, path: str, user_idx: int) -> np.ndarray:
    """The sorted train items of one user, reading only the row groups that can hold it."""
    pf = pqio.open_file(fs, path)
    groups = _groups_for(pf, int(user_idx))
    if not groups:
        return np.zeros(0, dtype=np.int32)
    t = pqio.read_row_groups(pf, path, groups, columns=["user_idx", "item_idx"])
    users = t.column("user_idx").to_numpy()
    items = t.column("item_idx").to_numpy()
    return np.sort(items[users == user_idx]).astype(np.int32)


def _groups_for(pf: pq.ParquetFile, user_idx: int) -> list[int]:
    md = pf.metadata
    col = md.schema.to_arrow_schema().get_field_index("user_idx")
    out = []
    for g in range(md.num_row_groups):
        stats = md.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max:
            out.append(g)
        elif stats.min <= user_idx <= stats.max:
            out.append(g)
    return out


def read_seen(fs: AbstractFileSystem, path: str, shape: tuple[int, int]) -> sp.csr_matrix:
    """All train pairs as a users×items CSR of ones (for batch recommendations)."""
    t = pqio.read_table(fs, path, columns=["user_idx", "item_idx"])
    u = t.column("user_idx").to_numpy()
    i = t.column("item_idx").to_numpy()
    m = sp.csr_matrix((np.ones(len(u), dtype=np.float32), (u, i)), shape=shape)
    m.sort_indices()
    return m
