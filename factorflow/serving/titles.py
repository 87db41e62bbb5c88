"""Item titles for display and for publishing with the items.

Two formats are read: a MovieLens ``movies.csv`` (header ``movieId,title,...``, UTF-8) and a
MovieLens-100K ``u.item`` (no header, ``id|title|date|...``, Latin-1). The format is told by
the first line: a header naming ``title`` means CSV, an integer id followed by ``|`` means
``u.item``. Files that are not UTF-8 are read as Latin-1 (every byte is a character there).
"""

from __future__ import annotations

import csv
import io
import re

import pyarrow as pa

from factorflow.errors import InputError

_UITEM_RE = re.compile(r"^\s*\d+\|")


def read_titles(path: str, item_is_int: bool, option: str = "--titles") -> dict[int | str, str]:
    """``item id → title`` from ``path`` (movies.csv or u.item); InputError naming the line."""
    text = _read_text(path, option)
    first = text.split("\n", 1)[0]
    if _UITEM_RE.match(first):
        rows = csv.reader(io.StringIO(text, newline=""), delimiter="|", quoting=csv.QUOTE_NONE)
        id_col, t_col, start, width = 0, 1, 1, None
    else:
        rows = csv.reader(io.StringIO(text, newline=""))
        header = [h.strip().lstrip("\ufeff") for h in next(rows, None) or []]
        if "title" not in header:
            raise InputError(f"{option} {path}:1: expected a header with 'movieId,title' columns "
                             "(movies.csv) or lines 'id|title|...' (MovieLens-100K u.item)")
        id_col = next((header.index(c) for c in ("movieId", "item_id", "itemId", "item") if c in header), 0)
        t_col, start, width = header.index("title"), 2, len(header)
    out: dict[int | str, str] = {}
    for line, row in enumerate(rows, start=start):
        if not row or not "".join(row).strip():
            continue
        if len(row) <= max(id_col, t_col):
            want = width if width is not None else max(id_col, t_col) + 1
            raise InputError(f"{option} {path}:{line}: expected {want} fields, got {len(row)}")
        key: int | str = row[id_col].strip()
        if item_is_int:
            try:
                key = int(key)
            except ValueError:
                raise InputError(f"{option} {path}:{line}: item id {row[id_col]!r} is not an integer") from None
        out[key] = row[t_col]
    if not out:
        raise InputError(f"{option} {path}: no titles found")
    return out


def _read_text(path: str, option: str) -> str:
    from factorflow.storage.fs import open_path

    try:
        fs, p = open_path(path)
        with fs.open(p, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot open ({exc.strerror or exc})") from None
    if b"\x00" in data:
        raise InputError(f"{option} {path}: binary data (NUL bytes); expected a movies.csv or u.item text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def titles_for(path: str, item_ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Titles aligned with ``item_ids`` (null where the file has none)."""
    ids = item_ids.to_pylist()
    is_int = pa.types.is_integer(item_ids.type)
    table = read_titles(path, is_int)
    return pa.array([table.get(i) for i in ids], type=pa.string())
