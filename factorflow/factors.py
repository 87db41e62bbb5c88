"""The fitted arrays of a factor model: what evaluation, publishing and serving read.

A neutral module (no model, storage or serving code): every model's fit ends in
:class:`FactorArrays`, the store writes and reads them, and serving scores with them.
Prediction is r̂_ij = w_iᵀ u_j + b_i + c_j + μ (spec §4). :class:`FactorArrays` is a
:class:`~factorflow.serving.scoring.Scorer` (``n_users``, ``n_items``, ``score_pairs``,
``score_users``), the interface evaluation and top-N serving score through.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FactorArrays:
    """A fitted factor model: arrays in dense index space (see the snapshot's users/items tables).

    Users/items with no training ratings have zero factors and zero bias, so their
    prediction falls back to μ plus whichever bias is known.
    """

    user_factors: np.ndarray  # (n_users, K) float32
    item_factors: np.ndarray  # (n_items, K) float32
    user_bias: np.ndarray  # (n_users,) float32
    item_bias: np.ndarray  # (n_items,) float32
    global_mean: float
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. posterior std for BPMF

    @property
    def rank(self) -> int:
        return int(self.user_factors.shape[1])

    @property
    def n_users(self) -> int:
        return int(self.user_factors.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_factors.shape[0])

    def predict(self, users: np.ndarray, items: np.ndarray, *, chunk: int = 1 << 18) -> np.ndarray:
        """r̂ for each (users[k], items[k]) pair, unclipped, float64.

        r̂ = ((w_u·v_i + b_u) + c_i) + μ with every term widened to float64, in one compiled pass
        over the pairs (``factorflow._pair_scores``): no gathered factor rows, so memory is the
        output alone for any number of pairs. ``chunk`` is accepted for compatibility and unused.
        Indices follow NumPy's rules (negative ones count from the end; out of range raises
        ``IndexError``).
        """
        from factorflow._pair_scores import pair_scores

        users = _checked_index(users, self.n_users, "user")
        items = _checked_index(items, self.n_items, "item")
        if users.shape != items.shape:
            raise ValueError(f"users and items differ in shape: {users.shape} != {items.shape}")
        out = np.empty(users.shape, dtype=np.float64)
        if users.size:
            w, v = np.ascontiguousarray(self.user_factors), np.ascontiguousarray(self.item_factors)
            pair_scores(w, v, self.user_bias, self.item_bias, float(self.global_mean), users.reshape(-1),
                        items.reshape(-1), out.reshape(-1))
        return out

    # --- the Scorer interface (factorflow.serving.scoring) --------------------------------------

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """r̂ for each (users[k], items[k]) pair, unclipped, float64 (:meth:`predict`)."""
        return self.predict(users, items)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """r̂ of a block of users against every item: float32, shape (len(users), n_items).

        Computed as ``W[users] @ Uᵀ + b[users, None] + (c + μ)`` in float32, in that order, so the
        batch file, the top-N metrics and ``recommend`` give bit-identical scores for the same
        block of users (BLAS may round a product differently in a block of another shape).
        :func:`factorflow.serving.topn.top_n_blocks` scores in cache-sized tiles of its own (its
        BLAS products, then the biases from :meth:`item_terms` in the same order, inside its
        compiled selection), so its scores agree with these to float32 rounding, not bit for bit.
        """
        who = np.asarray(users, dtype=np.int64)
        item_t, offset = self.item_terms()
        s = self.user_products(who, item_t)
        s += self.user_bias[who, None].astype(np.float32)
        s += offset
        return s

    def item_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """The item side of :meth:`score_users`: (Uᵀ as a C-contiguous float32 (K, n_items) array,
        c + μ as float32 (n_items,)). Computed afresh on each call (the arrays may be edited)."""
        item_t = np.ascontiguousarray(self.item_factors.T, dtype=np.float32)
        offset = (self.item_bias + np.float32(self.global_mean)).astype(np.float32)
        return item_t, offset

    def user_products(self, users: np.ndarray, item_t: np.ndarray | None = None,
                      out: np.ndarray | None = None) -> np.ndarray:
        """``W[users] @ Uᵀ`` in float32 (one BLAS call), written into ``out`` when given (C-contiguous
        float32 of shape (len(users), n_items)); ``item_t`` is :meth:`item_terms`' first array."""
        who = np.asarray(users, dtype=np.int64)
        if item_t is None:
            item_t = self.item_terms()[0]
        return np.matmul(self.user_factors[who].astype(np.float32), item_t, out=out)


def _checked_index(idx: np.ndarray, size: int, what: str) -> np.ndarray:
    """``idx`` as int64 with NumPy's indexing rules made explicit (the compiled kernel checks nothing)."""
    idx = np.asarray(idx, dtype=np.int64)
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < -size or hi >= size:
            bad = lo if lo < -size else hi
            raise IndexError(f"index {bad} is out of bounds for {what} axis with size {size}")
        if lo < 0:
            idx = np.where(idx < 0, idx + size, idx)
    return idx
