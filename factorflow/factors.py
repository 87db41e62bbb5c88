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

        Gathers factor rows ``chunk`` pairs at a time, so memory stays O(chunk·K) for any
        number of pairs (16M train ratings at K=50 would otherwise gather 13 GB).
        """
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        out = np.empty(len(users), dtype=np.float64)
        for lo in range(0, len(users), chunk):
            u, i = users[lo:lo + chunk], items[lo:lo + chunk]
            out[lo:lo + chunk] = np.einsum(
                "ij,ij->i", self.user_factors[u].astype(np.float64), self.item_factors[i].astype(np.float64)
            )
        out += self.user_bias[users]
        out += self.item_bias[items]
        out += self.global_mean
        return out

    # --- the Scorer interface (factorflow.serving.scoring) --------------------------------------

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """r̂ for each (users[k], items[k]) pair, unclipped, float64 (:meth:`predict`)."""
        return self.predict(users, items)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """r̂ of a block of users against every item: float32, shape (len(users), n_items).

        Computed as ``W[users] @ Uᵀ + b[users, None] + (c + μ)`` in float32, in that order, so the
        batch file, the top-N metrics and ``recommend`` give bit-identical scores.
        """
        who = np.asarray(users, dtype=np.int64)
        item_t = np.ascontiguousarray(self.item_factors.T, dtype=np.float32)
        s = self.user_factors[who].astype(np.float32) @ item_t
        s += self.user_bias[who, None].astype(np.float32)
        s += (self.item_bias + np.float32(self.global_mean)).astype(np.float32)
        return s
