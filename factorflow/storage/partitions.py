"""Partition folders in the store: ``SPLIT/partitions/pP/`` (see :mod:`factorflow.storage.layout`).

A partition set holds the row blocks of a split's train part, by user and by item: one
``.npz`` per block (``indptr`` int64 local from 0, ``indices`` int32 global column ids,
``data`` float32, ``start``, ``stop``, ``n_cols``), saved with ``np.savez`` and loaded with
``allow_pickle=False``, and ``partitions.json`` (boundaries, nnz, train ``global_mean``, the
files' checksums), written last; the folder is written atomically. Cutting the blocks is
pure maths in :mod:`factorflow.data.partitions`, whose ``build_partitions`` composes it with
:func:`write_partitions`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import posixpath
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np

from factorflow.errors import InputError, NotFoundError, check_param
from factorflow.progress import Progress, report
from factorflow.storage import layout
from factorflow.storage.checksums import verify
from factorflow.storage.fs import atomic_dir, open_store, read_json, url_of, write_json
from factorflow.storage.layout import block_file

if TYPE_CHECKING:
    import scipy.sparse as sp

SIDES = ("user", "item")
MANIFEST = layout.PARTITIONS_MANIFEST_FILE

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


# ---------------------------------------------------------------- writing


def find_partitions(split_path: str, n_blocks: int) -> PartitionsRef | None:
    """The ``n_blocks`` partition set of the split folder ``split_path`` (path or URL) when it is
    written (``reused=True``), else None."""
    fs, p = open_store(split_path)
    final = layout.partitions_dir(p, n_blocks)
    if not fs.exists(layout.partitions_manifest(final)):
        return None
    ref = load_partitions(url_of(fs, final))
    ref.reused = True
    return ref


def write_partitions(
    split_path: str,
    n_blocks: int,
    manifest: dict[str, Any],
    blocks: Iterable[tuple[str, int, dict[str, np.ndarray]]],
    *,
    total: int,
    progress: Progress | None = None,
) -> PartitionsRef:
    """Write ``SPLIT/partitions/pP/`` atomically: one ``.npz`` per block, then ``partitions.json``.

    ``blocks`` yields ``(side, b, arrays)`` (the arrays of the ``.npz``, in the module docstring's
    order), each side's blocks in order; a block is written as soon as it is yielded and
    ``progress`` counts it (of ``total``). ``manifest`` gets each side's ``[{block, start, stop,
    nnz, file}]`` and the files' checksums, in place. When a concurrent writer published the
    same set first, that set is returned (``reused=True``).
    """
    fs, p = open_store(split_path)
    final = layout.partitions_dir(p, n_blocks)
    try:
        with atomic_dir(fs, final) as tmp, ThreadPoolExecutor(1, thread_name_prefix="partitions-write") as pool:
            rows: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
            files: dict[str, dict[str, Any]] = {}
            pending: Future | None = None
            for done, (side, b, arrays) in enumerate(blocks, start=1):
                name = block_file(side, b)
                buf = io.BytesIO()  # np.savez seeks; an object store's write stream cannot
                np.savez(buf, **arrays)
                if pending is not None:  # one block in flight: memory stays bounded
                    pending.result()
                # written and hashed (hashlib releases the GIL) while the next block is cut
                pending = pool.submit(_write_block, fs, layout.block_path(tmp, side, b), buf, files, name)
                rows[side].append({"block": b, "start": int(arrays["start"]), "stop": int(arrays["stop"]),
                                   "nnz": int(arrays["indptr"][-1]), "file": name})
                report(progress, done, total, f"{side} block {b}")
            if pending is not None:
                pending.result()
            manifest.update(rows)
            manifest["files"] = dict(sorted(files.items()))  # as checksums(fs, tmp) lists them
            write_json(fs, layout.partitions_manifest(tmp), manifest)
    except FileExistsError:  # a concurrent writer published the same partitions first
        ref = load_partitions(url_of(fs, final))
        ref.reused = True
        return ref
    return PartitionsRef(path=url_of(fs, final), manifest=manifest)


def _write_block(fs: Any, path: str, buf: io.BytesIO, files: dict[str, dict[str, Any]], name: str) -> None:
    """Write one serialized block and record its manifest entry (``bytes``, ``sha256``) from the bytes
    written, so they are not read back for the checksums."""
    data = buf.getbuffer()
    with fs.open(path, "wb") as f:
        f.write(data)
    files[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    data.release()


# ---------------------------------------------------------------- reading


def load_partitions(path: str) -> PartitionsRef:
    """The partition set at ``path`` (local path or fsspec URL)."""
    fs, p = open_store(path)
    mpath = layout.partitions_manifest(p)
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
    fpath = layout.block_path(p, side, b)
    if not fs.exists(fpath):
        raise NotFoundError(f"{fpath}: no {side} block {b} in partitions {path}")
    verify(fs, fpath, read_json(fs, layout.partitions_manifest(p)).get("files"))
    with fs.open(fpath, "rb") as f:
        data = io.BytesIO(f.read())  # one read, not a seek per array
    with np.load(data, allow_pickle=False) as z:
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


def assemble(blocks: Sequence[RowBlock]) -> sp.csr_matrix:
    """Stack contiguous row blocks back into one CSR (rows ``[first.start, last.stop)``)."""
    import scipy.sparse as sp

    blocks = sorted(blocks, key=lambda blk: blk.start)
    if not blocks:
        raise ValueError("assemble: no blocks given")
    for a, b in pairwise(blocks):
        if a.stop != b.start:
            raise ValueError(f"assemble: rows [{a.stop}, {b.start}) are missing between blocks {a.block} and {b.block}")
    offsets = np.cumsum([0] + [blk.nnz for blk in blocks])
    indptr = np.concatenate([[0]] + [blk.indptr[1:] + off for blk, off in zip(blocks, offsets, strict=False)])
    indices = np.concatenate([blk.indices for blk in blocks])
    data = np.concatenate([blk.data for blk in blocks])
    n_cols = max(blk.n_cols for blk in blocks) or (int(indices.max()) + 1 if indices.size else 0)
    n_rows = blocks[-1].stop - blocks[0].start
    idx = np.int32 if indptr[-1] < np.iinfo(np.int32).max else np.int64
    return sp.csr_matrix((data, indices, indptr.astype(idx)), shape=(n_rows, n_cols))


def stacked_user_blocks(split_path: str, n_users: int, n_items: int, nnz: int | None = None) -> sp.csr_matrix | None:
    """The split's train CSR stacked from the user blocks of its smallest written partition set
    (checksums verified), or None when there is none of that shape (``n_users × n_items``, ``nnz``
    ratings when given) or it cannot be read (a damaged set is logged and passed over)."""
    fs, p = open_store(split_path)
    try:
        found = sorted(fs.glob(layout.partitions_manifests_glob(p)),
                       key=lambda f: int(posixpath.basename(posixpath.dirname(f))[1:]))
    except (OSError, ValueError):
        return None
    for mpath in found:
        folder = url_of(fs, posixpath.dirname(mpath))
        try:
            m = read_json(fs, mpath)
            if (int(m["n_users"]), int(m["n_items"])) != (n_users, n_items) or \
                    (nnz is not None and int(m["nnz"]) != int(nnz)):
                continue
            blocks = [load_block(folder, "user", b) for b in range(len(m["user"]))]
        except (OSError, ValueError, KeyError, InputError) as exc:  # damaged: a block fails its checksum
            log.warning("partitions %s unreadable (%s); reading train.parquet instead", folder, exc)
            continue
        if blocks and blocks[0].start == 0 and blocks[-1].stop == n_users:
            csr = assemble(blocks)
            if csr.shape == (n_users, n_items):
                return csr
    return None
