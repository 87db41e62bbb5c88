"""Ratings file(s) → one content-addressed snapshot folder.

``ingest_source`` hashes the source, returns the existing snapshot if that id is already in
the store (nothing parsed), else reads the file(s) (``reader``), rejects the rows outside the
declared or inferred rating scale (``scale``; a given test file gets the train file's scale),
checks the reject fraction,
assigns dense ids in sorted raw-id order, resolves duplicate (user, item) pairs (latest
timestamp, then last seen), sorts by (user, item) and writes everything into a temporary
folder that is renamed into place last (``storage.fs.atomic_dir``).

When no snapshot of the dataset comes from a (local) source of the same size, the snapshot cannot
exist yet: then the hashing is deferred to a helper thread that runs beside the single-threaded
sort (parsing keeps every core busy), and the snapshot id is known before anything is written.
``ratings.parquet`` is written row group by row group from :class:`ordering.SortedRows`.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import threading
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from factorflow.data.ingest.arrow import from_numpy
from factorflow.data.ingest.blocks import workers
from factorflow.data.ingest.formats import (
    FORMATS,
    FormatSpec,
    detect_format,
    local_size,
    parse_columns,
    read_sample,
    source_size_and_hash,
)
from factorflow.data.ingest.ids import IdMap
from factorflow.data.ingest.ordering import SortedRows, resolve_duplicates  # noqa: F401 (its old home)
from factorflow.data.ingest.reader import FileRows, read_rows
from factorflow.data.ingest.scale import (
    RatingScale,
    ValueCounts,
    apply_scale,
    declared_scale,
    infer_scale,
    infer_scale_from_counts,
    kept_ratings,
    value_counts,
)
from factorflow.errors import DataWarning, InputError, ParameterError, check_param
from factorflow.progress import Progress
from factorflow.storage import datasets as ds
from factorflow.storage.checksums import checksums
from factorflow.storage.datasets import SnapshotRef
from factorflow.storage.fs import atomic_dir, open_store, read_json, write_json
from factorflow.storage.layout import snapshot_dir, snapshot_file
from factorflow.storage.parquet import write_batches, write_table

SCHEMA_VERSION = 1
ROW_GROUP = 1 << 20
RATINGS_SCHEMA = pa.schema([("user_idx", pa.int32()), ("item_idx", pa.int32()), ("rating", pa.float32()),
                            ("timestamp", pa.int64())])
# ratings.parquet / given_test.parquet, sorted by (user, item): delta-encoded indices and timestamps
# (sorted user_idx compresses to almost nothing, item_idx to ~1.5 bytes a row), ratings dictionary-
# encoded; zstd only where it pays (delta-packed item and timestamp values barely compress further)
_DELTA = "DELTA_BINARY_PACKED"
RATINGS_PARQUET: dict[str, Any] = {
    "use_dictionary": ["rating"],
    "column_encoding": {"user_idx": _DELTA, "item_idx": _DELTA, "timestamp": _DELTA},
    "compression": {"user_idx": "zstd", "item_idx": "none", "rating": "zstd", "timestamp": "none"},
    "sorting_columns": [pq.SortingColumn(0), pq.SortingColumn(1)],
}
MAX_RATING_VALUES = 100
_COMPRESSION_SUFFIXES = (".gz", ".gzip", ".zip")
_STAR_SCALES = {(1.0, 5.0), (0.5, 5.0), (0.0, 5.0)}


def default_name(source: str) -> str:
    """Dataset name from the file name: ``.../ratings.csv.gz`` → ``ratings``, sanitized."""
    base = posixpath.basename(source.rstrip("/").split("::")[-1].split("?")[0])
    for suffix in _COMPRESSION_SUFFIXES:
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    return _sanitize(stem)


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "dataset"


def snapshot_id(source_sha: str, test_sha: str | None, options: dict[str, Any]) -> str:
    """First 16 hex digits of the source's SHA-256; with a test file or explicit options, of both."""
    if test_sha is None and all(v is None for v in options.values()):
        return source_sha[:16]
    blob = json.dumps({"source": source_sha, "test_source": test_sha, **options}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class SnapshotPlan:
    """Where ingesting a source with some options lands, known after hashing the source only."""

    name: str
    snapshot: str
    path: str
    exists: bool
    nbytes: int
    sha256: str
    test_info: tuple[int, str] | None
    columns: Any
    rating_range: tuple[float, float] | None
    fs: Any


def planned_snapshot(
    source: str,
    store: str,
    name: str | None = None,
    *,
    fmt: str | None = None,
    columns: dict[str, str] | str | None = None,
    delimiter: str | None = None,
    rating_range: tuple[float, float] | None = None,
    test_source: str | None = None,
) -> SnapshotPlan:
    """Hash the source(s) and say which snapshot they map to and whether it exists already."""
    name, cols, rating_range = _checked_options(source, name, fmt, columns, rating_range)
    nbytes, sha = source_size_and_hash(source)
    test_info = source_size_and_hash(test_source) if test_source else None
    return _locate(store, name, (nbytes, sha), test_info, fmt, cols, delimiter, rating_range)


def _checked_options(
    source: str, name: str | None, fmt: str | None, columns: dict[str, str] | str | None,
    rating_range: tuple[float, float] | None,
) -> tuple[str, dict[str, str] | None, tuple[float, float] | None]:
    """``(name, columns, rating_range)`` validated (``ParameterError`` naming the option)."""
    if fmt is not None and fmt not in FORMATS:
        raise ParameterError(f"--format={fmt!r}: must be one of {', '.join(FORMATS)}")
    cols = parse_columns(columns)
    if rating_range is not None:
        lo, hi = (float(x) for x in rating_range)
        check_param(np.isfinite([lo, hi]).all() and lo <= hi, "rating_range", rating_range, "LOW,HIGH with LOW <= HIGH")
        rating_range = (lo, hi)
    return (_sanitize(name) if name else default_name(source)), cols, rating_range


def _locate(
    store: str, name: str, source_info: tuple[int, str], test_info: tuple[int, str] | None, fmt: str | None,
    cols: dict[str, str] | None, delimiter: str | None, rating_range: tuple[float, float] | None,
) -> SnapshotPlan:
    """The plan for hashed sources: snapshot id, folder, and whether it exists."""
    options = {
        "format": fmt,
        "columns": cols,
        "delimiter": delimiter,
        "rating_range": list(rating_range) if rating_range else None,
    }
    nbytes, sha = source_info
    snap = snapshot_id(sha, test_info[1] if test_info else None, options)
    fs, root = open_store(store)
    path = snapshot_dir(root, name, snap)
    exists = fs.exists(snapshot_file(path, ds.MANIFEST_FILE))
    return SnapshotPlan(name, snap, path, exists, nbytes, sha, test_info, cols, rating_range, fs)


class _Hashing:
    """The sources' ``(bytes, sha256)`` computed on a helper thread once :meth:`start` is called.

    Started after parsing, it runs beside the single-threaded sort (parsing keeps every core busy).
    """

    def __init__(self, sources: list[str]) -> None:
        self._stop = threading.Event()
        self._out: list[tuple[int, str]] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(sources,), name="ingest-hash", daemon=True)

    def start(self) -> None:
        if self._thread.ident is None:
            self._thread.start()

    def _run(self, sources: list[str]) -> None:
        try:
            self._out = [source_size_and_hash(s, stop=self._stop) for s in sources]
        except BaseException as exc:  # re-raised by result()
            self._error = exc

    def result(self) -> list[tuple[int, str]]:
        self.start()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._out

    def stop(self) -> None:
        """Stop early (at its next chunk) if still running, and wait for the thread."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()


def _hash_later(source: str, test_source: str | None, store: str, name: str) -> _Hashing | None:
    """Hash after parsing, beside the sort, when the snapshot cannot exist yet: local files, and no
    snapshot of ``name`` from a source of the same size (so re-ingesting the same bytes still hashes
    first and parses nothing)."""
    sizes = [local_size(s) for s in (source, test_source) if s]
    if any(n is None for n in sizes):
        return None
    if any(int((ref.manifest.get("source") or {}).get("bytes", -1)) == sizes[0]
           for ref in ds.list_snapshots(store, name)):
        return None
    return _Hashing([s for s in (source, test_source) if s])


def ingest_source(
    source: str,
    store: str,
    name: str | None = None,
    *,
    fmt: str | None = None,
    columns: dict[str, str] | str | None = None,
    delimiter: str | None = None,
    rating_range: tuple[float, float] | None = None,
    max_reject_fraction: float = 0.01,
    test_source: str | None = None,
    progress: Progress | None = None,
) -> SnapshotRef:
    """Ingest ``source`` (and ``test_source``) into ``STORE/datasets/NAME/SNAPSHOT`` and return it.

    Re-ingesting the same bytes with the same options returns the existing snapshot with
    ``reused=True`` after only hashing the file(s). Raises ``InputError`` (one line naming the
    file) for an unreadable file or when more than ``max_reject_fraction`` of rows are rejected;
    nothing is written then.
    """
    source, store = os.fspath(source), os.fspath(store)
    check_param(0.0 <= max_reject_fraction <= 1.0, "max_reject_fraction", max_reject_fraction, "in [0, 1]")
    name, cols, rating_range = _checked_options(source, name, fmt, columns, rating_range)
    hashing = _hash_later(source, test_source, store, name)
    if hashing is None:
        plan = planned_snapshot(source, store, name, fmt=fmt, columns=cols, delimiter=delimiter,
                                rating_range=rating_range, test_source=test_source)
        if plan.exists:
            return _reused(plan, store)
    try:
        return _ingest(source, store, name, fmt, cols, delimiter, rating_range, max_reject_fraction, test_source,
                       progress, plan if hashing is None else None, hashing)
    finally:
        if hashing is not None:
            hashing.stop()


def _reused(plan: SnapshotPlan, store: str) -> SnapshotRef:
    manifest = read_json(plan.fs, snapshot_file(plan.path, ds.MANIFEST_FILE))
    return SnapshotRef(store, plan.name, plan.snapshot, plan.path, manifest, reused=True)


def _ingest(
    source: str, store: str, name: str, fmt: str | None, cols: dict[str, str] | None, delimiter: str | None,
    rating_range: tuple[float, float] | None, max_reject_fraction: float, test_source: str | None,
    progress: Progress | None, plan: SnapshotPlan | None, hashing: _Hashing | None,
) -> SnapshotRef:
    """Parse, check, sort and write; ``plan`` when the sources are hashed already, else ``hashing``."""
    if plan is not None:
        nbytes, total = plan.nbytes, plan.nbytes + (plan.test_info[0] if plan.test_info else 0)
    else:
        sizes = [local_size(s) or 0 for s in (source, test_source) if s]
        nbytes, total = sizes[0], sum(sizes)
    spec = detect_format(source, read_sample(source), fmt, cols, delimiter)
    _return_freed_memory_promptly()
    users, items = IdMap(), IdMap()
    train = read_rows(source, spec, users, items, rating_range, progress, total)
    scale, counted = (declared_scale(*rating_range), None) if rating_range else _inferred_scale(train)
    n_outside = _apply_scale(train, spec, scale)
    _check_rejects(train, max_reject_fraction)
    test = None
    if test_source:
        test_spec = detect_format(test_source, read_sample(test_source), fmt or spec.name, cols, delimiter)
        test = read_rows(test_source, test_spec, users, items, rating_range, _after(progress, nbytes), total)
        n_outside += _apply_scale(test, test_spec, scale)  # the train file's scale
        _check_rejects(test, max_reject_fraction)
    if hashing is not None:
        hashing.start()
    files = [train] + ([test] if test else [])
    remap_u, user_ids = users.finalize(_used(files, "user", users.n) if n_outside else None)
    remap_i, item_ids = items.finalize(_used(files, "item", items.n) if n_outside else None)
    train_tab, train_dup = _finalize(train, remap_u, remap_i, len(item_ids))
    test_tab, test_dup = _finalize(test, remap_u, remap_i, len(item_ids)) if test else (None, 0)
    kept = [train_tab] + ([test_tab] if test_tab is not None else [])
    if counted is None or n_outside or train_dup or test is not None:  # the counts are of other rows
        counted = value_counts(part for t in kept for part in t.kept_parts("rating"))
    parts = [part for t in kept for part in t.kept_parts("rating")] if counted is None else []
    ratings = _rating_stats(source, parts, scale, counted)
    del parts
    _warn_shape(source, len(user_ids), len(item_ids))
    if plan is None:
        assert hashing is not None
        hashes = hashing.result()
        plan = _locate(store, name, hashes[0], hashes[1] if test_source else None, fmt, cols, delimiter, rating_range)
        if plan.exists:  # a concurrent ingest of the same bytes won meanwhile
            return _reused(plan, store)
    snap, path, sha, test_info, fs = plan.snapshot, plan.path, plan.sha256, plan.test_info, plan.fs
    nbytes = plan.nbytes

    manifest: dict[str, Any] = {
        "snapshot": snap,
        "dataset": name,
        "schema_version": SCHEMA_VERSION,
        "format": spec.name,
        "delimiter": spec.delimiter,
        "columns": dict(spec.roles),
        "source": {"url": source, "sha256": sha, "bytes": nbytes},
        "rows_read": train.rows_read,
        "rows_kept": train_tab.num_rows,
        "rows_rejected": train.rejects.count,
        "rows_duplicate": train_dup,
        "read_path": train.path,
        "n_users": len(user_ids),
        "n_items": len(item_ids),
        "has_timestamp": spec.has_timestamp,
        **ratings,
        **_ts_stats(kept),
    }
    if test is not None and test_tab is not None and test_info is not None:
        manifest["test_source"] = {
            "url": test_source,
            "sha256": test_info[1],
            "bytes": test_info[0],
            "rows_read": test.rows_read,
            "rows_kept": test_tab.num_rows,
            "rows_rejected": test.rejects.count,
            "rows_duplicate": test_dup,
        }
        manifest["n_test"] = test_tab.num_rows
    rejects = pa.concat_tables([train.rejects.table(source)] + ([test.rejects.table(test_source)] if test else []))
    manifest["rejects_by_reason"] = _count_reasons(f.rejects.by_reason() for f in files)
    tables = {
        ds.USERS_FILE: _id_table("user", user_ids),
        ds.ITEMS_FILE: _id_table("item", item_ids),
        ds.REJECTS_FILE: rejects,
    }
    sorted_rows = {ds.RATINGS_FILE: train_tab}
    if test_tab is not None:
        sorted_rows[ds.GIVEN_TEST_FILE] = test_tab
    try:
        with atomic_dir(fs, path) as tmp:
            for filename, rows in sorted_rows.items():
                write_batches(fs, snapshot_file(tmp, filename), RATINGS_SCHEMA, rows.batches(ROW_GROUP, reuse=True),
                              **RATINGS_PARQUET)
            for filename, table in tables.items():
                write_table(fs, snapshot_file(tmp, filename), table, row_group_size=ROW_GROUP)
            manifest["created_at"] = datetime.now(UTC).isoformat()
            manifest["files"] = checksums(fs, tmp)
            write_json(fs, snapshot_file(tmp, ds.MANIFEST_FILE), manifest)
    except FileExistsError:  # a concurrent ingest of the same bytes won: same content
        return _reused(plan, store)
    return SnapshotRef(store, name, snap, path, manifest, reused=False)


def _id_table(side: str, ids: pa.Array) -> pa.Table:
    """``{side}_idx`` (0..n-1, int32) and ``{side}_id`` (the raw ids)."""
    idx = from_numpy(np.arange(len(ids), dtype=np.int32))
    return pa.Table.from_arrays([idx, ids], names=[f"{side}_idx", f"{side}_id"])


def _after(progress: Progress | None, offset: int) -> Progress | None:
    """``progress`` for a second file: its bytes count after the first file's ``offset``."""
    if progress is None:
        return None
    return lambda done, total, message="": progress(offset + done, total, message)


def describe_rejects(ref: SnapshotRef) -> str | None:
    """One line saying how many rows were rejected, why, and where the rejects file is; None if none.

    E.g. ``3 rows rejected (2 non-numeric rating, 1 rating outside the inferred scale 1..5); see
    STORE/datasets/NAME/SNAPSHOT/rejects.parquet`` (reasons by count, then name). Counts both files
    of a two-file ingest.
    """
    m = ref.manifest
    n = int(m.get("rows_rejected", 0)) + int((m.get("test_source") or {}).get("rows_rejected", 0))
    if not n:
        return None
    reasons = sorted((m.get("rejects_by_reason") or {}).items(), key=lambda rc: (-rc[1], rc[0]))
    detail = f" ({', '.join(f'{c:,} {r}' for r, c in reasons)})" if reasons else ""
    return f"{n:,} row{'s' if n != 1 else ''} rejected{detail}; see {posixpath.join(ref.url, ds.REJECTS_FILE)}"


def _check_rejects(rows: FileRows, max_fraction: float) -> None:
    """One-line ``InputError`` when no rows, no valid rows, or too many rejects."""
    if rows.rows_read == 0:
        raise InputError(f"{rows.source}: no data rows (only a header or blank lines)")
    n_bad = rows.rejects.count
    frac = n_bad / rows.rows_read
    first = ", ".join(f"{line} ({reason})" for line, reason in rows.rejects.first(5))
    if frac > max_fraction:
        raise InputError(
            f"{rows.source}: {n_bad} of {rows.rows_read} rows rejected ({_pct(frac)} > --max-reject-fraction "
            f"{_pct(max_fraction)}); first bad lines: {first}"
        )
    if rows.n_valid == 0:
        raise InputError(f"{rows.source}: no valid rows; first bad lines: {first}")


def _pct(x: float) -> str:
    return f"{100 * x:.3g}%"


def _inferred_scale(rows: FileRows) -> tuple[RatingScale, ValueCounts | None]:
    """The scale the kept ratings of the train file show, and their counts when few distinct."""
    if not rows.n_valid:  # nothing to infer from; _check_rejects reports the file
        return RatingScale(-np.inf, np.inf, "none"), None
    counted = value_counts(rows.chunks["rating"])
    scale = infer_scale_from_counts(counted) if counted is not None else infer_scale(kept_ratings(rows))
    return scale, counted


def _apply_scale(rows: FileRows, spec: FormatSpec, scale: RatingScale) -> int:
    """Reject the rows outside an inferred ``scale`` (a declared one was applied while reading)."""
    if scale.declared or not rows.n_valid:
        return 0
    lines = apply_scale(rows, spec, scale)
    n = len(lines)
    if n:
        first = ", ".join(str(line) for line in np.sort(lines)[:5])
        warnings.warn(
            f"{rows.source}: {n:,} rating(s) outside the inferred scale {scale.label} rejected (lines {first}"
            f"{', ...' if n > 5 else ''}); pass --rating-range LOW,HIGH to set the scale yourself",
            DataWarning,
            stacklevel=4,
        )
    return n


def _used(files: list[FileRows], side: str, n: int) -> np.ndarray:
    """Mask of the provisional ``side`` ids that some kept row still refers to."""
    used = np.zeros(n, bool)
    for f in files:
        for part in f.chunks[side]:
            used[part] = True
    return used


def _count_reasons(parts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for reason, n in part.items():
            total[reason] = total.get(reason, 0) + n
    return dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))


def _rating_stats(source: str, parts: list[np.ndarray], scale: RatingScale,
                  counted: ValueCounts | None = None) -> dict[str, Any]:
    """rating_min/max/values over the kept rows (their ``counted`` values when given, else ``parts``),
    and the scale used (declared or inferred, and how)."""
    if counted is not None:
        values = counted.values
    else:
        r = np.concatenate(parts) if len(parts) > 1 else parts[0]
        values = np.unique(r)
    lo, hi = float(values[0]), float(values[-1])
    listed = [float(str(v)) for v in values] if len(values) <= MAX_RATING_VALUES else None
    if not scale.declared:
        _warn_odd_ratings(source, scale, values)
    return {
        "rating_min": float(str(np.float32(lo))),
        "rating_max": float(str(np.float32(hi))),
        "rating_values": listed,
        "rating_range": [scale.low, scale.high],
        "rating_range_declared": scale.declared,
        "rating_range_inferred_from": scale.inferred_from(),
    }


def _warn_odd_ratings(source: str, scale: RatingScale, values: np.ndarray) -> None:
    odd = []
    if scale.rule != "common scale":
        odd.append(f"they fit no common rating scale, so the scale is the bulk ± its width: {scale.label}")
    elif (scale.low, scale.high) in _STAR_SCALES and not np.all(values * 2 == np.round(values * 2)):
        odd.append(f"values that are not half stars on the {scale.label} scale")
    if len(values) == 1:
        odd.append(f"all are {values[0]:g}, so there is no preference to learn")
    if odd:
        warnings.warn(
            f"{source}: ratings look unusual ({'; '.join(odd)}); pass --rating-range LOW,HIGH to set the scale",
            DataWarning,
            stacklevel=5,
        )


def _warn_shape(source: str, n_users: int, n_items: int) -> None:
    if min(n_users, n_items) < 2:
        warnings.warn(
            f"{source}: only {n_users:,} user(s) and {n_items:,} item(s); matrix factorization needs several of each",
            DataWarning,
            stacklevel=4,
        )


def _ts_stats(kept: list[SortedRows]) -> dict[str, Any]:
    ranges = [(int(p.min()), int(p.max())) for t in kept if t.num_rows for p in t.kept_parts("timestamp")]
    return {
        "timestamp_min": min(lo for lo, _ in ranges) if ranges else None,
        "timestamp_max": max(hi for _, hi in ranges) if ranges else None,
    }


def _finalize(rows: FileRows, remap_u: np.ndarray, remap_i: np.ndarray, n_items: int) -> tuple[SortedRows, int]:
    """Final indices, duplicates resolved (latest timestamp, then last seen), in (user, item) order.

    Each column is assembled from its chunks (and freed there) just before it is needed: user and
    item only as far as the pair key.
    """
    key = rows.pair_keys(remap_u, remap_i, n_items)
    return SortedRows.build(key, rows.column("rating"), rows.column("timestamp"), n_items, threads=workers())


def _return_freed_memory_promptly() -> None:
    """Make glibc serve big blocks with mmap, so freed arrays go back to the OS at once.

    glibc raises its mmap threshold dynamically after big frees and then keeps freed chunks in
    the heap; with the column-at-a-time assembly and sort of 20M rows that kept ~0.5 GB of
    dead memory resident. A no-op elsewhere (other C libraries, macOS, Windows).
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD = 1 MiB (also fixes it: no dynamic raise)
    except (OSError, AttributeError):
        pass


_MALLOC_TUNED = False
