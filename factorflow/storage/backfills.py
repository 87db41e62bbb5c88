"""Backfills in the store: finished cutoffs (for reuse) and each backfill's table and plot.

Two kinds of files (paths in :mod:`factorflow.storage.layout`, backfills section):

- ``STORE/backfills/cutoffs/KEY.json``: one finished cutoff — whatever record the pipeline hands
  in (metrics, train/test sizes, run, version). ``KEY`` is content-addressed by the caller
  (:func:`factorflow.pipeline.backfill.cutoff_key`), so a re-run of the same backfill finds it
  and skips the training. Written atomically (temporary sibling, then rename); strict JSON.
- ``STORE/backfills/ID/``: ``backfill.parquet`` (the rows), ``metrics.png`` (the plot) and
  ``backfill.json`` (the rows plus what they were measured on), written in that order, each
  atomically; the JSON, written last, lists the other two files' sizes and SHA-256 under
  ``files`` (as every manifest of the store does), and :func:`read_backfill_table` checks them.
  A re-run of the same backfill (same ID) replaces its files.

Storage only: this module knows nothing about metrics or cutoffs.
"""

from __future__ import annotations

import json
import posixpath
import re
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from factorflow.errors import InputError, NotFoundError, ParameterError
from factorflow.storage import fs as fsio
from factorflow.storage import parquet as pqio
from factorflow.storage.checksums import sha256_of
from factorflow.storage.layout import (
    BACKFILL_JSON,
    BACKFILL_PARQUET,
    BACKFILL_PLOT,
    backfill_cutoff_file,
    backfill_dir,
    backfill_file,
    backfills_dir,
)
from factorflow.storage.rows import rows_table, strict_json

SCHEMA_VERSION = 1
_KEY_RE = re.compile(r"^[0-9a-f]{16,64}$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._]*-[A-Za-z0-9._-]+$")


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ParameterError(f"key={key!r}: must be a hex digest (16 to 64 characters)")


def _check_id(backfill_id: str) -> None:
    if not isinstance(backfill_id, str) or not _ID_RE.match(backfill_id) or len(backfill_id) > 200:
        raise ParameterError(f"backfill_id={backfill_id!r}: must be one path segment of letters, digits, '.', "
                             "'_' or '-' holding a '-'")


def _dumps(obj: Any) -> str:
    return json.dumps(strict_json(obj), indent=2, sort_keys=True, allow_nan=False, default=fsio._json_default) + "\n"


# ---------------------------------------------------------------- finished cutoffs


def read_cutoff_result(store: str, key: str) -> dict[str, Any] | None:
    """The record stored under ``key`` by :func:`write_cutoff_result`; None when there is none
    (or when it is unreadable: a damaged record is only a cache miss, the cutoff is retrained)."""
    _check_key(key)
    fs, root = fsio.open_store(store)
    path = backfill_cutoff_file(root, key)
    try:
        body = fsio.read_json(fs, path)
    except (FileNotFoundError, ValueError):
        return None
    return body if isinstance(body, dict) and body.get("key") == key else None


def write_cutoff_result(store: str, key: str, record: dict[str, Any]) -> str:
    """Store ``record`` (JSON-able; non-finite numbers become null) under ``key``, atomically;
    returns the file's URL. The stored body is ``{**record, "key", "schema_version", "stored_at"}``."""
    _check_key(key)
    fs, root = fsio.open_store(store)
    path = backfill_cutoff_file(root, key)
    body = {**record, "key": key, "schema_version": SCHEMA_VERSION,
            "stored_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")}
    fsio.atomic_write_text(fs, path, _dumps(body))
    return fsio.url_of(fs, path)


# ---------------------------------------------------------------- a backfill's table and plot


def _write_atomic_bytes(fs: Any, path: str, data: bytes) -> None:
    parent = posixpath.dirname(path)
    tmp = fsio.join(parent, fsio.temporary_name(posixpath.basename(path)))
    try:
        with fs.open(tmp, "wb") as f:
            f.write(data)
        fsio.replace_file(fs, tmp, path)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise


def write_backfill(store: str, backfill_id: str, rows: list[dict[str, Any]], info: dict[str, Any] | None = None,
                   *, columns: list[str] | None = None, plot_png: bytes | None = None) -> dict[str, str | None]:
    """Write one backfill's ``rows`` (in order), its plot and ``info`` (what the rows were measured
    on; JSON-able) under ``STORE/backfills/ID/``. Returns ``{"json", "parquet", "png"}`` URLs
    (``png`` None without a plot).

    The JSON body is ``{**info, "schema_version", "backfill_id", "created_at", "columns", "rows",
    "files"}``; numbers that are not finite are null.
    """
    _check_id(backfill_id)
    fs, root = fsio.open_store(store)
    folder = backfill_dir(root, backfill_id)
    fsio.makedirs(fs, folder)
    fsio.sweep_stale_temporaries(fs, folder)
    table = rows_table(rows, columns)
    pq_path = backfill_file(root, backfill_id, BACKFILL_PARQUET)
    tmp = fsio.join(folder, fsio.temporary_name(BACKFILL_PARQUET))
    try:
        pqio.write_table(fs, tmp, table)
        fsio.replace_file(fs, tmp, pq_path)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise
    written = [pq_path]
    png_path = None
    if plot_png is not None:
        png_path = backfill_file(root, backfill_id, BACKFILL_PLOT)
        _write_atomic_bytes(fs, png_path, plot_png)
        written.append(png_path)
    body = {
        **dict(info or {}),
        "schema_version": SCHEMA_VERSION,
        "backfill_id": backfill_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "columns": table.column_names,
        "rows": strict_json([{c: r.get(c) for c in table.column_names} for r in rows]),
        "files": {posixpath.basename(p): {"bytes": int(fs.info(p)["size"]), "sha256": sha256_of(fs, p)}
                  for p in written},
    }
    json_path = backfill_file(root, backfill_id, BACKFILL_JSON)
    fsio.atomic_write_text(fs, json_path, _dumps(body))
    return {"json": fsio.url_of(fs, json_path), "parquet": fsio.url_of(fs, pq_path),
            "png": None if png_path is None else fsio.url_of(fs, png_path)}


def list_backfills(store: str) -> list[str]:
    """URLs of every backfill's JSON in ``store``, by ID."""
    fs, root = fsio.open_store(store)
    base = backfills_dir(root)
    if not fs.isdir(base):
        return []
    out = []
    for p in sorted(fs.ls(base, detail=False)):
        name = posixpath.basename(str(p).rstrip("/"))
        if _ID_RE.match(name) and fs.exists(backfill_file(root, name, BACKFILL_JSON)):
            out.append(fsio.url_of(fs, backfill_file(root, name, BACKFILL_JSON)))
    return out


def read_backfill(path: str) -> dict[str, Any]:
    """The body of a backfill JSON file (see :func:`write_backfill`)."""
    fs, p = fsio.open_path(path)
    try:
        body = fsio.read_json(fs, p)
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such backfill") from None
    except ValueError as exc:
        raise InputError(f"{path}: not a readable backfill ({exc})") from None
    if not isinstance(body, dict) or not isinstance(body.get("rows"), list):
        raise InputError(f"{path}: not a backfill (no 'rows' list)")
    return body


def read_backfill_table(path: str) -> pa.Table:
    """The Parquet table beside the backfill JSON ``path``, checked against the JSON's ``files``."""
    body = read_backfill(path)
    fs, p = fsio.open_path(path)
    return pqio.read_table(fs, fsio.join(posixpath.dirname(p), BACKFILL_PARQUET), files=body.get("files") or None)
