"""Reading dataset snapshots: find one by name (and id), load its tables.

A snapshot lives under ``STORE/datasets/NAME/SNAPSHOT/`` (see ``storage.layout``) and is
described by its ``manifest.json``. :class:`SnapshotRef` is the small, JSON-able handle that
tasks pass around instead of the data.
"""

from __future__ import annotations

import posixpath
from dataclasses import asdict, dataclass, field
from typing import Any

from factorflow.errors import NotFoundError, ParameterError
from factorflow.storage import layout
from factorflow.storage import parquet as pqio
from factorflow.storage.fs import open_store, read_json, url_of
from factorflow.storage.layout import (
    GIVEN_TEST_FILE,
    ITEMS_FILE,
    MANIFEST_FILE,
    RATINGS_FILE,
    REJECTS_FILE,
    USERS_FILE,
)


@dataclass
class SnapshotRef:
    """Where one snapshot is: ``store`` URL, dataset ``name``, ``snapshot`` id, folder ``path``.

    ``manifest`` is the parsed ``manifest.json``; ``reused`` is true when an ingest found the
    snapshot already there and did not rebuild it.
    """

    store: str
    name: str
    snapshot: str
    path: str
    manifest: dict[str, Any] = field(default_factory=dict)
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SnapshotRef:
        return cls(
            store=d["store"],
            name=d["name"],
            snapshot=d["snapshot"],
            path=d["path"],
            manifest=dict(d.get("manifest") or {}),
            reused=bool(d.get("reused", False)),
        )

    def file(self, filename: str) -> str:
        """Path of ``filename`` inside the snapshot folder (on the store's filesystem)."""
        return layout.snapshot_file(self.path, filename)

    @property
    def url(self) -> str:
        """The snapshot folder as a URL (``s3://...`` on an object store; the path when local)."""
        fs, _ = open_store(self.store)
        return url_of(fs, self.path)


def _listdir_names(fs: Any, path: str) -> list[str]:
    if not fs.exists(path):
        return []
    names = []
    for p in fs.ls(path, detail=False):
        base = posixpath.basename(str(p).rstrip("/"))
        if base and not base.startswith("."):
            names.append(base)
    return sorted(names)


def list_datasets(store: str) -> list[str]:
    """Names of the datasets in ``store`` (sorted)."""
    fs, root = open_store(store)
    return _listdir_names(fs, layout.datasets_dir(root))


def list_snapshots(store: str, name: str) -> list[SnapshotRef]:
    """Complete snapshots of dataset ``name`` (those with a manifest), oldest first."""
    fs, root = open_store(store)
    refs = []
    for snap in _listdir_names(fs, layout.dataset_dir(root, name)):
        path = layout.snapshot_dir(root, name, snap)
        mpath = layout.snapshot_file(path, MANIFEST_FILE)
        if fs.exists(mpath):
            refs.append(SnapshotRef(str(store), name, snap, path, read_json(fs, mpath)))
    refs.sort(key=lambda r: (str(r.manifest.get("created_at", "")), r.snapshot))
    return refs


def resolve_snapshot(store: str, name: str, snapshot: str | None = None) -> SnapshotRef:
    """The snapshot ``snapshot`` of dataset ``name`` (the latest by ``created_at`` when None).

    Raises ``NotFoundError`` naming the datasets or snapshots that do exist.
    """
    refs = list_snapshots(store, name)
    if not refs:
        known = list_datasets(store)
        have = ", ".join(known) if known else "none"
        raise NotFoundError(
            f"dataset {name!r} not found in store {store}; datasets there: {have} "
            f"(create one with `factorflow ingest SOURCE --store {store} --name {name}`)"
        )
    if snapshot is None:
        return refs[-1]
    for ref in refs:
        if ref.snapshot == snapshot:
            return ref
    have = ", ".join(r.snapshot for r in refs)
    raise NotFoundError(f"snapshot {snapshot!r} of dataset {name!r} not found in store {store}; snapshots: {have}")


def _read_table(ref: SnapshotRef, filename: str, columns: list[str] | None = None) -> Any:
    """A snapshot table, checked against the manifest's checksums first, read by ``storage.parquet``."""
    fs, _ = open_store(ref.store)
    path = ref.file(filename)
    if not fs.exists(path):
        raise NotFoundError(f"{path}: missing from snapshot {ref.snapshot} of dataset {ref.name!r}")
    return pqio.read_table(fs, path, columns, files=ref.manifest.get("files"))


def read_ratings(ref: SnapshotRef, columns: list[str] | None = None) -> Any:
    """``ratings.parquet`` as a ``pyarrow.Table`` (user_idx, item_idx, rating, timestamp)."""
    return _read_table(ref, RATINGS_FILE, columns)


def read_given_test(ref: SnapshotRef, columns: list[str] | None = None) -> Any:
    """``given_test.parquet`` of a two-file ingest (``--test-source``), ratings schema."""
    if not ref.manifest.get("test_source"):
        raise NotFoundError(
            f"snapshot {ref.snapshot} of dataset {ref.name!r} has no given test set "
            "(ingest with --test-source TEST to make one)"
        )
    return _read_table(ref, GIVEN_TEST_FILE, columns)


def read_rejects(ref: SnapshotRef) -> Any:
    """``rejects.parquet``: source, line, raw, reason."""
    return _read_table(ref, REJECTS_FILE)


def read_ids(ref: SnapshotRef, side: str) -> Any:
    """``users.parquet`` (side="user") or ``items.parquet`` (side="item"): dense index ↔ raw id."""
    if side == "user":
        return _read_table(ref, USERS_FILE)
    if side == "item":
        return _read_table(ref, ITEMS_FILE)
    raise ParameterError(f"side={side!r}: must be 'user' or 'item'")
