"""Biased ALS: r̂_ij = w_iᵀu_j + b_i + c_j + μ by alternating exact solves (spec §§3–5).

Loss (spec §5, μ = train mean, not learned):

    J = Σ_Ω (r_ij − r̂_ij)² + λ (‖W‖² + ‖U‖² + ‖b‖² + ‖c‖²)

or, with ``weighted=True`` (ALS-WR), λ·n_i on each user's (w_i, b_i) and λ·n_j on each
item's (u_j, c_j); an optional ``reg_bias`` replaces the biases' penalty by reg_bias(‖b‖²+‖c‖²).
Defaults (K=50, λ=12, 15 sweeps, unweighted: exactly the spec's loss) give test RMSE 0.8476 on
ml-latest-small, random 80/20, mean of seeds 0–2 (bias baseline 0.8617).

A sweep is a user half-sweep (every (w_i, b_i) solved jointly given U, c) then an item
half-sweep (every (u_j, c_j) given W, b), each one call of the row-block kernel
:func:`solve_block` over a whole CSR. The Dask driver calls the same kernel per
partition block, so serial and parallel fits agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from factorflow.errors import check_param
from factorflow.models._solve import solve_block, solve_block_reference
from factorflow.factors import FactorArrays
from factorflow.progress import Progress, report

__all__ = [
    "ALS",
    "ALSConfig",
    "init_factors",
    "objective",
    "solve_block",
    "solve_block_reference",
    "train_csr_parts",
]

SweepCallback = Callable[[int, FactorArrays], "dict[str, Any] | None"]


@dataclass
class ALSConfig:
    """ALS hyper-parameters; defaults tuned on ml-latest-small (see benchmarks/als_tuning.py)."""

    rank: int = 50
    reg: float = 12.0
    sweeps: int = 15
    weighted: bool = False
    seed: int = 42
    init_scale: float = 0.1
    dtype: str = "float32"
    reg_bias: float | None = 3.0  # λ on the biases; None: biases share λ_i with the factors (spec §5)

    def __post_init__(self) -> None:
        check_param(isinstance(self.rank, (int, np.integer)) and not isinstance(self.rank, bool)
                    and self.rank >= 1, "rank", self.rank, "an integer >= 1")
        check_param(_is_num(self.reg) and self.reg >= 0 and np.isfinite(self.reg), "reg", self.reg,
                    "a finite number >= 0")
        check_param(isinstance(self.sweeps, (int, np.integer)) and not isinstance(self.sweeps, bool)
                    and self.sweeps >= 1, "sweeps", self.sweeps, "an integer >= 1")
        check_param(isinstance(self.weighted, (bool, np.bool_)), "weighted", self.weighted,
                    "true or false")
        check_param(isinstance(self.seed, (int, np.integer)) and not isinstance(self.seed, bool)
                    and self.seed >= 0, "seed", self.seed, "an integer >= 0")
        check_param(_is_num(self.init_scale) and self.init_scale > 0 and np.isfinite(self.init_scale),
                    "init_scale", self.init_scale, "a finite number > 0")
        check_param(self.dtype in ("float32", "float64"), "dtype", self.dtype,
                    "'float32' or 'float64'")
        check_param(self.reg_bias is None or (_is_num(self.reg_bias) and self.reg_bias >= 0
                    and np.isfinite(self.reg_bias)), "reg_bias", self.reg_bias,
                    "None or a finite number >= 0")
        self.rank, self.sweeps, self.seed = int(self.rank), int(self.sweeps), int(self.seed)
        self.reg, self.init_scale = float(self.reg), float(self.init_scale)
        self.weighted = bool(self.weighted)
        self.reg_bias = None if self.reg_bias is None else float(self.reg_bias)


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def init_factors(
    config: ALSConfig, n_users: int, n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Starting (W, b, U, c): W then U drawn N(0, init_scale²) from ``default_rng(seed)``; zero biases.

    Depends only on (config, n_users, n_items), never on blocking. W is overwritten by the
    first user half-sweep; U and c = 0 are what it solves against.
    """
    dt = np.dtype(config.dtype)
    rng = np.random.default_rng(config.seed)
    w = (rng.standard_normal((n_users, config.rank)) * config.init_scale).astype(dt)
    u = (rng.standard_normal((n_items, config.rank)) * config.init_scale).astype(dt)
    return w, np.zeros(n_users, dt), u, np.zeros(n_items, dt)


def train_csr_parts(train: sp.spmatrix) -> tuple[sp.csr_matrix, sp.csr_matrix, float]:
    """(users×items CSR, items×users CSR, μ) with canonical sorted indices and float32 data."""
    if not sp.issparse(train):
        raise TypeError("train must be a scipy.sparse users×items matrix")
    by_user = sp.csr_matrix(train, dtype=np.float32)
    by_user.sum_duplicates()
    by_user.sort_indices()
    by_item = by_user.T.tocsr()
    by_item.sort_indices()
    mu = float(by_user.data.astype(np.float64).mean()) if by_user.nnz else 0.0
    return by_user, by_item, mu


def half_sweep(csr: sp.csr_matrix, other_factors: np.ndarray, other_bias: np.ndarray,
               mu: float, reg: float, weighted: bool,
               reg_bias: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """One half-sweep over all rows of ``csr`` (a single :func:`solve_block` call)."""
    return solve_block(csr.indptr.astype(np.int64), csr.indices.astype(np.int32), csr.data,
                       other_factors, other_bias, mu, reg, weighted, reg_bias)


def penalty(f: np.ndarray, b: np.ndarray, counts: np.ndarray, reg: float, weighted: bool,
             reg_bias: float | None = None) -> float:
    """Σ_rows λ_i (‖f_i‖² + b_i²), or λ_i ‖f_i‖² + reg_bias b_i² when reg_bias is given."""
    lam = reg * counts if weighted else np.full(counts.shape, reg)
    fsq = np.einsum("ij,ij->i", f.astype(np.float64), f.astype(np.float64))
    bsq = b.astype(np.float64) ** 2
    return float(lam @ fsq + (lam @ bsq if reg_bias is None else reg_bias * bsq.sum()))


def objective(train: sp.spmatrix, factors: FactorArrays, reg: float, weighted: bool,
              reg_bias: float | None = None) -> float:
    """The regularized loss J (module docstring) of ``factors`` on the users×items ``train``."""
    coo = sp.coo_matrix(train)
    err = coo.data.astype(np.float64) - factors.predict(coo.row, coo.col)
    n_u = np.bincount(coo.row, minlength=factors.n_users).astype(np.float64)
    n_i = np.bincount(coo.col, minlength=factors.n_items).astype(np.float64)
    return (float(err @ err)
            + penalty(factors.user_factors, factors.user_bias, n_u, reg, weighted, reg_bias)
            + penalty(factors.item_factors, factors.item_bias, n_i, reg, weighted, reg_bias))


def sweep_message(row: dict[str, Any]) -> str:
    """One progress line for a history row: train RMSE, and held-out RMSE when the callback gave it."""
    msg = f"train RMSE {row['train_rmse']:.4f}"
    return msg + (f", test RMSE {row['test_rmse']:.4f}" if "test_rmse" in row else "")


class ALS:
    """Serial biased ALS implementing the ``FactorModel`` protocol."""

    kind: ClassVar[str] = "als"

    def __init__(self, config: ALSConfig | None = None) -> None:
        self.config = config if config is not None else ALSConfig()
        self.history: list[dict[str, Any]] = []
        self._factors: FactorArrays | None = None

    def fit(self, train: sp.spmatrix, *, progress: Progress | None = None,
            callback: SweepCallback | None = None) -> ALS:
        """Run ``config.sweeps`` sweeps on a users×items CSR; fills ``history`` per sweep."""
        cfg = self.config
        by_user, by_item, mu = train_csr_parts(train)
        n_users, n_items = by_user.shape
        w, b, u, c = init_factors(cfg, n_users, n_items)
        n_u = np.diff(by_user.indptr).astype(np.float64)
        n_i = np.diff(by_item.indptr).astype(np.float64)
        self.history = []
        report(progress, 0, cfg.sweeps, "")
        for sweep in range(1, cfg.sweeps + 1):
            t0 = time.perf_counter()
            w, b, _ = half_sweep(by_user, u, c, mu, cfg.reg, cfg.weighted, cfg.reg_bias)
            u, c, sse = half_sweep(by_item, w, b, mu, cfg.reg, cfg.weighted, cfg.reg_bias)
            seconds = time.perf_counter() - t0
            self._factors = FactorArrays(w, u, b, c, mu)
            rmse = float(np.sqrt(sse / by_user.nnz)) if by_user.nnz else 0.0
            obj = (sse + penalty(w, b, n_u, cfg.reg, cfg.weighted, cfg.reg_bias)
                   + penalty(u, c, n_i, cfg.reg, cfg.weighted, cfg.reg_bias))
            row: dict[str, Any] = {"sweep": sweep, "train_rmse": rmse, "objective": obj,
                                   "seconds": seconds}
            if callback is not None:
                row.update(callback(sweep, self._factors) or {})
            self.history.append(row)
            report(progress, sweep, cfg.sweeps, sweep_message(row))
        return self

    def factors(self) -> FactorArrays:
        if self._factors is None:
            raise RuntimeError("ALS.factors() called before fit()")
        return self._factors

    def params(self) -> dict[str, Any]:
        return asdict(self.config)

    def min_fit_bytes(self, n_users: int = 0, n_items: int = 0) -> int:
        """A lower bound on one fitting process's memory: a row's (K+1)² float64 normal equations
        and their Cholesky factor, plus both factor tables and a copy of each in ``config.dtype``."""
        k = self.config.rank
        return 2 * (k + 1) ** 2 * 8 + 2 * (n_users + n_items) * k * np.dtype(self.config.dtype).itemsize
