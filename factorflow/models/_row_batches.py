"""Rows of a sparse matrix as dense minibatches, one batch at a time (the AutoRec kinds' input).

An autoencoder over a ratings matrix takes whole rows (an item's vector of users' ratings, or a
user's vector of item ratings) as samples, but the matrix must never be dense: at the
MovieLens-20M shape (138k users × 27k items) that is 15 GB of float32. :class:`RowCSR` keeps the
rows sparse (explicit zeros kept: a centred rating can be exactly 0 and is still observed), and
:func:`dense_rows` densifies a chosen set of rows into (values, mask) with
``mask[k, c] = 1`` iff (rows[k], c) is stored. :class:`RowBatches` is the Keras
``PyDataset`` over it: batch k of an epoch is rows ``order[k·B:(k+1)·B]`` of a permutation drawn
from a seeded generator (:meth:`RowBatches.shuffle`, called once per epoch by the fit), so each
row is yielded exactly once per epoch, and memory is O(B · n_cols) whatever the number of rows.

This module imports Keras at import time; the model modules import it inside their ``fit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

__all__ = ["RowBatches", "RowCSR", "dense_rows", "row_csr"]


@dataclass(frozen=True)
class RowCSR:
    """A rows×cols sparse matrix in CSR arrays (no scipy operation ever prunes its stored zeros)."""

    indptr: np.ndarray  # (n_rows + 1,) int64
    indices: np.ndarray  # (nnz,) int32, sorted within each row
    data: np.ndarray  # (nnz,) float32
    shape: tuple[int, int]

    @property
    def n_rows(self) -> int:
        return self.shape[0]

    @property
    def counts(self) -> np.ndarray:
        """Stored entries per row."""
        return np.diff(self.indptr)

    def scipy(self) -> Any:
        """The same matrix as a ``scipy.sparse.csr_matrix`` (for products; stored zeros are harmless there)."""
        import scipy.sparse as sp

        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape)


def row_csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> RowCSR:
    """The :class:`RowCSR` of (rows[k], cols[k]) = values[k] (pairs must be unique)."""
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    order = np.lexsort((cols, rows))
    indptr = np.zeros(shape[0] + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    return RowCSR(indptr, cols[order].astype(np.int32), np.asarray(values, np.float32)[order],
                  (int(shape[0]), int(shape[1])))


def dense_rows(m: RowCSR, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, mask), both float32 (len(rows), n_cols): the chosen rows densified, zeros where not stored."""
    rows = np.asarray(rows, np.int64)
    starts, lens = m.indptr[rows], m.counts[rows]
    total = int(lens.sum())
    # position k of the concatenated row slices: starts[r] + (k − first k of r)
    first = np.repeat(np.cumsum(lens) - lens, lens)
    pos = np.repeat(starts, lens) + (np.arange(total) - first)
    which = np.repeat(np.arange(len(rows)), lens)
    values = np.zeros((len(rows), m.shape[1]), np.float32)
    mask = np.zeros_like(values)
    values[which, m.indices[pos]] = m.data[pos]
    mask[which, m.indices[pos]] = 1.0
    return values, mask


class RowBatches(keras.utils.PyDataset):
    """Keras dataset of dense row batches: item ``k`` is ``(x, y)`` with ``x`` = the rows' values
    (b, n_cols) and ``y`` = ``stack([values, mask], -1)`` (b, n_cols, 2) — the target and which of
    its entries are observed, for a masked loss. The epoch covers ``rows`` (default: all), in the
    order of the current permutation; :meth:`shuffle` draws the next one from the seeded generator."""

    def __init__(self, m: RowCSR, batch_size: int, rng: np.random.Generator, rows: np.ndarray | None = None) -> None:
        super().__init__()
        self.m, self.batch_size, self.rng = m, int(batch_size), rng
        self.rows = np.arange(m.n_rows) if rows is None else np.asarray(rows, np.int64)
        self.order = self.rows.copy()

    def shuffle(self) -> None:
        """A new permutation of the rows (call once before each epoch)."""
        self.order = self.rows[self.rng.permutation(len(self.rows))]

    def batch_rows(self, k: int) -> np.ndarray:
        """The row indices of batch ``k`` in the current permutation."""
        return self.order[k * self.batch_size:(k + 1) * self.batch_size]

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __getitem__(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        values, mask = dense_rows(self.m, self.batch_rows(k))
        return values, np.stack([values, mask], axis=-1)
