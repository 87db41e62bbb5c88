"""Biased ALS: r̂_ij = w_iᵀu_j + b_i + c_j + μ by alternating exact solves (spec §§3–5).

Loss (spec §5, μ = train mean, not learned):

    J = Σ_Ω (r_ij − r̂_ij)² + λ (‖W‖² + ‖U‖² + ‖b‖² + ‖c‖²)

or, with ``weighted=True`` (ALS-WR), λ·n_i on each user's (w_i, b_i) and λ·n_j on each
item's (u_j, c_j); an optional ``reg_bias`` replaces the biases' penalty by reg_bias(‖b‖²+‖c‖²).
Defaults (K = 50, λ_i = 6 + 0.02·n_i on the factors, 3 on the biases, 5 sweeps; see
``benchmarks/als_defaults.py``) were chosen to hold on two very different data sets: held-out RMSE
0.8443 on ml-latest-small (random 80/20, mean of seeds 0–2; the former λ = 12 gave 0.8438 there)
and 0.5451 at the synthetic MovieLens-20M shape (random 10% test; λ = 12 overfits there: 0.6011).
The constant part regularizes rows with few ratings (ml-latest-small's long tail of items), the
per-rating part heavy rows; held-out RMSE at the 20M shape is lowest near sweep 4–5 and then
creeps up as the factors fit the noise, so 5 sweeps is also an early stop.

A sweep is a user half-sweep (every (w_i, b_i) solved jointly given U, c) then an item
half-sweep (every (u_j, c_j) given W, b), each one call of the row-block kernel
:func:`solve_block` over a whole CSR. The Dask driver calls the same kernel per
partition block, so serial and parallel fits agree.

Warm start: :meth:`ALS.set_initial` gives the next fit starting factors for some rows (e.g. the
published CURRENT's, matched by raw id); :meth:`ALS.init_sides` — which the serial fit and the
Dask driver both start from — overwrites the random start of those rows with them. Since the
first user half-sweep solves every (w_i, b_i) given (U, c), it is the item side's start that
carries over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from factorflow.errors import ParameterError, check_param
from factorflow.factors import FactorArrays
from factorflow.models.base import StepCallback, check_fold_in, config_params, is_int, is_number
from factorflow.models.loop import fit_serial, step_message, train_csr_parts

if TYPE_CHECKING:
    import scipy.sparse as sp

    from factorflow.progress import Progress

__all__ = [
    "ALS",
    "ALSConfig",
    "init_factors",
    "objective",
    "train_csr_parts",
]


@dataclass
class ALSConfig:
    """ALS hyper-parameters; defaults tuned on ml-latest-small (see benchmarks/als_tuning.py)."""

    #: Fields added after versions were published, with the value those versions were trained with.
    ADDED_FIELDS: ClassVar[dict[str, Any]] = {"reg_per_rating": 0.0, "solver": "cholesky", "cg_steps": 3}

    kind: Literal["als"] = "als"
    rank: int = field(default=50, metadata={"help": "latent dimensionality K (default 50)"})
    reg: float = field(default=6.0, metadata={"help": "regularization λ, the constant part (default 6)"})
    sweeps: int = field(default=5, metadata={"help": "ALS sweeps (default 5)"})
    weighted: bool = field(default=False, metadata={"help": "ALS-WR: scale λ by each row's rating count"})
    seed: int = field(default=42, metadata={"help": "seed of the model's initial factors (default 42)",
                                            "option": "--model-seed"})
    init_scale: float = field(default=0.1, metadata={"help": "std of the random initial factors (default 0.1)"})
    dtype: str = field(default="float32", metadata={"help": "float32 or float64 factors (default float32)"})
    reg_per_rating: float = field(default=0.02, metadata={
        "help": "λ added per rating of a row: λ_i = reg + reg_per_rating·n_i (default 0.02; "
                "unused with --weighted, where λ_i = reg·n_i)"})
    solver: str = field(default="cholesky", metadata={
        "help": "'cholesky' (exact row solves, default) or 'cg' (a few conjugate-gradient steps from the "
                "previous factors: faster at large rank, approximate)"})
    cg_steps: int = field(default=3, metadata={"help": "conjugate-gradient steps per row with --solver cg (default 3)"})
    reg_bias: float | None = field(default=3.0, metadata={
        "help": "λ on the biases (default 3); 'none': biases share λ with the factors (spec §5)"})

    def __post_init__(self) -> None:
        check_param(self.kind == "als", "kind", self.kind, "'als'")
        check_param(is_int(self.rank) and self.rank >= 1, "rank", self.rank, "an integer >= 1")
        check_param(is_number(self.reg) and self.reg >= 0 and np.isfinite(self.reg), "reg", self.reg,
                    "a finite number >= 0")
        check_param(is_int(self.sweeps) and self.sweeps >= 1, "sweeps", self.sweeps, "an integer >= 1")
        check_param(isinstance(self.weighted, (bool, np.bool_)), "weighted", self.weighted,
                    "true or false")
        check_param(is_int(self.seed) and self.seed >= 0, "seed", self.seed, "an integer >= 0")
        check_param(is_number(self.init_scale) and self.init_scale > 0 and np.isfinite(self.init_scale),
                    "init_scale", self.init_scale, "a finite number > 0")
        check_param(self.dtype in ("float32", "float64"), "dtype", self.dtype,
                    "'float32' or 'float64'")
        check_param(is_number(self.reg_per_rating) and self.reg_per_rating >= 0 and np.isfinite(self.reg_per_rating),
                    "reg_per_rating", self.reg_per_rating, "a finite number >= 0")
        check_param(self.solver in ("cholesky", "cg"), "solver", self.solver, "'cholesky' or 'cg'")
        check_param(is_int(self.cg_steps) and self.cg_steps >= 1, "cg_steps", self.cg_steps, "an integer >= 1")
        self.cg_steps = int(self.cg_steps)
        check_param(self.reg_bias is None or (is_number(self.reg_bias) and self.reg_bias >= 0
                    and np.isfinite(self.reg_bias)), "reg_bias", self.reg_bias,
                    "None or a finite number >= 0")
        self.rank, self.sweeps, self.seed = int(self.rank), int(self.sweeps), int(self.seed)
        self.reg, self.init_scale = float(self.reg), float(self.init_scale)
        # weighted (ALS-WR: λ_i = reg·n_i) has no constant part to add to: the per-rating term is reg itself
        self.reg_per_rating = 0.0 if self.weighted else float(self.reg_per_rating)
        self.weighted = bool(self.weighted)
        self.reg_bias = None if self.reg_bias is None else float(self.reg_bias)


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


def half_sweep(csr: sp.csr_matrix, other_factors: np.ndarray, other_bias: np.ndarray,
               mu: float, reg: float, weighted: bool,
               reg_bias: float | None = None, reg_per_rating: float = 0.0) -> tuple[np.ndarray, np.ndarray, float]:
    """One half-sweep over all rows of ``csr`` (a single :func:`solve_block` call)."""
    from factorflow.models._solve import solve_block

    return solve_block(csr.indptr.astype(np.int64), csr.indices.astype(np.int32), csr.data,
                       other_factors, other_bias, mu, reg, weighted, reg_bias, reg_per_rating=reg_per_rating)


def penalty(f: np.ndarray, b: np.ndarray, counts: np.ndarray, reg: float, weighted: bool,
            reg_bias: float | None = None, reg_per_rating: float = 0.0) -> float:
    """Σ_rows λ_i (‖f_i‖² + b_i²), or λ_i ‖f_i‖² + reg_bias b_i² when reg_bias is given;
    λ_i = reg·n_i (weighted) or reg + reg_per_rating·n_i."""
    lam = reg * counts if weighted else reg + reg_per_rating * counts
    fsq = np.einsum("ij,ij->i", f.astype(np.float64), f.astype(np.float64))
    bsq = b.astype(np.float64) ** 2
    return float(lam @ fsq + (lam @ bsq if reg_bias is None else reg_bias * bsq.sum()))


def objective(train: sp.spmatrix, factors: FactorArrays, reg: float, weighted: bool,
              reg_bias: float | None = None, reg_per_rating: float = 0.0) -> float:
    """The regularized loss J (module docstring) of ``factors`` on the users×items ``train``."""
    import scipy.sparse as sp

    coo = sp.coo_matrix(train)
    err = coo.data.astype(np.float64) - factors.predict(coo.row, coo.col)
    n_u = np.bincount(coo.row, minlength=factors.n_users).astype(np.float64)
    n_i = np.bincount(coo.col, minlength=factors.n_items).astype(np.float64)
    return (float(err @ err)
            + penalty(factors.user_factors, factors.user_bias, n_u, reg, weighted, reg_bias, reg_per_rating)
            + penalty(factors.item_factors, factors.item_bias, n_i, reg, weighted, reg_bias, reg_per_rating))


sweep_message = step_message  # kept for readers of older code: one progress line per sweep


class ALS:
    """Biased ALS: serial ``fit``, and the block kernel the Dask driver maps (``BlockAlternating``)."""

    kind: ClassVar[str] = "als"
    step_unit: ClassVar[str] = "sweep"

    def __init__(self, config: ALSConfig | None = None) -> None:
        self.config = config if config is not None else ALSConfig()
        self.history: list[dict[str, Any]] = []
        self._factors: FactorArrays | None = None
        self._initial: tuple[FactorArrays, np.ndarray, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for every block task of the Dask driver: without the (driver-only) initial factors."""
        state = dict(self.__dict__)
        state["_initial"] = None
        return state

    # --- warm start ---------------------------------------------------------------------------

    def set_initial(self, factors: FactorArrays, user_known: np.ndarray, item_known: np.ndarray) -> None:
        """Start the next fit from ``factors`` (in the fit's dense index space) on the rows where
        ``user_known`` / ``item_known`` is true; the other rows keep :func:`init_factors`' start.
        ParameterError when the rank is not ``config.rank``."""
        if factors.rank != self.config.rank:
            raise ParameterError(f"initial factors: rank {factors.rank} is not the model's rank {self.config.rank}")
        user_known, item_known = np.asarray(user_known, dtype=bool), np.asarray(item_known, dtype=bool)
        if user_known.shape != (factors.n_users,) or item_known.shape != (factors.n_items,):
            raise ParameterError("initial factors: the known-row masks must have one entry per user / item")
        self._initial = (factors, user_known, item_known)

    # --- BlockAlternating -------------------------------------------------------------------

    def n_steps(self) -> int:
        return self.config.sweeps

    def init_sides(self, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:func:`init_factors`, with the rows given to :meth:`set_initial` (if any) taken from there."""
        w, b, u, c = init_factors(self.config, n_users, n_items)
        if self._initial is None:
            return w, b, u, c
        f, users, items = self._initial
        if (f.n_users, f.n_items) != (n_users, n_items):
            raise ParameterError(f"initial factors: shape {(f.n_users, f.n_items)} users×items is not the fit's "
                                 f"{(n_users, n_items)}")
        w[users], b[users] = f.user_factors[users], f.user_bias[users]
        u[items], c[items] = f.item_factors[items], f.item_bias[items]
        return w, b, u, c

    def half_step_context(self, step: int, side: str, own: tuple[np.ndarray, np.ndarray],
                          other: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
        """With ``solver='cg'``, the side's current (factors, biases): CG's starting point."""
        return own if self.config.solver == "cg" else None

    def solve_rows(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                   other: tuple[np.ndarray, np.ndarray], mu: float, context: Any = None,
                   start: int = 0) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(w_i, b_i) of every row of the block (module docstring): exact, or with ``solver='cg'``
        ``cg_steps`` CG steps from the rows' current values (``context`` = the side's (factors,
        biases), rows ``start:`` of it); its sse and its penalty. Deterministic."""
        from factorflow.models._solve import solve_block, solve_block_cg

        cfg = self.config
        if cfg.solver == "cg" and context is not None:
            rows = slice(start, start + len(indptr) - 1)
            factors, bias, sse = solve_block_cg(indptr, indices, data, other[0], other[1], mu, cfg.reg,
                                                cfg.weighted, cfg.reg_bias, context[0][rows], context[1][rows],
                                                cfg.cg_steps, reg_per_rating=cfg.reg_per_rating)
        else:
            factors, bias, sse = solve_block(indptr, indices, data, other[0], other[1], mu, cfg.reg, cfg.weighted,
                                             cfg.reg_bias, reg_per_rating=cfg.reg_per_rating)
        counts = np.diff(indptr).astype(np.float64)
        return factors, bias, float(sse), penalty(factors, bias, counts, cfg.reg, cfg.weighted, cfg.reg_bias,
                                                  cfg.reg_per_rating)

    def set_fitted(self, factors: FactorArrays, history: list[dict[str, Any]]) -> None:
        self._factors, self.history = factors, history

    # --- FactorModel --------------------------------------------------------------------------

    def fit(self, train: sp.spmatrix, *, progress: Progress | None = None,
            callback: StepCallback | None = None) -> ALS:
        """Run ``config.sweeps`` sweeps on a users×items CSR; fills ``history`` per sweep."""
        return fit_serial(self, train, progress=progress, callback=callback)

    def factors(self) -> FactorArrays:
        if self._factors is None:
            raise RuntimeError("ALS.factors() called before fit()")
        return self._factors

    def params(self) -> dict[str, Any]:
        return config_params(self.config)

    # --- FoldsIn, MemoryBounded ---------------------------------------------------------------

    def fold_in(self, factors: FactorArrays, item_idx: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, float]:
        """A new user's (w, b) against fixed items: the user half-sweep itself on one row.

        With ũ_j = [u_j; 1] over the rated items, x = [w; b] solves
        (Σ ũ_jũ_jᵀ + Λ) x = Σ (r_j − c_j − μ) ũ_j with this model's λ (λ·n if ``weighted``;
        ``reg_bias`` on the bias entry when set) — the exact minimizer of the user's loss.
        """
        from factorflow.models._solve import solve_block

        items, r = check_fold_in(factors, item_idx, ratings)
        if len(items) == 0:
            return np.zeros(factors.rank, dtype=np.float32), 0.0
        cfg = self.config
        w, b, _ = solve_block(np.array([0, len(items)], dtype=np.int64), items.astype(np.int32),
                              r.astype(np.float32), factors.item_factors.astype(np.float32),
                              factors.item_bias.astype(np.float32), float(factors.global_mean), cfg.reg,
                              cfg.weighted, cfg.reg_bias, reg_per_rating=cfg.reg_per_rating)
        return w[0], float(b[0])

    @staticmethod
    def min_fit_bytes(config: ALSConfig, n_users: int = 0, n_items: int = 0) -> int:
        """A lower bound on one fitting process's memory: a row's (K+1)² float64 normal equations
        and their Cholesky factor, plus both factor tables and a copy of each in ``config.dtype``."""
        k = config.rank
        return 2 * (k + 1) ** 2 * 8 + 2 * (n_users + n_items) * k * np.dtype(config.dtype).itemsize

