"""Raw id ↔ dense index, built incrementally while streaming.

While reading, each new raw id gets the next index in first-seen order; at the end
:meth:`IdMap.finalize` re-numbers them in sorted raw-id order (numeric order when every id
is a canonical integer, ``str(int(s)) == s``, else byte order of the strings as given).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CANONICAL_INT = r"^(0|-?[1-9][0-9]{0,17})$"


class IdMap:
    """A growing set of raw ids (strings, first-seen order) and their provisional indices."""

    def __init__(self) -> None:
        self._values: pa.Array = pa.array([], pa.string())

    @property
    def n(self) -> int:
        return len(self._values)

    def encode(self, col: pa.Array) -> np.ndarray:
        """Provisional int32 index of each raw id in ``col`` (new ids are appended)."""
        idx = pc.index_in(col, value_set=self._values)
        if idx.null_count:
            miss = pc.is_null(idx)
            fresh = pc.filter(col, miss)
            new = pc.unique(fresh)
            sub = pc.add(pc.index_in(fresh, value_set=new), pa.scalar(self.n, pa.int32()))
            self._values = pa.concat_arrays([self._values, new])
            idx = pc.replace_with_mask(idx, miss, sub)
        return idx.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)

    def truncate(self, n: int) -> None:
        """Forget ids added after the first ``n`` (used when a file is re-read)."""
        self._values = self._values.slice(0, n)

    def finalize(self) -> tuple[np.ndarray, pa.Array]:
        """``(remap, ids)``: ``remap[provisional] = final`` index; ``ids[final]`` = raw id.

        ``ids`` is int64 when every raw id is a canonical integer, else the strings as given.
        """
        vals = self._values
        n = len(vals)
        if n == 0 or pc.all(pc.match_substring_regex(vals, CANONICAL_INT)).as_py():
            ints = pc.cast(vals, pa.int64()).to_numpy()
            order = np.argsort(ints, kind="stable")
            ids: pa.Array = pa.array(ints[order], pa.int64())
        else:
            order = pc.sort_indices(vals).to_numpy()
            ids = vals.take(pa.array(order))
        remap = np.empty(n, np.int32)
        remap[order] = np.arange(n, dtype=np.int32)
        return remap, ids
