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
rejects_by_reason {reason: count} (both files), read_path ("fast"|"robust"), n_users, n_items,
rating_min, rating_max, rating_values (sorted distinct values when ≤ 100, else null),
rating_range ([low, high]: the scale, declared with --rating-range or inferred), rating_range_declared,
rating_range_inferred_from ({rule, bulk, set_aside_each_side, n_ratings}, null when declared),
timestamp_min, timestamp_max, has_timestamp, [n_test]``.

Without ``--rating-range`` the scale is inferred from the train file's valid ratings, robust to
outliers (``factorflow.data.ingest.scale``: the bulk after setting aside the 0.1% most extreme values
on each side, snapped to a common scale such as 1..5 or 0.5..5); rows outside it are rejected.
A given test file is held to the same scale.

Counts refer to the main source; ``n_users``/``n_items`` and the rating/timestamp statistics
cover both files of a two-file ingest. SNAPSHOT is the first 16 hex digits of the source's
SHA-256 (with ``--test-source`` or explicit format/columns/delimiter/range options: of those
combined), so the same bytes ingested again return the existing snapshot, unparsed.

Reject reasons: ``wrong column count``, ``missing field``, ``NUL byte in an id``,
``non-numeric rating``, ``non-finite rating`` (NaN, ±inf, or beyond float32), ``unparsable
timestamp`` (timestamps are integers up to 18 digits, e.g. Unix seconds; negative and far-future
ones are kept as ordering keys), ``rating out of range`` (outside --rating-range), ``rating outside
the inferred scale LO..HI``. Line numbers are 1-based physical lines of the file (after
decompression); ``raw`` is the line's fields re-joined with the delimiter (the exact text for
wrong-column-count and outside-scale rows). Blank lines are skipped and not counted.

File-level errors (``InputError``, one line, nothing written): empty or binary file, UTF-16 or
other non-UTF-8 text (names the line), missing header column, undetectable format or wrong
delimiter, a quoted field running over a line break (names the line), unreadable gzip/zip or a
zip with several files, no data rows, no valid rows, more rejects than --max-reject-fraction.
Ids are int64 when every id of a side is a canonical integer within int64, else strings exactly
as written (so ``1.0`` and ``1`` are different ids).

``describe_rejects(ref)`` gives the one-line note on a snapshot's rejects that the CLI prints.

pyarrow parses local plain and gzip files natively; a zip member or a remote file is first
decompressed into a local temporary file, so Arrow never holds a Python object (see
``formats.arrow_input``: one released during interpreter exit aborted the process).
"""

from __future__ import annotations

from factorflow.data.ingest.formats import FORMATS, FormatSpec, detect_format
from factorflow.data.ingest.ordering import resolve_duplicates
from factorflow.data.ingest.reader import REASONS
from factorflow.data.ingest.scale import COMMON_SCALES, RatingScale, infer_scale
from factorflow.data.ingest.snapshot import (
    SnapshotPlan,
    default_name,
    describe_rejects,
    ingest_source,
    planned_snapshot,
    snapshot_id,
)
from factorflow.storage.datasets import SnapshotRef

__all__ = [
    "COMMON_SCALES",
    "FORMATS",
    "REASONS",
    "FormatSpec",
    "RatingScale",
    "SnapshotPlan",
    "SnapshotRef",
    "default_name",
    "describe_rejects",
    "detect_format",
    "infer_scale",
    "ingest_source",
    "planned_snapshot",
    "resolve_duplicates",
    "snapshot_id",
]
