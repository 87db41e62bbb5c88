"""Result rows as strict JSON values and as a typed Arrow table: what leaderboards and backfills store."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (strict JSON), numpy scalars as Python."""
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def rows_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> pa.Table:
    """``rows`` (dicts with the same keys) as an Arrow table in ``columns`` order (default: the
    first row's keys); numbers are ``float64``, everything else (and all-null columns) ``string``."""
    columns = list(columns if columns is not None else (rows[0] if rows else []))
    arrays = {}
    for c in columns:
        values = [strict_json(r.get(c)) for r in rows]
        numeric = [v for v in values if v is not None]
        if numeric and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numeric):
            arrays[c] = pa.array([None if v is None else float(v) for v in values], type=pa.float64())
        else:
            arrays[c] = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    return pa.table(arrays) if arrays else pa.table({})
