"""The rating scale of a file: declared (``--rating-range``) or inferred, robust to outliers.

Inference rule (:func:`infer_scale`), on the n kept ratings of the (train) file:

1. **Bulk.** Set aside the k = max(1, ceil(0.001·n)) smallest and k largest values; the rest span
   the bulk [lo_b, hi_b]. When n ≤ 2k + 2 the bulk is the whole range (too few values to tell).
   A bulk of one value says nothing about the scale's width: then the whole range is the bulk
   if a common scale holds it (six 0.5s and a 1.5 are half stars, 0.5..5), else the one value
   is (a thousand 4s and a 1e6: 1..5, and the 1e6 is rejected).
2. **Snap.** Take the narrowest common rating scale in :data:`COMMON_SCALES` that contains the
   bulk (e.g. 1..5, 0.5..5, 1..10, -10..10 for Jester, 0..100).
3. **Widen to a neighbour.** Among the common scales that contain that one and are at most 25%
   wider, take the one that leaves the fewest ratings outside (ties: the narrower). So a rare
   0.5 in half-star data or a rare 0 on a 0..10 scale is kept, not rejected; a 7 or a 1e6
   among 1..5 ratings is still outside every neighbour.
4. **No common scale fits** the bulk: use [lo_b − w, hi_b + w] with w = hi_b − lo_b (w = the
   bulk's magnitude, at least 1, when all bulk values are equal), so only gross outliers go.

Ratings outside the scale are rejected (reason ``rating outside the inferred scale LO..HI``).
A given test file uses the train file's scale. The rule is deterministic (a partial sort, or for
files with few distinct ratings the same order statistics from their counts).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from factorflow.data.ingest.lines import find_lines
from factorflow.data.ingest.reader import OUTSIDE_SCALE, FileRows

if TYPE_CHECKING:
    from factorflow.data.ingest.formats import FormatSpec

# (low, high), any order: the narrowest that fits wins
COMMON_SCALES: tuple[tuple[float, float], ...] = (
    (0.0, 1.0),
    (-1.0, 1.0),
    (1.0, 5.0),
    (0.5, 5.0),
    (0.0, 5.0),
    (1.0, 7.0),
    (1.0, 10.0),
    (0.5, 10.0),
    (0.0, 10.0),
    (-10.0, 10.0),
    (1.0, 100.0),
    (0.0, 100.0),
)
TRIM_FRACTION = 0.001
MAX_DISTINCT = 4096  # value_counts gives up beyond this many distinct ratings (then: a partial sort)
NEIGHBOUR_WIDTH = 1.25


@dataclass(frozen=True)
class RatingScale:
    """A closed rating interval ``[low, high]`` and how it was obtained.

    ``rule`` is ``"declared"``, ``"common scale"`` or ``"bulk ± width"``; ``bulk`` and
    ``trimmed`` (values set aside on each side) describe the inference, ``n`` the ratings seen.
    """

    low: float
    high: float
    rule: str
    bulk: tuple[float, float] | None = None
    trimmed: int = 0
    n: int = 0

    @property
    def declared(self) -> bool:
        return self.rule == "declared"

    @property
    def label(self) -> str:
        """``"1..5"``, ``"0.5..5"``."""
        return f"{self.low:g}..{self.high:g}"

    def outside(self, r: np.ndarray) -> np.ndarray:
        """Boolean mask of the values of ``r`` outside ``[low, high]``."""
        return (r < self.low) | (r > self.high)

    def inferred_from(self) -> dict[str, Any] | None:
        """What the manifest records as ``rating_range_inferred_from`` (None when declared)."""
        if self.declared:
            return None
        assert self.bulk is not None
        return {"rule": self.rule, "bulk": [_f32(self.bulk[0]), _f32(self.bulk[1])],
                "set_aside_each_side": self.trimmed, "n_ratings": self.n}


def declared_scale(low: float, high: float) -> RatingScale:
    """The scale given with ``--rating-range``."""
    return RatingScale(float(low), float(high), "declared")


def _f32(x: float) -> float:
    """A float32 value as the short decimal it was written as (0.1 → 0.1, not 0.100000001)."""
    return float(str(np.float32(x)))


@dataclass(frozen=True)
class ValueCounts:
    """A multiset of ratings: sorted distinct ``values`` and their ``counts``."""

    values: np.ndarray
    counts: np.ndarray

    @property
    def n(self) -> int:
        return int(self.counts.sum())


def value_counts(parts: Iterable[np.ndarray], max_distinct: int = MAX_DISTINCT) -> ValueCounts | None:
    """The distinct values of ``parts`` (together) and their counts; None beyond ``max_distinct`` values.

    One hash pass per part and a merge of the small results: for the usual few rating values
    much cheaper than a partial sort of all ratings. -0.0 and 0.0 count as one value (as they
    compare equal).
    """
    values: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    for part in parts:
        v, c = np.unique(part, return_counts=True)
        if len(v) > max_distinct:
            return None
        values.append(v)
        counts.append(c.astype(np.int64))
        if len(values) >= 32:
            merged = _merge(values, counts)
            values, counts = [merged.values], [merged.counts]
    out = _merge(values, counts)
    return out if len(out.values) <= max_distinct else None


def _merge(values: list[np.ndarray], counts: list[np.ndarray]) -> ValueCounts:
    if not values:
        return ValueCounts(np.zeros(0, np.float32), np.zeros(0, np.int64))
    v, inverse = np.unique(np.concatenate(values), return_inverse=True)
    c = np.zeros(len(v), np.int64)
    np.add.at(c, inverse, np.concatenate(counts))
    return ValueCounts(v, c)


def bulk_of(r: np.ndarray) -> tuple[float, float, int]:
    """``(lo_b, hi_b, k)``: the range left after setting aside the k smallest and k largest values."""
    n = len(r)
    k = max(1, math.ceil(TRIM_FRACTION * n))
    if n <= 2 * k + 2:
        return float(r.min()), float(r.max()), 0
    part = np.partition(r, (k, n - 1 - k))
    return float(part[k]), float(part[n - 1 - k]), k


def _bulk_of_counts(vc: ValueCounts) -> tuple[float, float, int]:
    """:func:`bulk_of` of the multiset ``vc``: the k-th smallest value is the first whose running count exceeds k."""
    n = vc.n
    k = max(1, math.ceil(TRIM_FRACTION * n))
    if n <= 2 * k + 2:
        return float(vc.values[0]), float(vc.values[-1]), 0
    cum = np.cumsum(vc.counts)
    lo_at, hi_at = np.searchsorted(cum, [k, n - 1 - k], side="right")
    return float(vc.values[lo_at]), float(vc.values[hi_at]), k


def infer_scale(r: np.ndarray) -> RatingScale:
    """The scale the bulk of the ratings ``r`` shows (see the module docstring for the rule)."""
    if len(r) == 0:
        raise ValueError("infer_scale needs at least one rating")
    return _infer(bulk_of(r), float(r.min()), float(r.max()), len(r),
                  lambda s: int(np.count_nonzero((r < s[0]) | (r > s[1]))))


def infer_scale_from_counts(vc: ValueCounts) -> RatingScale:
    """:func:`infer_scale` of the ratings counted in ``vc`` (the same result, without the ratings)."""
    if vc.n == 0:
        raise ValueError("infer_scale needs at least one rating")
    v, c = vc.values, vc.counts
    return _infer(_bulk_of_counts(vc), float(v[0]), float(v[-1]), vc.n,
                  lambda s: int(c[(v < s[0]) | (v > s[1])].sum()))


def _infer(bulk: tuple[float, float, int], lo: float, hi: float, n: int,
           n_outside: Callable[[tuple[float, float]], int]) -> RatingScale:
    lo_b, hi_b, k = bulk
    if lo_b == hi_b and k and any(s[0] <= lo and hi <= s[1] for s in COMMON_SCALES):
        lo_b, hi_b, k = lo, hi, 0
    fits = sorted((s for s in COMMON_SCALES if s[0] <= lo_b and hi_b <= s[1]), key=lambda s: s[1] - s[0])
    if not fits:
        w = hi_b - lo_b or max(1.0, abs(lo_b), abs(hi_b))
        return RatingScale(lo_b - w, hi_b + w, "bulk ± width", (lo_b, hi_b), k, n)
    best = fits[0]
    if not (best[0] <= lo and hi <= best[1]):
        width = best[1] - best[0]
        neighbours = [s for s in fits if s[0] <= best[0] and best[1] <= s[1] and s[1] - s[0] <= NEIGHBOUR_WIDTH * width]
        best = min(neighbours, key=lambda s: (n_outside(s), s[1] - s[0]))
    return RatingScale(best[0], best[1], "common scale", (lo_b, hi_b), k, n)


def kept_ratings(rows: FileRows) -> np.ndarray:
    """All kept ratings of ``rows`` in one float32 array (the chunks stay)."""
    parts = rows.chunks["rating"]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def apply_scale(rows: FileRows, spec: FormatSpec, scale: RatingScale) -> np.ndarray:
    """Move the kept rows of ``rows`` whose rating is outside ``scale`` to its rejects; return their lines.

    Vectorized per chunk; only when some row is outside is the file scanned once more to find
    those rows' line numbers and text (``raw`` is then the exact line).
    """
    positions, values, offset = [], [], 0
    for part in rows.chunks["rating"]:
        out = np.flatnonzero(scale.outside(part))
        if len(out):
            positions.append(offset + out)
            values.append(part[out])
        offset += len(part)
    if not positions:
        return np.zeros(0, np.int64)
    k = np.concatenate(positions)
    keys, nonblank = rows.kept_line_keys(k)
    lines, texts = find_lines(rows.source, keys, skip=rows.first_line - 1, nonblank=nonblank)
    _check_located(rows.source, spec, lines, texts, np.concatenate(values), quoted=not nonblank)
    rows.drop_kept(k)
    rows.rejects.scale_label = scale.label
    rows.rejects.add(lines, pa.array(texts, pa.string()), np.full(len(k), OUTSIDE_SCALE, np.int8))
    return lines


def _check_located(source: str, spec: FormatSpec, lines: np.ndarray, texts: list[str], ratings: np.ndarray,
                   quoted: bool) -> None:
    """Guard against a mis-located line: each must hold the rating read from it (else a bug)."""
    names = spec.column_names or spec.header or []
    col = names.index(spec.roles["rating"])
    fmt = {"delimiter": spec.delimiter} if quoted else {"delimiter": spec.delimiter, "quoting": csv.QUOTE_NONE}
    for line, text, want in zip(lines.tolist(), texts, ratings.tolist(), strict=True):
        fields = next(csv.reader([text], **fmt), [])
        try:
            got = np.float32(float(fields[col].strip().removeprefix("+")))
        except (IndexError, ValueError):
            got = None
        if got is None or not got == np.float32(want):
            raise RuntimeError(f"internal error: {source} line {line} ({text[:80]!r}) does not hold rating {want:g}")
