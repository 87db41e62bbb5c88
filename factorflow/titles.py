"""Item titles from a MovieLens-style ``movies.csv``, for display and for publishing with the items."""

from __future__ import annotations

import csv

import pyarrow as pa

from .errors import InputError


def read_titles(path: str, item_is_int: bool) -> dict[int | str, str]:
    """``movieId → title`` from a MovieLens ``movies.csv`` (header ``movieId,title,...``)."""
    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--titles {path}: cannot open ({exc.strerror})") from exc
    with f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or "title" not in header:
            raise InputError(f"--titles {path}:1: expected a header with 'movieId,title' columns")
        id_col = next((header.index(c) for c in ("movieId", "item_id", "itemId", "item")
                       if c in header), 0)
        t_col = header.index("title")
        out: dict[int | str, str] = {}
        for line, row in enumerate(reader, start=2):
            if len(row) <= max(id_col, t_col):
                raise InputError(f"--titles {path}:{line}: expected {len(header)} fields, got {len(row)}")
            key: int | str = row[id_col]
            if item_is_int:
                try:
                    key = int(row[id_col])
                except ValueError as exc:
                    raise InputError(f"--titles {path}:{line}: item id {row[id_col]!r} is not an integer") from exc
            out[key] = row[t_col]
    return out


def titles_for(path: str, item_ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Titles aligned with ``item_ids`` (null where the file has none)."""
    ids = item_ids.to_pylist()
    is_int = pa.types.is_integer(item_ids.type)
    table = read_titles(path, is_int)
    return pa.array([table.get(i) for i in ids], type=pa.string())
