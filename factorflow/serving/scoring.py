"""What evaluation and top-N serving need from a model: predicted ratings, nothing about how.

:class:`Scorer` is implemented by :class:`~factorflow.factors.FactorArrays` (r̂ = w·u + b + c + μ)
and can be implemented by any model that predicts a rating for a (user, item) pair in dense
index space (e.g. a saved Keras model). Rating metrics score pairs, top-N ranks blocks of users
against every item; exclusions (seen items, the candidate filter) are applied by the caller.
Operations that need factor vectors (cosine similar items, fold-in, ranking a folded-in user)
take :class:`~factorflow.factors.FactorArrays` instead.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Scorer(Protocol):
    """Predicted ratings r̂ in dense index space (users 0..n_users-1, items 0..n_items-1)."""

    @property
    def n_users(self) -> int:
        ...

    @property
    def n_items(self) -> int:
        ...

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """r̂ for each (users[k], items[k]) pair: float64, unclipped, shape (len(users),)."""
        ...

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """r̂ of each user in ``users`` against every item: float32, shape (len(users), n_items);
        a new array the caller may modify. Top-N ranks it with the seen and disallowed items
        skipped (:func:`factorflow.serving.topn.top_n_blocks`); a
        :class:`~factorflow.factors.FactorArrays` is ranked there without this call (tiles of the
        same formula; the product's last bit may differ by shape)."""
        ...
