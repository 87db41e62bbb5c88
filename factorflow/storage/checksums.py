"""Checksums of the files a manifest lists, verified when they are read.

Every writer of a store folder (snapshot, split, partition set, model version) records
``files: {name: {"bytes": N, "sha256": HEX}}`` in its manifest, which it writes last. Every
reader checks a file against that entry before parsing it: the size always, the SHA-256 too
when the file is read whole (once per file and process; a partial read, such as one user's
rows of ``seen.parquet``, checks the size only). A truncated, overwritten or corrupted file is
one ``InputError`` naming it. A manifest written before checksums existed (no ``files``) is
read without checks.
"""

from __future__ import annotations

import hashlib
import posixpath
from typing import Any

from fsspec import AbstractFileSystem

from factorflow.errors import InputError

CHUNK = 8 << 20
_verified: set[tuple[str, int, float]] = set()


def sha256_of(fs: AbstractFileSystem, path: str) -> str:
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def checksums(fs: AbstractFileSystem, folder: str, exclude: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """``{name: {"bytes", "sha256"}}`` of the files directly in ``folder`` (not ``exclude``)."""
    out = {}
    for info in fs.ls(folder, detail=True):
        name = posixpath.basename(info["name"].rstrip("/"))
        if info["type"] == "file" and name not in exclude:
            out[name] = {"bytes": int(info["size"]), "sha256": sha256_of(fs, info["name"])}
    return dict(sorted(out.items()))


def verify(fs: AbstractFileSystem, path: str, files: dict[str, Any] | None, *, full: bool = True) -> None:
    """InputError when ``path`` differs from its manifest entry in ``files`` (see module docstring)."""
    if not files:
        return
    name = posixpath.basename(path)
    want = files.get(name)
    folder = posixpath.dirname(path)
    if want is None:
        raise InputError(f"{path}: not listed in the manifest of {folder}; the folder is damaged — "
                         "delete it and re-run the step that wrote it")
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise InputError(f"{path}: missing, though the manifest of {folder} lists it; delete the folder and "
                         "re-run the step that wrote it") from None
    size = int(info["size"])
    if size != int(want["bytes"]):
        raise InputError(f"{path}: {size:,} bytes, but its manifest says {int(want['bytes']):,} (truncated or "
                         "overwritten); delete the folder and re-run the step that wrote it")
    if not full:
        return
    stamp = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    key = (path, size, stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp))
    if key in _verified:
        return
    if sha256_of(fs, path) != want["sha256"]:
        raise InputError(f"{path}: its SHA-256 does not match its manifest (the file is corrupted); delete the "
                         "folder and re-run the step that wrote it")
    _verified.add(key)
