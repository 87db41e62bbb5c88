"""numpy ↔ Arrow on ingest's fast path, without pyarrow's pandas probe.

``pa.array``, ``pa.scalar`` (and compute calls given Python scalars) import pandas the first time
they run, to check for its types: about 0.2 s and 40 MB of a short ingest process that never uses
pandas. Arrays built here come from numpy buffers (zero-copy) instead.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def from_numpy(values: np.ndarray) -> pa.Array:
    """A zero-copy Arrow array (no nulls) of a 1-d numeric or boolean numpy array."""
    values = np.ascontiguousarray(values)
    if values.dtype == np.bool_:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def values_of(arr: pa.Array, dtype: type[np.generic], copy: bool = True) -> np.ndarray:
    """The values of a fixed-width ``arr`` (slots that are null hold whatever Arrow left there).

    ``copy=False``: a read-only view of Arrow's buffer (which it keeps alive).
    """
    width = np.dtype(dtype).itemsize
    data = arr.buffers()[1]
    if not len(arr) or data is None:
        return np.zeros(len(arr), dtype)
    out = np.frombuffer(data, dtype, count=len(arr), offset=arr.offset * width)
    return out.copy() if copy else out


def mask_of(arr: pa.Array) -> np.ndarray:
    """A boolean Arrow array (no nulls) as numpy."""
    if not len(arr):
        return np.zeros(0, bool)
    bits = np.frombuffer(arr.buffers()[1], np.uint8)
    return np.unpackbits(bits, count=arr.offset + len(arr), bitorder="little")[arr.offset :].astype(bool)
