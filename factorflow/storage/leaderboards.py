"""Leaderboards of ``factorflow compare``: ``STORE/leaderboards/SPLIT/STAMP.json`` and ``STAMP.parquet``.

One ``compare`` run writes one leaderboard: its rows (one per model, already built and sorted
by :mod:`factorflow.pipeline.leaderboard`) as a Parquet table, and a JSON file with the same
rows plus what they were measured on (``split``, ``dataset``, ``snapshot``, ...). ``STAMP`` is
the UTC time of the write (``20260102T030405.123456Z``), so leaderboards of one split sort by
time and never overwrite each other.

Both files are written to temporary siblings and renamed into place, the Parquet first; the
JSON, written last, lists the Parquet's size and SHA-256 under ``files`` (as every manifest of
the store does), and :func:`read_leaderboard_table` checks them before parsing. The JSON is
strict: a non-finite number is written as ``null``, never ``NaN``.

Storage only: this module knows nothing about metrics. Columns are typed from their values
(strings → ``string``, numbers → ``float64``, a column of only nulls → ``string``).
"""

from __future__ import annotations

import json
import posixpath
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from factorflow.errors import InputError, NotFoundError
from factorflow.storage import fs as fsio
from factorflow.storage import parquet as pqio
from factorflow.storage.checksums import sha256_of
from factorflow.storage.layout import leaderboard_dir, leaderboard_file, leaderboards_dir
from factorflow.storage.rows import rows_table, strict_json

SCHEMA_VERSION = 1


def stamp_now() -> str:
    """The UTC time as a leaderboard file stem: ``YYYYmmddTHHMMSS.ffffffZ``."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def write_leaderboard(store: str, split: str, rows: list[dict[str, Any]], info: dict[str, Any] | None = None,
                      *, columns: list[str] | None = None, stamp: str | None = None) -> dict[str, str]:
    """Write one leaderboard of split ``split``: ``rows`` (in order) and ``info`` (what they were
    measured on; JSON-able). Returns ``{"json": URL, "parquet": URL, "stamp": STAMP}``.

    The JSON body is ``{**info, "schema_version", "split", "created_at", "columns", "rows",
    "files"}``. Raises ParameterError when ``split`` is not one path segment.
    """
    from factorflow.errors import ParameterError

    if not split or "/" in split or split in (".", "..") or split.startswith(".tmp-"):
        raise ParameterError(f"split={split!r}: must be one path segment (a split id)")
    fs, root = fsio.open_store(store)
    stamp = stamp or stamp_now()
    folder = leaderboard_dir(root, split)
    fsio.makedirs(fs, folder)
    fsio.sweep_stale_temporaries(fs, folder)
    table = rows_table(rows, columns, exact_types=False)
    pq_path = leaderboard_file(root, split, stamp, "parquet")
    tmp = fsio.join(folder, fsio.temporary_name(posixpath.basename(pq_path)))
    try:
        pqio.write_table(fs, tmp, table)
        fsio.replace_file(fs, tmp, pq_path)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise
    body = {
        **strict_json(dict(info or {})),
        "schema_version": SCHEMA_VERSION,
        "split": split,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "columns": table.column_names,
        "rows": strict_json([{c: r.get(c) for c in table.column_names} for r in rows]),
        "files": {posixpath.basename(pq_path): {"bytes": int(fs.info(pq_path)["size"]),
                                                 "sha256": sha256_of(fs, pq_path)}},
    }
    text = json.dumps(body, indent=2, sort_keys=True, allow_nan=False) + "\n"
    json_path = leaderboard_file(root, split, stamp, "json")
    fsio.atomic_write_text(fs, json_path, text)
    return {"json": fsio.url_of(fs, json_path), "parquet": fsio.url_of(fs, pq_path), "stamp": stamp}


def list_leaderboards(store: str, split: str | None = None) -> list[str]:
    """URLs of the leaderboard JSON files of ``split`` (every split when None), oldest first."""
    fs, root = fsio.open_store(store)
    base = leaderboards_dir(root)
    folders = [leaderboard_dir(root, split)] if split else (
        sorted(p for p in fs.ls(base, detail=False) if fs.isdir(p)) if fs.isdir(base) else [])
    out = []
    for folder in folders:
        if not fs.isdir(folder):
            continue
        for p in fs.ls(folder, detail=False):
            name = posixpath.basename(p)
            if name.endswith(".json") and not name.startswith("."):
                out.append(p)
    out.sort(key=lambda p: (posixpath.basename(p), p))
    return [fsio.url_of(fs, p) for p in out]


def latest_leaderboard(store: str, split: str | None = None) -> str:
    """The newest leaderboard JSON of ``split`` (of any split when None); NotFoundError if none."""
    found = list_leaderboards(store, split)
    if not found:
        where = f"split {split}" if split else "any split"
        raise NotFoundError(f"{store}: no leaderboard for {where} (run 'factorflow compare' first)")
    return found[-1]


def read_leaderboard(path: str) -> dict[str, Any]:
    """The body of a leaderboard JSON file (see :func:`write_leaderboard`)."""
    fs, p = fsio.open_path(path)
    try:
        body = fsio.read_json(fs, p)
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such leaderboard") from None
    except ValueError as exc:
        raise InputError(f"{path}: not a readable leaderboard ({exc})") from None
    if not isinstance(body, dict) or not isinstance(body.get("rows"), list):
        raise InputError(f"{path}: not a leaderboard (no 'rows' list)")
    return body


def read_leaderboard_table(path: str) -> pa.Table:
    """The Parquet table beside the leaderboard JSON ``path``, checked against the JSON's ``files``."""
    body = read_leaderboard(path)
    fs, p = fsio.open_path(path)
    pq_path = p[: -len(".json")] + ".parquet"
    return pqio.read_table(fs, pq_path, files=body.get("files") or None)
