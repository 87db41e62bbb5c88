"""Raw id ↔ dense index, built incrementally while streaming.

While reading, each new raw id gets the next index in first-seen order; at the end
:meth:`IdMap.finalize` re-numbers them in sorted raw-id order (numeric order when every id
is a canonical integer within int64, ``str(int(s)) == s``, else byte order of the strings as
given: one id like ``1.0``, ``007`` or ``99999999999999999999`` makes every id of that side a
string, kept exactly as written).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from factorflow.data.ingest.arrow import from_numpy, mask_of, values_of

CANONICAL_INT = r"^(0|-?[1-9][0-9]{0,18})$"
SMALL_LOOKUP = 8  # encode() uses the dict when the known ids outnumber the looked-up ones this many times
_INT64_LIMITS = {19: str(2**63 - 1), 20: "-" + str(2**63)}  # text length → extreme value of that length


def _all_int64(vals: pa.Array) -> bool:
    """Whether every string in ``vals`` is a canonical integer that fits int64."""
    if not pc.all(pc.match_substring_regex(vals, CANONICAL_INT)).as_py():
        return False
    lengths = values_of(pc.utf8_length(vals), np.int32)
    for n, limit in _INT64_LIMITS.items():  # texts of one length and sign compare like their numbers
        long = pc.filter(vals, from_numpy(lengths == n))
        if n == 19:  # 19 digits, or '-' and 18 digits (always in range)
            long = pc.filter(long, pc.invert(pc.starts_with(long, "-")))
        if len(long) and pc.max(long).as_py() > limit:
            return False
    return True


class IdMap:
    """A growing set of raw ids (strings, first-seen order) and their provisional indices."""

    def __init__(self) -> None:
        self._values: pa.Array = pa.nulls(0, pa.string())
        self._index: dict[str, int] | None = None  # raw id → index, once few ids are looked up among many

    @property
    def n(self) -> int:
        return len(self._values)

    def encode(self, col: pa.Array) -> np.ndarray:
        """Provisional int32 index of each raw id in ``col`` (new ids are appended, in first-seen order).

        ``pc.index_in`` hashes the whole set of known ids on every call; for a few ids looked up
        among many (a block's 4,000 users among 138,000) a Python dict kept beside it is ~10× cheaper.
        """
        if len(col) * SMALL_LOOKUP < self.n:
            return self._encode_few(col)
        idx = pc.index_in(col, value_set=self._values)
        out = values_of(idx, np.int32)
        if idx.null_count:
            miss = pc.is_null(idx)
            fresh = pc.filter(col, miss)
            new = pc.unique(fresh)
            out[mask_of(miss)] = values_of(pc.index_in(fresh, value_set=new), np.int32) + self.n
            self._append(new)
        return out

    def _encode_few(self, col: pa.Array) -> np.ndarray:
        if self._index is None:
            self._index = {v: k for k, v in enumerate(self._values.to_pylist())}
        index = self._index
        keys = col.to_pylist()
        out = np.fromiter((index.get(k, -1) for k in keys), np.int32, len(keys))
        miss = np.flatnonzero(out < 0)
        if len(miss):
            new: dict[str, int] = {}
            first: list[int] = []
            for p in miss.tolist():
                j = new.get(keys[p])
                if j is None:
                    j = new[keys[p]] = self.n + len(new)
                    first.append(p)
                out[p] = j
            self._append(col.take(from_numpy(np.asarray(first, np.int64))))
        return out

    def _append(self, new: pa.Array) -> None:
        """Add ``new`` (distinct, unseen ids) after the known ones."""
        if self._index is not None:
            n = self.n
            self._index.update((v, n + k) for k, v in enumerate(new.to_pylist()))
        self._values = pa.concat_arrays([self._values, new])

    def added_since(self, n: int) -> pa.Array:
        """The raw ids added after the first ``n``."""
        return self._values.slice(n)

    def truncate(self, n: int) -> None:
        """Forget ids added after the first ``n`` (used when a file is re-read)."""
        self._values = self._values.slice(0, n)
        self._index = None  # rebuilt when next needed

    def finalize(self, used: np.ndarray | None = None) -> tuple[np.ndarray, pa.Array]:
        """``(remap, ids)``: ``remap[provisional] = final`` index; ``ids[final]`` = raw id.

        ``ids`` is int64 when every raw id is a canonical integer within int64, else the strings
        as given. With ``used`` (a mask over provisional indices) the other ids are dropped
        (their ``remap`` is -1): ids seen only in rows rejected after reading.
        """
        vals = self._values
        keep = None
        if used is not None and not used.all():
            keep = np.flatnonzero(used)
            vals = vals.take(from_numpy(keep))
        n = len(vals)
        if n == 0 or _all_int64(vals):
            ints = values_of(pc.cast(vals, pa.int64()), np.int64)
            order = np.argsort(ints, kind="stable")
            ids: pa.Array = from_numpy(ints[order])
        else:
            order = values_of(pc.sort_indices(vals), np.uint64).astype(np.int64)
            ids = vals.take(from_numpy(order))
        remap = np.empty(n, np.int32)
        remap[order] = np.arange(n, dtype=np.int32)
        if keep is not None:
            full = np.full(self.n, -1, np.int32)
            full[keep] = remap
            remap = full
        return remap, ids
