"""Every Parquet read and write of the store goes through here.

A local store is read and written through Arrow's native filesystem. Any other fsspec
store is read whole into an Arrow-owned buffer (and written from one): Arrow never holds
a Python object. That matters at exit: when Arrow reads through a Python file object, a
thread-pool thread may release the last Python buffer *after* the call returned; if the
interpreter is finalizing by then, the thread cannot take the GIL, is unwound, and the
process aborts with ``terminate called without an active exception`` (exit 134) although
its work was done.

A file that is not valid Parquet (truncated, overwritten, not Parquet at all) is an
``InputError`` naming it, never a pyarrow traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from factorflow.errors import InputError
from factorflow.storage.checksums import verify
from factorflow.storage.fs import is_local


def _source(fs: AbstractFileSystem, path: str) -> Any:
    """What pyarrow should open: the local path itself, or the remote bytes in Arrow memory."""
    if is_local(fs):
        return path
    data = fs.cat_file(path)
    out = pa.BufferOutputStream()
    out.write(data)  # copies into Arrow-owned memory
    return pa.BufferReader(out.getvalue())


def _damaged(path: str, exc: Exception) -> InputError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return InputError(f"{path}: not a readable Parquet file ({detail}); the store is damaged there — "
                      "delete that folder and re-run the step that wrote it")


def read_table(fs: AbstractFileSystem, path: str, columns: Sequence[str] | None = None, *,
               files: dict[str, Any] | None = None) -> pa.Table:
    """The whole table at ``path`` (only ``columns`` when given).

    ``files`` is the ``files`` entry of the folder's manifest: when given, the file is first
    checked against it (:func:`factorflow.storage.checksums.verify`).
    """
    if files is not None:
        verify(fs, path, files)
    try:
        return pq.read_table(_source(fs, path), columns=list(columns) if columns else None)
    except pa.ArrowInvalid as exc:
        raise _damaged(path, exc) from None


def open_file(fs: AbstractFileSystem, path: str) -> pq.ParquetFile:
    """A ``ParquetFile`` for metadata and row-group reads (no Python file object inside)."""
    try:
        return pq.ParquetFile(_source(fs, path))
    except pa.ArrowInvalid as exc:
        raise _damaged(path, exc) from None


def read_row_groups(pf: pq.ParquetFile, path: str, groups: Sequence[int],
                    columns: Sequence[str] | None = None) -> pa.Table:
    """Row groups ``groups`` of an opened file (``path`` only names it in errors)."""
    try:
        return pf.read_row_groups(list(groups), columns=list(columns) if columns else None)
    except pa.ArrowInvalid as exc:
        raise _damaged(path, exc) from None


def num_rows(fs: AbstractFileSystem, path: str) -> int:
    """Row count from the footer (reads no data pages)."""
    return int(open_file(fs, path).metadata.num_rows)


def write_table(fs: AbstractFileSystem, path: str, table: pa.Table, **options: Any) -> None:
    """Write ``table`` to ``path``; ``options`` go to ``pyarrow.parquet.write_table``."""
    if is_local(fs):
        pq.write_table(table, path, **options)
        return
    out = pa.BufferOutputStream()
    pq.write_table(table, out, **options)
    with fs.open(path, "wb") as f:
        f.write(out.getvalue().to_pybytes())


def write_batches(fs: AbstractFileSystem, path: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch],
                  **options: Any) -> None:
    """Write ``batches`` to ``path``, one row group each; ``options`` go to ``pyarrow.parquet.ParquetWriter``.

    The next batch is produced on a helper thread while the current one is encoded (numpy's
    gathers and Parquet's encoding both release the GIL), so a caller that computes its row
    groups on the fly (e.g. by gathering a permutation) overlaps that work with the writing.
    """
    sink: Any = path if is_local(fs) else pa.BufferOutputStream()
    with pq.ParquetWriter(sink, schema, **options) as writer:
        for batch in _prefetched(batches):
            writer.write_batch(batch, row_group_size=max(1, batch.num_rows))
    if not is_local(fs):
        with fs.open(path, "wb") as f:
            f.write(sink.getvalue().to_pybytes())


def _prefetched(items: Iterable[Any]) -> Iterator[Any]:
    """``items``, each produced on one helper thread while the previous one is being used."""
    it = iter(items)
    end = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-prefetch") as pool:
        nxt = pool.submit(next, it, end)
        while (item := nxt.result()) is not end:
            nxt = pool.submit(next, it, end)
            yield item
