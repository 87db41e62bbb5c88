"""Ingest: a ratings file (CSV / MovieLens formats, gzip or zip, local or fsspec URL) →
a content-addressed dataset snapshot ``STORE/datasets/NAME/SNAPSHOT/``.

Files written (see ARCHITECTURE.md "Snapshot"): ``ratings.parquet`` (user_idx int32,
item_idx int32, rating float32, timestamp int64; sorted by user then item; one row per pair),
``users.parquet`` / ``items.parquet`` (dense index ↔ raw id, int64 when every id is a
canonical integer, else the strings exactly as given), ``rejects.parquet`` (source, line,
raw, reason), ``[given_test.parquet]`` and ``manifest.json`` with:

``snapshot, dataset, schema_version (1), created_at (ISO UTC), format, delimiter, columns,
source {url, sha256, bytes}, [test_source {url, sha256, bytes, rows_read, rows_kept,
rows_rejected, rows_duplicate}], rows_read, rows_kept, rows_rejected, rows_duplicate,
read_path ("fast"|"robust"), n_users, n_items, rating_min, rating_max, rating_values (sorted
distinct values when ≤ 100, else null), rating_range (declared or inferred [min, max]),
rating_range_declared, timestamp_min, timestamp_max, has_timestamp, [n_test]``.

Counts refer to the main source; ``n_users``/``n_items`` and the rating/timestamp statistics
cover both files of a two-file ingest. SNAPSHOT is the first 16 hex digits of the source's
SHA-256 (with ``--test-source`` or explicit format/columns/delimiter/range options: of those
combined), so the same bytes ingested again return the existing snapshot, unparsed.

Reject reasons: ``wrong column count``, ``missing field``, ``non-numeric rating``,
``non-finite rating``, ``unparsable timestamp`` (timestamps are integers, e.g. Unix
seconds), ``rating out of range``. Line numbers are 1-based physical lines of the file
(after decompression); ``raw`` is the line's fields re-joined with the delimiter (the exact
text for wrong-column-count rows). Blank lines are skipped and not counted.
"""

from __future__ import annotations

from ..storage.datasets import SnapshotRef
from .formats import FORMATS, FormatSpec, detect_format
from .reader import REASONS
from .snapshot import SnapshotPlan, default_name, ingest_source, planned_snapshot, resolve_duplicates, snapshot_id

__all__ = [
    "FORMATS",
    "REASONS",
    "FormatSpec",
    "SnapshotRef",
    "default_name",
    "detect_format",
    "ingest_source",
    "resolve_duplicates",
    "snapshot_id",
    "planned_snapshot",
    "SnapshotPlan",
]
