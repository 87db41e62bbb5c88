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


def rows_table(rows: list[dict[str, Any]], columns: list[str] | None = None, *,
               exact_types: bool = True) -> pa.Table:
    """``rows`` as an Arrow table in ``columns`` order (default: the first row's keys), each column
    typed from its values: all bools → ``bool``, all ints → ``int64``, numbers → ``float64``,
    anything else (and an all-null column) → ``string``. ``exact_types=False`` is the leaderboards'
    schema since their first version: every numeric column ``float64``, bools as strings."""
    columns = list(columns if columns is not None else (rows[0] if rows else []))
    arrays = {}
    for c in columns:
        values = [strict_json(r.get(c)) for r in rows]
        present = [v for v in values if v is not None]
        if exact_types and present and all(isinstance(v, bool) for v in present):
            arrays[c] = pa.array(values, type=pa.bool_())
        elif exact_types and present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            arrays[c] = pa.array(values, type=pa.int64())
        elif present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            arrays[c] = pa.array([None if v is None else float(v) for v in values], type=pa.float64())
        else:
            arrays[c] = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    return pa.table(arrays) if arrays else pa.table({})
