"""Scoring with a saved Keras network, for the kinds whose r̂ is not a dot product (keras-deep, keras-residual).

:class:`NetworkScorer` is a :class:`~factorflow.serving.scoring.Scorer` over a prediction
network with inputs ``user``/``item`` (int32 dense indices) and output r̂ − μ (the
:class:`~factorflow.models.base.NetworkScored` contract); evaluation, batch top-N and
``recommend`` use it exactly as they use factor tables. The network travels as the bytes of a
``.keras`` file (:func:`network_to_bytes` / :func:`network_from_bytes`), which the run folder and
the published version store beside the tables. Keras is imported only when a network is used.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

#: model.json ``serving``: how ``recommend`` scores a published version.
SERVING_TABLES = "dot-product"  # r̂ = w·u + b + c + μ from the factor tables
SERVING_NETWORK = "network"  # r̂ from the published network.keras (the tables hold its embeddings)

#: How many (user, item) pairs one ``predict`` call scores (bounds memory of ``score_users``).
PAIRS_PER_CALL = 1 << 18


class NetworkScorer:
    """r̂ = network(user, item) + μ over ``n_users`` × ``n_items`` dense indices."""

    def __init__(self, network: Any, n_users: int, n_items: int, global_mean: float,
                 batch_size: int = 1 << 14) -> None:
        self.network = network
        self._n_users, self._n_items = int(n_users), int(n_items)
        self.global_mean = float(global_mean)
        self.batch_size = int(batch_size)

    @property
    def n_users(self) -> int:
        return self._n_users

    @property
    def n_items(self) -> int:
        return self._n_items

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        if len(users) == 0:
            return np.zeros(0, dtype=np.float64)
        out = self.network.predict({"user": users.astype(np.int32), "item": items.astype(np.int32)},
                                   batch_size=self.batch_size, verbose=0)
        return np.asarray(out, dtype=np.float64).reshape(-1) + self.global_mean

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """r̂ for each (users[k], items[k]) pair: float64, unclipped."""
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        out = np.empty(len(users), dtype=np.float64)
        for lo in range(0, len(users), PAIRS_PER_CALL):
            out[lo:lo + PAIRS_PER_CALL] = self._predict(users[lo:lo + PAIRS_PER_CALL], items[lo:lo + PAIRS_PER_CALL])
        return out

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """r̂ of each user against every item: float32, shape (len(users), n_items)."""
        users = np.asarray(users, dtype=np.int64)
        out = np.empty((len(users), self._n_items), dtype=np.float32)
        per_call = max(1, PAIRS_PER_CALL // max(1, self._n_items))
        all_items = np.arange(self._n_items, dtype=np.int64)
        for lo in range(0, len(users), per_call):
            block = users[lo:lo + per_call]
            scores = self._predict(np.repeat(block, self._n_items), np.tile(all_items, len(block)))
            out[lo:lo + len(block)] = scores.reshape(len(block), self._n_items)
        return out


def network_to_bytes(network: Any) -> bytes:
    """The ``.keras`` file of a Keras model, as bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        network.save(path)
        with open(path, "rb") as f:
            return f.read()


def network_from_bytes(data: bytes, where: str = "model.keras") -> Any:
    """A Keras model from the bytes of a ``.keras`` file (``where`` names it in errors)."""
    import keras

    from factorflow.errors import InputError

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        with open(path, "wb") as f:
            f.write(data)
        try:
            return keras.saving.load_model(path, compile=False)
        except Exception as exc:  # noqa: BLE001 - any load failure is a bad file
            raise InputError(f"{where}: not a loadable Keras model ({type(exc).__name__}: {exc})") from None


def model_scorer(model: Any) -> Any:
    """The :class:`~factorflow.serving.scoring.Scorer` of a fitted model: its network for a
    :class:`~factorflow.models.base.NetworkScored` kind, else its factor tables."""
    from factorflow.models.base import NetworkScored

    factors = model.factors()
    if isinstance(model, NetworkScored):
        return NetworkScorer(model.network(), factors.n_users, factors.n_items, factors.global_mean)
    return factors
