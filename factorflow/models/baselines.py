"""Baselines reported beside every model: the global mean and regularized user+item biases.

Both return rank-0 :class:`FactorArrays` (factors of shape (n, 0)), so the evaluator and
the publisher treat them like any factor model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from factorflow.errors import check_param
from factorflow.factors import FactorArrays
from factorflow.models.base import check_fold_in, config_params, is_int, is_number

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = ["BiasBaseline", "BiasConfig", "GlobalMean", "GlobalMeanConfig"]


def _mean(ratings: np.ndarray) -> float:
    """μ: the mean of the train ratings (float64 sums), 0 when there are none."""
    return float(np.mean(ratings, dtype=np.float64)) if ratings.size else 0.0


def _rank0(n_users: int, n_items: int, b: np.ndarray, c: np.ndarray, mu: float) -> FactorArrays:
    return FactorArrays(np.zeros((n_users, 0), np.float32), np.zeros((n_items, 0), np.float32),
                        b.astype(np.float32), c.astype(np.float32), mu)


@dataclass
class GlobalMeanConfig:
    """The global mean has no hyper-parameters."""

    kind: Literal["global-mean"] = "global-mean"

    def __post_init__(self) -> None:
        check_param(self.kind == "global-mean", "kind", self.kind, "'global-mean'")


class GlobalMean:
    """r̂ = μ, the train mean."""

    kind: ClassVar[str] = "global-mean"

    def __init__(self, config: GlobalMeanConfig | None = None) -> None:
        self.config = config if config is not None else GlobalMeanConfig()
        self.history: list[dict[str, Any]] = []
        self._factors: FactorArrays | None = None

    def fit(self, train: sp.spmatrix, *, progress: Any = None, callback: Any = None) -> GlobalMean:
        """μ = the train mean (closed form: no steps, so ``progress``/``callback`` go unused)."""
        import scipy.sparse as sp

        train = sp.csr_matrix(train)
        n_u, n_i = train.shape
        mu = _mean(train.data)
        self._factors = _rank0(n_u, n_i, np.zeros(n_u), np.zeros(n_i), mu)
        return self

    def factors(self) -> FactorArrays:
        if self._factors is None:
            raise RuntimeError("GlobalMean.factors() called before fit()")
        return self._factors

    def params(self) -> dict[str, Any]:
        return {}

    def fold_in(self, factors: FactorArrays, item_idx: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, float]:
        """Nothing to learn about a user: (empty w, b = 0)."""
        check_fold_in(factors, item_idx, ratings)
        return np.zeros(factors.rank, dtype=np.float32), 0.0


@dataclass
class BiasConfig:
    """Regularization of the user and item biases; defaults best of 0–10 on ml-latest-small."""

    kind: Literal["bias"] = "bias"
    reg_user: float = field(default=3.0, metadata={"help": "bias model: λ on the user biases (default 3)"})
    reg_item: float = field(default=3.0, metadata={"help": "bias model: λ on the item biases (default 3)"})
    iterations: int = field(default=10, metadata={"help": "bias model: alternating updates (default 10)"})

    def __post_init__(self) -> None:
        check_param(self.kind == "bias", "kind", self.kind, "'bias'")
        for name in ("reg_user", "reg_item"):
            v = getattr(self, name)
            check_param(is_number(v) and v >= 0 and np.isfinite(v), name, v, "a finite number >= 0")
        check_param(is_int(self.iterations) and self.iterations >= 1, "iterations", self.iterations,
                    "an integer >= 1")
        self.reg_user, self.reg_item, self.iterations = float(self.reg_user), float(self.reg_item), int(
            self.iterations)


class BiasBaseline:
    """r̂ = μ + b_i + c_j minimizing Σ(r − μ − b_i − c_j)² + λ_u‖b‖² + λ_i‖c‖².

    Alternating exact updates, items first (from b = 0, the first item step is the damped
    item mean): c_j = Σ_i (r_ij − μ − b_i) / (n_j + λ_i), then b_i = Σ_j (r_ij − μ − c_j) /
    (n_i + λ_u). Each step is an exact block minimizer, so the loss never increases.
    Defaults λ_u = λ_i = 3 (best of 0–10 on ml-latest-small, random 80/20: RMSE 0.8617).
    ``BiasBaseline(reg_user=1.0)`` is short for ``BiasBaseline(BiasConfig(reg_user=1.0))``.
    """

    kind: ClassVar[str] = "bias"

    def __init__(self, config: BiasConfig | None = None, **values: Any) -> None:
        self.config = config if config is not None else BiasConfig(**values)
        self.history: list[dict[str, Any]] = []
        self._factors: FactorArrays | None = None

    @property
    def reg_user(self) -> float:
        return self.config.reg_user

    @property
    def reg_item(self) -> float:
        return self.config.reg_item

    def fit(self, train: sp.spmatrix, *, progress: Any = None, callback: Any = None) -> BiasBaseline:
        """The alternating updates, compiled (:mod:`factorflow.models._bias_fit`: one pass over the
        train CSR per half-sweep, sums in ``np.bincount``'s order; ``progress``/``callback`` unused)."""
        import scipy.sparse as sp

        from factorflow.models._bias_fit import bias_sweeps

        train = sp.csr_matrix(train)
        n_u, n_i = train.shape
        mu = _mean(train.data)
        b, c = bias_sweeps(train.indptr.astype(np.int64, copy=False), train.indices, train.data, n_i, mu,
                           self.reg_user, self.reg_item, self.config.iterations)
        self._factors = _rank0(n_u, n_i, b, c, mu)
        return self

    def factors(self) -> FactorArrays:
        if self._factors is None:
            raise RuntimeError("BiasBaseline.factors() called before fit()")
        return self._factors

    def params(self) -> dict[str, Any]:
        return config_params(self.config)

    def fold_in(self, factors: FactorArrays, item_idx: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, float]:
        """The exact minimizer of the user's loss Σ_j (r_j − μ − b − c_j)² + λ_u b²:
        b = Σ_j (r_j − μ − c_j) / (n + λ_u) (w is empty: the model has rank 0)."""
        items, r = check_fold_in(factors, item_idx, ratings)
        resid = r - float(factors.global_mean) - factors.item_bias[items].astype(np.float64)
        b = float(resid.sum() / max(len(items) + self.reg_user, 1e-12)) if len(items) else 0.0
        return np.zeros(factors.rank, dtype=np.float32), b
