"""Ratings triples as a CSR matrix.

A neutral module (no storage, data or model code), like :mod:`factorflow.factors`: the split
maths (``factorflow.data.splits``) and the store's split reader (``factorflow.storage.splits``)
both need it, and storage must not import the data layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp


def items_sorted_within(users: np.ndarray, items: np.ndarray) -> bool:
    """Within each run of equal users, items strictly increase."""
    same = users[1:] == users[:-1]
    return bool(np.all(items[1:][same] > items[:-1][same]))


def snapshot_sorted(users: np.ndarray, items: np.ndarray) -> bool:
    """Rows sorted by (user, item), as a snapshot's ratings are."""
    return users.size < 2 or bool(np.all(np.diff(users) >= 0) and items_sorted_within(users, items))


def csr_from_triples(
    users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int
) -> sp.csr_matrix:
    """CSR (float32 data, int32 indices, sorted column indices) of unique (user, item) triples."""
    import scipy.sparse as sp

    if not snapshot_sorted(users, items):
        order = np.lexsort((items, users))
        users, items, ratings = users[order], items[order], ratings[order]
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    idx_dtype = np.int32 if indptr[-1] < np.iinfo(np.int32).max else np.int64
    m = sp.csr_matrix(
        (ratings.astype(np.float32), items.astype(np.int32), indptr.astype(idx_dtype)),
        shape=(n_users, n_items),
    )
    m.has_sorted_indices = True
    return m
