"""Sparse user/item row blocks of a split's train part: the units the Dask ALS sweeps map over.

The train ratings as a users×items CSR (side ``user``) and as its transpose, an items×users
CSR (= CSC by item, side ``item``), are each cut into contiguous row ranges balanced by the
number of ratings (degrees are heavy-tailed, so equal row counts would not balance work).
Each block is one ``.npz`` (``indptr`` int64 local from 0, ``indices`` int32 global column ids,
``data`` float32, ``start``, ``stop``, ``n_cols``) loaded with ``allow_pickle=False``;
``partitions.json`` lists the boundaries and nnz and records the train ``global_mean``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from factorflow.errors import NotFoundError, check_param
from factorflow.progress import Progress, report
from factorflow.data.splits import SplitRef, train_csr
from factorflow.storage.checksums import checksums, verify
from factorflow.storage.fs import atomic_dir, join, open_store, read_json, url_of, write_json
from factorflow.storage.layout import partitions_dir

if TYPE_CHECKING:
    import scipy.sparse as sp

SIDES = ("user", "item")
MANIFEST = "partitions.json"

#: Tries per block read when the store fails transiently (the first try included).
LOAD_ATTEMPTS = 4
#: Seconds before the second try; doubled before each further one (0.1 + 0.2 + 0.4 s at most).
LOAD_BACKOFF_S = 0.1
# OSErrors a retry cannot fix: the block is not there, or not readable by this process.
_PERMANENT_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)

log = logging.getLogger(__name__)


@dataclass
class RowBlock:
    """Rows ``[start, stop)`` of one side's CSR; ``indptr`` is local (starts at 0)."""

    side: str
    block: int
    start: int
    stop: int
    indptr: np.ndarray  # int64, length n_rows + 1
    indices: np.ndarray  # int32, global column ids
    data: np.ndarray  # float32
    n_cols: int = 0

    @property
    def n_rows(self) -> int:
        return self.stop - self.start

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])


@dataclass
class PartitionsRef:
    """A written partition set: its folder (path or URL) and its ``partitions.json``."""

    path: str
    manifest: dict[str, Any] = field(default_factory=dict)
    reused: bool = False

    @property
    def n_blocks(self) -> int:
        return int(self.manifest["n_blocks"])

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "manifest": self.manifest, "reused": self.reused}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PartitionsRef:
        return cls(d["path"], dict(d.get("manifest") or {}), bool(d.get("reused", False)))


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
    a, b = int(m.indptr[start]), int(m.indptr[stop])
    return {
        "indptr": (m.indptr[start : stop + 1] - a).astype(np.int64),
        "indices": m.indices[a:b].astype(np.int32),
        "data": m.data[a:b].astype(np.float32),
        "start": np.int64(start),
        "stop": np.int64(stop),
        "n_cols": np.int64(m.shape[1]),
    }


def block_file(side: str, b: int) -> str:
    return f"{side}_{b:03d}.npz"


def build_partitions(
    split: SplitRef, n_blocks: int | None = None, progress: Progress | None = None
) -> PartitionsRef:
    """Write (or reuse) ``SPLIT/partitions/pP/``: ``partitions.json`` + ``user_XXX.npz`` + ``item_XXX.npz``.

    ``n_blocks`` defaults to :func:`default_n_blocks`; each side uses ``min(P, its rows)`` blocks.
    """
    if n_blocks is not None:
        check_param(isinstance(n_blocks, int) and n_blocks >= 1, "n_blocks", n_blocks, "an integer ≥ 1")
    fs, split_path = open_store(split.path)
    nnz_hint = split.manifest.get("n_train")
    by_user = None
    if n_blocks is None:
        if nnz_hint is None:
            by_user = train_csr(split)
            nnz_hint = by_user.nnz
        n_blocks = default_n_blocks(int(nnz_hint))
    final = partitions_dir(split_path, n_blocks)
    if fs.exists(join(final, MANIFEST)):
        ref = load_partitions(url_of(fs, final))
        ref.reused = True
        return ref

    if by_user is None:
        by_user = train_csr(split)
    by_item = by_user.T.tocsr()
    by_item.sort_indices()
    mats = {"user": by_user, "item": by_item}
    bounds = {s: balanced_boundaries(mats[s].indptr, n_blocks) for s in SIDES}
    total = sum(len(b) - 1 for b in bounds.values())
    ratings = by_user.data.astype(np.float64)
    manifest: dict[str, Any] = {
        "split": split.split,
        "n_users": int(by_user.shape[0]),
        "n_items": int(by_user.shape[1]),
        "nnz": int(by_user.nnz),
        "n_blocks": int(n_blocks),
        "global_mean": float(ratings.mean()) if ratings.size else 0.0,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    done = 0
    try:
        with atomic_dir(fs, final) as tmp:
            for side in SIDES:
                m, bnd, rows = mats[side], bounds[side], []
                for b in range(len(bnd) - 1):
                    start, stop = int(bnd[b]), int(bnd[b + 1])
                    name = block_file(side, b)
                    with fs.open(join(tmp, name), "wb") as f:
                        np.savez(f, **_block_arrays(m, start, stop))
                    nnz = int(m.indptr[stop] - m.indptr[start])
                    rows.append({"block": b, "start": start, "stop": stop, "nnz": nnz, "file": name})
                    done += 1
                    report(progress, done, total, f"{side} block {b}")
                manifest[side] = rows
            manifest["files"] = checksums(fs, tmp)
            write_json(fs, join(tmp, MANIFEST), manifest)
    except FileExistsError:  # a concurrent writer published the same partitions first
        ref = load_partitions(url_of(fs, final))
        ref.reused = True
        return ref
    return PartitionsRef(path=url_of(fs, final), manifest=manifest)


def load_partitions(path: str) -> PartitionsRef:
    """The partition set at ``path`` (local path or fsspec URL)."""
    fs, p = open_store(path)
    mpath = join(p, MANIFEST)
    if not fs.exists(mpath):
        raise NotFoundError(f"{path}: no partitions here ({MANIFEST} missing); run `factorflow partition`")
    return PartitionsRef(path=url_of(fs, p), manifest=read_json(fs, mpath))


def load_block(path: str, side: str, b: int) -> RowBlock:
    """Block ``b`` of ``side`` (``"user"`` or ``"item"``) from the partition folder ``path``.

    A transient store error while reading (``OSError``, which includes ``TimeoutError``, other
    than not-found or permission errors) is retried: :data:`LOAD_ATTEMPTS` tries in all, with
    exponential backoff from :data:`LOAD_BACKOFF_S`; the last error is raised. A missing block
    (``NotFoundError``), a corrupt file or a bad argument is raised at once, never retried.
    """
    check_param(side in SIDES, "side", side, "'user' or 'item'")
    b = int(b)
    for attempt in range(1, LOAD_ATTEMPTS + 1):
        try:
            return _read_block(path, side, b)
        except _PERMANENT_OS_ERRORS:
            raise
        except OSError as exc:
            if attempt == LOAD_ATTEMPTS:
                raise
            delay = LOAD_BACKOFF_S * 2 ** (attempt - 1)
            log.warning("reading %s block %d of %s failed (%s: %s); retrying in %.1f s (try %d of %d)",
                        side, b, path, type(exc).__name__, exc, delay, attempt + 1, LOAD_ATTEMPTS)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _read_block(path: str, side: str, b: int) -> RowBlock:
    fs, p = open_store(path)
    fpath = join(p, block_file(side, b))
    if not fs.exists(fpath):
        raise NotFoundError(f"{fpath}: no {side} block {b} in partitions {path}")
    verify(fs, fpath, read_json(fs, join(p, MANIFEST)).get("files"))
    with fs.open(fpath, "rb") as f, np.load(f, allow_pickle=False) as z:
        return RowBlock(
            side=side,
            block=b,
            start=int(z["start"]),
            stop=int(z["stop"]),
            indptr=np.asarray(z["indptr"], dtype=np.int64),
            indices=np.asarray(z["indices"], dtype=np.int32),
            data=np.asarray(z["data"], dtype=np.float32),
            n_cols=int(z["n_cols"]),
        )


def load_side(parts: PartitionsRef, side: str) -> list[RowBlock]:
    """Every block of one side, in order."""
    return [load_block(parts.path, side, b) for b in range(len(parts.manifest[side]))]


def assemble(blocks: Sequence[RowBlock]) -> sp.csr_matrix:
    """Stack contiguous row blocks back into one CSR (rows ``[first.start, last.stop)``)."""
    import scipy.sparse as sp

    blocks = sorted(blocks, key=lambda blk: blk.start)
    if not blocks:
        raise ValueError("assemble: no blocks given")
    for a, b in zip(blocks, blocks[1:]):
        if a.stop != b.start:
            raise ValueError(f"assemble: rows [{a.stop}, {b.start}) are missing between blocks {a.block} and {b.block}")
    offsets = np.cumsum([0] + [blk.nnz for blk in blocks])
    indptr = np.concatenate([[0]] + [blk.indptr[1:] + off for blk, off in zip(blocks, offsets)])
    indices = np.concatenate([blk.indices for blk in blocks])
    data = np.concatenate([blk.data for blk in blocks])
    n_cols = max(blk.n_cols for blk in blocks) or (int(indices.max()) + 1 if indices.size else 0)
    n_rows = blocks[-1].stop - blocks[0].start
    idx = np.int32 if indptr[-1] < np.iinfo(np.int32).max else np.int64
    return sp.csr_matrix((data, indices, indptr.astype(idx)), shape=(n_rows, n_cols))
