"""Split folders in the store: ``SNAPSHOT/splits/SPLIT/`` (see :mod:`factorflow.storage.layout`).

A split folder holds ``train.parquet`` (the snapshot's ratings schema), ``test.parquet`` (plus
``cold_user bool, cold_item bool``) and ``manifest.json``, written last with the files'
checksums; the folder is written atomically (:func:`factorflow.storage.fs.atomic_dir`).
:class:`SplitRef` is the small, JSON-able handle that tasks pass around.

This module reads a split's source too: the snapshot's ratings (and ``given_test.parquet``
of a two-file ingest; :func:`read_snapshot_timestamps` reads only their times, for a backfill's
windows). A bounded temporal split (``temporal-cut{c}-to{e}``, a backfill's window) is stored
like any other; its manifest adds ``params.until`` and ``n_excluded`` (the rows after the window,
in neither part). Choosing the test rows is pure maths in :mod:`factorflow.data.splits`,
whose ``make_split`` composes these reads and :func:`write_split`.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from factorflow.errors import InputError, NotFoundError
from factorflow.sparse import csr_from_triples
from factorflow.storage import layout
from factorflow.storage import parquet as pqio
from factorflow.storage.checksums import checksums
from factorflow.storage.fs import atomic_dir, open_store, read_json, url_of, write_json

if TYPE_CHECKING:
    import pyarrow as pa
    import scipy.sparse as sp
    from fsspec import AbstractFileSystem

    from factorflow.storage.datasets import SnapshotRef

#: The snapshot columns a split is made of (the ratings schema).
RATING_COLUMNS = ("user_idx", "item_idx", "rating", "timestamp")
#: Rows per Parquet row group of train.parquet / test.parquet.
ROW_GROUP = 1 << 20
#: The columns written dictionary-encoded. Not ``timestamp``: nearly every value is distinct, so the
#: writer would fill a dictionary page only to fall back to plain encoding (about 15% of the write's
#: CPU time at 20M rows, and a larger file).
DICTIONARY_COLUMNS = ["user_idx", "item_idx", "rating"]


@dataclass
class SplitRef:
    """A written split: its folder (path or URL), its id and its manifest."""

    path: str
    split: str
    manifest: dict[str, Any] = field(default_factory=dict)
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "split": self.split, "manifest": self.manifest, "reused": self.reused}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SplitRef:
        return cls(d["path"], d["split"], dict(d.get("manifest") or {}), bool(d.get("reused", False)))


# ---------------------------------------------------------------- the snapshot a split is made of


@dataclass
class SnapshotFolder:
    """An opened snapshot folder: ``fs``, its ``path`` there, its ``manifest``, and the
    ``dataset`` and ``snapshot`` names a split's manifest records."""

    fs: AbstractFileSystem
    path: str
    manifest: dict[str, Any]
    dataset: str
    snapshot: str


def open_snapshot(snapshot: SnapshotRef) -> SnapshotFolder:
    """The folder of ``snapshot`` (its ``path`` is relative to ``store``'s fs, or a URL).

    ``NotFoundError`` when the snapshot has no manifest there.
    """
    store = getattr(snapshot, "store", None)
    if store is not None and "://" not in str(snapshot.path):
        fs, _ = open_store(store)
        path = str(snapshot.path).rstrip("/")
    else:
        fs, path = open_store(snapshot.path)
    manifest = getattr(snapshot, "manifest", None)
    if not manifest:
        mpath = layout.snapshot_file(path, layout.MANIFEST_FILE)
        if not fs.exists(mpath):
            raise NotFoundError(f"{snapshot.path}: no snapshot here (manifest.json missing)")
        manifest = read_json(fs, mpath)
    return SnapshotFolder(
        fs, path, manifest,
        dataset=getattr(snapshot, "name", None) or posixpath.basename(posixpath.dirname(path)),
        snapshot=getattr(snapshot, "snapshot", None) or posixpath.basename(path),
    )  # fmt: skip


def snapshot_shape(source: SnapshotFolder) -> tuple[int, int]:
    """``(n_users, n_items)`` of the snapshot's id space (from its manifest, else the id tables' footers)."""
    fs, path = source.fs, source.path
    n_users = source.manifest.get("n_users") or pqio.num_rows(fs, layout.snapshot_file(path, layout.USERS_FILE))
    n_items = source.manifest.get("n_items") or pqio.num_rows(fs, layout.snapshot_file(path, layout.ITEMS_FILE))
    return n_users, n_items


def snapshot_num_rows(source: SnapshotFolder) -> int | None:
    """The number of rows of the snapshot's ``ratings.parquet`` from its footer (no data read, not
    verified); None when the footer is unreadable (:func:`read_snapshot_ratings` then names the damage)."""
    try:
        return pqio.num_rows(source.fs, layout.snapshot_file(source.path, layout.RATINGS_FILE))
    except (InputError, OSError):
        return None


def read_snapshot_ratings(source: SnapshotFolder) -> pa.Table:
    """The snapshot's ``ratings.parquet`` (:data:`RATING_COLUMNS`), checked against its manifest."""
    path = layout.snapshot_file(source.path, layout.RATINGS_FILE)
    return pqio.read_table(source.fs, path, RATING_COLUMNS, files=source.manifest.get("files"))


def read_snapshot_timestamps(source: SnapshotFolder) -> np.ndarray:
    """The ``timestamp`` column (int64) of the snapshot's ratings, in row order, checked against its
    manifest: what a backfill counts its train and test windows from without reading the rest."""
    path = layout.snapshot_file(source.path, layout.RATINGS_FILE)
    table = pqio.read_table(source.fs, path, ["timestamp"], files=source.manifest.get("files"))
    return table.column("timestamp").to_numpy().astype(np.int64, copy=False)


def read_given_test(source: SnapshotFolder) -> pa.Table | None:
    """The snapshot's ``given_test.parquet`` (:data:`RATING_COLUMNS`); None when it has none."""
    path = layout.snapshot_file(source.path, layout.GIVEN_TEST_FILE)
    if not source.fs.exists(path):
        return None
    return pqio.read_table(source.fs, path, RATING_COLUMNS, files=source.manifest.get("files"))


# ---------------------------------------------------------------- split folders


def load_split(path: str) -> SplitRef:
    """The split written at ``path`` (local path or fsspec URL)."""
    fs, p = open_store(path)
    mpath = layout.split_manifest(p)
    if not fs.exists(mpath):
        raise NotFoundError(f"{path}: no split here (manifest.json missing); run `factorflow split`")
    manifest = read_json(fs, mpath)
    return SplitRef(path=url_of(fs, p), split=manifest.get("split", posixpath.basename(p)), manifest=manifest)


def find_split(source: SnapshotFolder, split: str) -> SplitRef | None:
    """The split ``split`` of the snapshot when it is written (``reused=True``), else None."""
    final = layout.split_dir(source.path, split)
    if not source.fs.exists(layout.split_manifest(final)):
        return None
    ref = load_split(url_of(source.fs, final))
    ref.reused = True
    return ref


def resolve_split(snapshot: SnapshotRef, split: str) -> SplitRef:
    """The split ``split`` of ``snapshot``; ``NotFoundError`` lists the splits that exist."""
    source = open_snapshot(snapshot)
    fs, snap_path = source.fs, source.path
    path = layout.split_dir(snap_path, split)
    if not fs.exists(layout.split_manifest(path)):
        root = layout.splits_dir(snap_path)
        have = sorted(
            posixpath.basename(str(p).rstrip("/"))
            for p in (fs.ls(root, detail=False) if fs.exists(root) else [])
            if not posixpath.basename(str(p).rstrip("/")).startswith(".")
        )
        raise NotFoundError(
            f"split {split!r} not found in snapshot {snap_path}; splits there: "
            f"{', '.join(have) or 'none'} (make one with `factorflow split`)"
        )
    return load_split(url_of(fs, path))


def write_split(
    source: SnapshotFolder, split: str, train: pa.Table, test: pa.Table, manifest: dict[str, Any]
) -> SplitRef:
    """Write ``SNAPSHOT/splits/SPLIT/`` atomically: train.parquet, test.parquet, then
    manifest.json (``manifest`` plus the files' checksums, added to it in place).

    When a concurrent writer published the same split first, that split is returned
    (``reused=True``) and nothing is written.
    """
    fs = source.fs
    final = layout.split_dir(source.path, split)
    final_url = url_of(fs, final)
    try:
        with atomic_dir(fs, final) as tmp:
            for path, table in ((layout.split_train_file(tmp), train), (layout.split_test_file(tmp), test)):
                pqio.write_table(fs, path, table, row_group_size=ROW_GROUP, use_dictionary=DICTIONARY_COLUMNS)
            manifest["files"] = checksums(fs, tmp)
            write_json(fs, layout.split_manifest(tmp), manifest)
    except FileExistsError:  # a concurrent writer published the same split first
        ref = load_split(final_url)
        ref.reused = True
        return ref
    return SplitRef(path=final_url, split=split, manifest=manifest, reused=False)


# ---------------------------------------------------------------- reading a split


def read_train(ref: SplitRef) -> pa.Table:
    """Train rows: ``user_idx int32, item_idx int32, rating float32, timestamp int64``."""
    fs, p = open_store(ref.path)
    return pqio.read_table(fs, layout.split_train_file(p), files=ref.manifest.get("files"))


def read_test(ref: SplitRef) -> pa.Table:
    """Test rows: the train schema plus ``cold_user bool, cold_item bool``."""
    fs, p = open_store(ref.path)
    return pqio.read_table(fs, layout.split_test_file(p), files=ref.manifest.get("files"))


def train_csr(ref: SplitRef) -> sp.csr_matrix:
    """Train ratings as an ``n_users × n_items`` CSR over the snapshot's full id space.

    When a partition set of this split is written, its user blocks are that same CSR cut by rows
    (``build_partitions`` made them from it), and reading them takes about half the time of
    decoding ``train.parquet`` (18M ratings: 0.6–1.1 s against 1.1–2.2 s); a set that cannot be
    read (a block fails its checksum) is passed over."""
    from factorflow.storage.partitions import stacked_user_blocks

    n_users, n_items = int(ref.manifest["n_users"]), int(ref.manifest["n_items"])
    from_blocks = stacked_user_blocks(ref.path, n_users, n_items, ref.manifest.get("n_train"))
    if from_blocks is not None:
        return from_blocks
    t = read_train(ref)
    u = t.column("user_idx").to_numpy().astype(np.int32, copy=False)
    i = t.column("item_idx").to_numpy().astype(np.int32, copy=False)
    r = t.column("rating").to_numpy().astype(np.float32, copy=False)
    return csr_from_triples(u, i, r, n_users, n_items)

