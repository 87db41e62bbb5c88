"""Bayesian PMF by Gibbs sampling (spec §9; Salakhutdinov & Mnih, ICML 2008), with biases.

Model, μ = the train mean (not sampled)::

    r_ij ~ N(μ + w_iᵀu_j + b_i + c_j, α⁻¹)
    x_i = [w_i; b_i] ~ N(m_U, Λ_U⁻¹),      y_j = [u_j; c_j] ~ N(m_V, Λ_V⁻¹)
    (m_U, Λ_U) ~ N(m_U | μ₀, (β₀Λ_U)⁻¹) · Wishart(Λ_U | W₀, ν₀)      (likewise for items)

The biases are the (K+1)-th coordinate of each side's vector, so they share the Normal–Wishart
prior (and are correlated with the factors through Λ), exactly as the ALS kernel augments ũ_j
= [u_j; 1]. Hyper-prior defaults as in the paper, for D = K+1 dimensions: μ₀ = 0, β₀ = 2,
ν₀ = D, W₀ = I; α = 2 (fixed).

A fit is ``init_sweeps`` sweeps of ALS (the paper starts from a MAP solution), then Gibbs sweeps:
draw (m_U, Λ_U) given the user vectors (the Normal–Wishart posterior, on the driver), draw every
user vector from its Gaussian conditional (:func:`factorflow.models._bpmf.sample_block`, per
partition block on the Dask driver), then the same for items. After ``burn_in`` sweeps every
``thin``-th of the ``samples`` sweeps is kept (T samples).

Prediction is the posterior mean r̂_ij = μ + (1/T) Σ_t (w_i⁽ᵗ⁾ᵀu_j⁽ᵗ⁾ + b_i⁽ᵗ⁾ + c_j⁽ᵗ⁾). It is
published as ordinary factor tables with one dot product: user row [w⁽¹⁾ … w⁽ᵀ⁾]/√T, item row
[u⁽¹⁾ … u⁽ᵀ⁾]/√T (so their dot product is (1/T) Σ_t w⁽ᵗ⁾ᵀu⁽ᵗ⁾) and the biases averaged over
the samples. The published rank is T·K (T ≤ ``max_kept``, default 16: tables at most 16× the
rank); T = published rank / ``rank``, and each sample's own prediction is recoverable from the
tables (:func:`sample_predictions`), which gives the predictive standard deviation.

Rows without training ratings stay zero (never drawn from the prior), so a cold user or item
falls back to μ plus the known bias, as for every factor model; they are left out of the
hyper-parameter statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from factorflow.errors import check_param
from factorflow.factors import FactorArrays
from factorflow.models.base import StepCallback, check_fold_in, config_params, is_int, is_number
from factorflow.models.loop import fit_serial

if TYPE_CHECKING:
    import scipy.sparse as sp

    from factorflow.progress import Progress

__all__ = ["BPMF", "BPMFConfig", "kept_steps", "sample_hyper", "sample_predictions", "tables_from_samples"]

SIDE_ID = {"user": 0, "item": 1}


@dataclass
class BPMFConfig:
    """BPMF hyper-parameters (module docstring)."""

    kind: Literal["bpmf"] = "bpmf"
    rank: int = field(default=30, metadata={"help": "latent dimensionality K (default 30)"})
    samples: int = field(default=200, metadata={"help": "bpmf: Gibbs sweeps after burn-in (default 200)"})
    burn_in: int = field(default=20, metadata={"help": "bpmf: Gibbs sweeps discarded first (default 20)"})
    thin: int = field(default=0, metadata={
        "help": "bpmf: keep every THIN-th sample (default 0: the smallest that keeps at most --max-kept)"})
    max_kept: int = field(default=16, metadata={
        "help": "bpmf: most samples kept in the published tables (width = kept × rank; default 16)"})
    alpha: float = field(default=2.0, metadata={"help": "bpmf: rating precision α (default 2)"})
    beta0: float = field(default=2.0, metadata={"help": "bpmf: Normal–Wishart β₀ (default 2)"})
    nu0: float | None = field(default=None, metadata={"help": "bpmf: Wishart degrees of freedom ν₀ (default K+1)"})
    w0: float = field(default=1.0, metadata={"help": "bpmf: Wishart scale W₀ = w0·I (default 1)"})
    init_sweeps: int = field(default=5, metadata={"help": "bpmf: ALS sweeps before sampling (default 5)"})
    init_reg: float = field(default=12.0, metadata={"help": "bpmf: λ of those ALS sweeps (default 12)"})
    seed: int = field(default=42, metadata={"help": "seed of the model's initial factors and draws (default 42)",
                                            "option": "--model-seed"})

    def __post_init__(self) -> None:
        check_param(self.kind == "bpmf", "kind", self.kind, "'bpmf'")
        for name in ("rank", "samples", "max_kept"):
            v = getattr(self, name)
            check_param(is_int(v) and v >= 1, name, v, "an integer >= 1")
        for name in ("burn_in", "thin", "init_sweeps", "seed"):
            v = getattr(self, name)
            check_param(is_int(v) and v >= 0, name, v, "an integer >= 0")
        for name in ("alpha", "beta0", "w0"):
            v = getattr(self, name)
            check_param(is_number(v) and v > 0 and np.isfinite(v), name, v, "a finite number > 0")
        check_param(is_number(self.init_reg) and self.init_reg > 0 and np.isfinite(self.init_reg), "init_reg",
                    self.init_reg, "a finite number > 0")
        check_param(self.thin <= self.samples if is_int(self.thin) and is_int(self.samples) else True, "thin",
                    self.thin, f"at most samples ({self.samples}), so at least one sample is kept")
        check_param(self.nu0 is None or (is_number(self.nu0) and self.nu0 > self.rank and np.isfinite(self.nu0)),
                    "nu0", self.nu0, f"None or a finite number > rank ({self.rank})")
        for name in ("rank", "samples", "burn_in", "thin", "max_kept", "init_sweeps", "seed"):
            setattr(self, name, int(getattr(self, name)))
        for name in ("alpha", "beta0", "w0", "init_reg"):
            setattr(self, name, float(getattr(self, name)))
        self.nu0 = None if self.nu0 is None else float(self.nu0)

    @property
    def dims(self) -> int:
        return self.rank + 1

    def effective_thin(self) -> int:
        """``thin``, or the smallest thinning that keeps at most ``max_kept`` of the ``samples``."""
        return self.thin or max(1, math.ceil(self.samples / self.max_kept))


def kept_steps(config: BPMFConfig) -> list[int]:
    """The sweeps (1-based, ALS init sweeps included) whose sample is kept: every ``thin``-th,
    counted back from the last sweep, at most ``max_kept``."""
    last = config.init_sweeps + config.burn_in + config.samples
    thin = config.effective_thin()
    n = max(1, min(config.max_kept, config.samples // thin))
    return [last - i * thin for i in range(n)][::-1]


def sample_hyper(x: np.ndarray, config: BPMFConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One draw of (m, Λ) from the Normal–Wishart posterior given the rows ``x`` (N×D):

    β* = β₀+N, ν* = ν₀+N, μ* = (β₀μ₀ + N x̄)/β*, W*⁻¹ = W₀⁻¹ + N S̄ + β₀N/β* (μ₀−x̄)(μ₀−x̄)ᵀ
    with S̄ the (biased) sample covariance; Λ ~ Wishart(W*, ν*), m ~ N(μ*, (β*Λ)⁻¹). With no rows
    it is a draw from the prior."""
    from scipy.stats import wishart

    d = config.dims
    nu0 = config.nu0 if config.nu0 is not None else float(d)
    n = len(x)
    w0_inv = np.eye(d) / config.w0
    mu0 = np.zeros(d)
    if n:
        x = np.asarray(x, dtype=np.float64)
        xbar = x.mean(axis=0)
        dev = x - xbar
        scatter = dev.T @ dev  # N·S̄
        diff = (mu0 - xbar)[:, None]
        w_inv = w0_inv + scatter + (config.beta0 * n / (config.beta0 + n)) * (diff @ diff.T)
        mean = (config.beta0 * mu0 + n * xbar) / (config.beta0 + n)
    else:
        w_inv, mean = w0_inv, mu0
    beta, nu = config.beta0 + n, nu0 + n
    scale = np.linalg.inv(w_inv)
    scale = (scale + scale.T) / 2
    lam = np.atleast_2d(wishart.rvs(df=nu, scale=scale, random_state=rng))
    cov = np.linalg.inv(beta * lam)
    m = rng.multivariate_normal(mean, (cov + cov.T) / 2)
    return m, lam


def tables_from_samples(samples: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                        mu: float) -> FactorArrays:
    """The published arrays of T kept samples (W, b, U, c): factors concatenated and scaled by
    1/√T (dot product = sample-mean of wᵀu), biases averaged (module docstring)."""
    t = len(samples)
    scale = np.float32(1.0 / math.sqrt(t))
    w = np.concatenate([s[0] for s in samples], axis=1).astype(np.float32) * scale
    u = np.concatenate([s[2] for s in samples], axis=1).astype(np.float32) * scale
    b = np.mean([s[1].astype(np.float64) for s in samples], axis=0).astype(np.float32)
    c = np.mean([s[3].astype(np.float64) for s in samples], axis=0).astype(np.float32)
    return FactorArrays(w, u, b, c, mu)


def sample_predictions(factors: FactorArrays, rank: int, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Each kept sample's prediction (T × pairs) recovered from published BPMF tables of ``rank`` K:
    T·(w_i⁽ᵗ⁾/√T)ᵀ(u_j⁽ᵗ⁾/√T) + b̄_i + c̄_j + μ. Their std over t is the predictive std of the
    factor part (the biases are published averaged)."""
    t = factors.rank // rank
    w = factors.user_factors[np.asarray(users)].astype(np.float64).reshape(len(users), t, rank)
    u = factors.item_factors[np.asarray(items)].astype(np.float64).reshape(len(items), t, rank)
    base = (factors.user_bias[users].astype(np.float64) + factors.item_bias[items] + factors.global_mean)
    return t * np.einsum("ptk,ptk->tp", w, u) + base[None, :]


class BPMF:
    """Gibbs-sampled BPMF with biases; ``BlockAlternating``, so the Dask driver runs its sweeps."""

    kind: ClassVar[str] = "bpmf"
    step_unit: ClassVar[str] = "sweep"

    def __init__(self, config: BPMFConfig | None = None) -> None:
        self.config = config if config is not None else BPMFConfig()
        self.history: list[dict[str, Any]] = []
        self._factors: FactorArrays | None = None
        self._kept: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._keep = set(kept_steps(self.config))
        self._running: FactorArrays | None = None

    def __getstate__(self) -> dict[str, Any]:  # what travels to Dask workers: the config only
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])

    # --- BlockAlternating -------------------------------------------------------------------

    def n_steps(self) -> int:
        c = self.config
        return c.init_sweeps + c.burn_in + c.samples

    def init_sides(self, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Starting (W, b, U, c): N(0, 0.1²) factors from ``default_rng(seed)``, zero biases (as ALS)."""
        rng = np.random.default_rng(self.config.seed)
        k = self.config.rank
        w = (rng.standard_normal((n_users, k)) * 0.1).astype(np.float32)
        u = (rng.standard_normal((n_items, k)) * 0.1).astype(np.float32)
        self._kept, self._running = [], None
        return w, np.zeros(n_users, np.float32), u, np.zeros(n_items, np.float32)

    def half_step_context(self, step: int, side: str, own: tuple[np.ndarray, np.ndarray],
                          other: tuple[np.ndarray, np.ndarray]) -> tuple[Any, ...]:
        """ALS sweeps first (``("map",)``); then a Normal–Wishart draw of the side's (m, Λ) from its
        rows with ratings (non-zero rows) and the stream key of this half-step."""
        from factorflow.models._bpmf import stream_key

        c = self.config
        if step <= c.init_sweeps:
            return ("map",)
        x = np.column_stack([own[0], own[1]]).astype(np.float64)
        x = x[np.any(x != 0, axis=1)]
        rng = np.random.default_rng([c.seed, step, SIDE_ID[side], 1])
        m, lam = sample_hyper(x, c, rng)
        want_mean = side == "item" and step in self._keep  # Rao–Blackwellized kept sample (end_step)
        return ("sample", m, lam, stream_key(c.seed, step, SIDE_ID[side]), want_mean)

    def solve_rows(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                   other: tuple[np.ndarray, np.ndarray], mu: float, context: Any = None,
                   start: int = 0) -> tuple[np.ndarray, np.ndarray, float, float]:
        """An ALS solve (init sweeps) or one Gibbs draw of every row of the block."""
        c = self.config
        if context is None or context[0] == "map":
            from factorflow.models._solve import solve_block

            f, b, sse = solve_block(indptr, indices, data, other[0], other[1], mu, c.init_reg, False, None)
            return f, b, float(sse), 0.0
        from factorflow.models._bpmf import sample_block

        _, m, lam, key, want_mean = context
        f, b, sse, mean_f, mean_b = sample_block(
            indptr, indices, data, other[0], other[1], mu, c.alpha, np.ascontiguousarray(m, dtype=np.float64),
            np.ascontiguousarray(lam, dtype=np.float64), key, np.int64(start), bool(want_mean))
        if want_mean:
            return f, b, float(sse), 0.0, (mean_f, mean_b)
        return f, b, float(sse), 0.0

    def end_step(self, step: int, factors: FactorArrays,
                 item_means: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[FactorArrays, dict[str, Any]]:
        """Keep the sample when ``step`` is a kept sweep; report the running posterior mean once
        samples are kept (the learning curve's test RMSE is then the published model's).

        A kept sample is Rao–Blackwellized: its item side is the conditional mean E[y_j | W⁽ᵗ⁾, m_V, Λ_V]
        of the draw (``item_means``, from the item half-step), so w_i⁽ᵗ⁾ᵀE[u_j | ·] = E[w_i⁽ᵗ⁾ᵀu_j | ·]:
        the average over kept sweeps is still an unbiased estimate of the posterior mean, with the
        item draws' noise integrated out."""
        c = self.config
        phase = "als" if step <= c.init_sweeps else "burn-in" if step <= c.init_sweeps + c.burn_in else "sample"
        if step in self._keep:
            f = factors
            u, cb = item_means if item_means is not None else (f.item_factors, f.item_bias)
            self._kept.append((f.user_factors.copy(), f.user_bias.copy(), np.array(u), np.array(cb)))
            self._running = tables_from_samples(self._kept, f.global_mean)
        out = self._running if self._running is not None else factors
        return out, {"phase": phase, "kept": len(self._kept)}

    def set_fitted(self, factors: FactorArrays, history: list[dict[str, Any]]) -> None:
        self._factors, self.history = factors, history

    # --- FactorModel --------------------------------------------------------------------------

    def fit(self, train: sp.spmatrix, *, progress: Progress | None = None,
            callback: StepCallback | None = None) -> BPMF:
        """Run the sweeps serially on a users×items CSR (the Dask driver runs the same kernel)."""
        return fit_serial(self, train, progress=progress, callback=callback)

    def fit_info(self) -> dict[str, Any]:
        """What model.json records about the fit: T kept samples, the thinning, the kept sweeps."""
        steps = kept_steps(self.config)
        return {"kept_samples": len(self._kept), "thin": self.config.effective_thin(), "kept_sweeps": steps,
                "published_rank": len(self._kept) * self.config.rank, "rao_blackwellized": True}

    def factors(self) -> FactorArrays:
        if self._factors is None:
            raise RuntimeError("BPMF.factors() called before fit()")
        return self._factors

    def params(self) -> dict[str, Any]:
        return config_params(self.config)

    # --- FoldsIn ------------------------------------------------------------------------------

    def fold_in(self, factors: FactorArrays, item_idx: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, float]:
        """A new user's row in the published tables' form, from ratings of published items.

        For each kept item sample t (recovered from the tables: √T times its block of the item
        row) it takes the posterior mean of x = [w; b] given u⁽ᵗ⁾, the averaged item biases and an
        isotropic prior x ~ N(0, (α·init_reg)⁻¹ I) — the sampled hyper-parameters are not
        published —, which is the ridge solve (Σ ũũᵀ + init_reg·I) x = Σ ũ (r − c̄ − μ), i.e. the
        ALS user half-sweep against that sample. Returns [w⁽¹⁾ … w⁽ᵀ⁾]/√T and the mean of the b⁽ᵗ⁾,
        so the user is scored by the same one dot product as a trained one."""
        from factorflow.models._solve import solve_block

        items, r = check_fold_in(factors, item_idx, ratings)
        k = self.config.rank
        t = max(1, factors.rank // k)
        if len(items) == 0:
            return np.zeros(factors.rank, dtype=np.float32), 0.0
        scale = math.sqrt(t)
        ws, bs = [], []
        for s in range(t):
            u = np.ascontiguousarray(factors.item_factors[:, s * k:(s + 1) * k], dtype=np.float32) * np.float32(scale)
            w, b, _ = solve_block(np.array([0, len(items)], dtype=np.int64), items.astype(np.int32),
                                  r.astype(np.float32), u, factors.item_bias.astype(np.float32),
                                  float(factors.global_mean), self.config.init_reg, False, None)
            ws.append(w[0] / np.float32(scale))
            bs.append(float(b[0]))
        return np.concatenate(ws).astype(np.float32), float(np.mean(bs))

    # --- Uncertain ----------------------------------------------------------------------------

    def predictive_std(self, factors: FactorArrays, w: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Std over the kept samples of the user's prediction for each of ``items``: the spread of
        T·(w⁽ᵗ⁾/√T)ᵀ(u_j⁽ᵗ⁾/√T) over t (the biases are published averaged, so the spread is that of
        the factor part). ``w`` is a published (or folded-in) user row."""
        k = self.config.rank
        t = max(1, factors.rank // k)
        items = np.asarray(items, dtype=np.int64)
        wt = np.asarray(w, dtype=np.float64).reshape(t, k)
        ut = factors.item_factors[items].astype(np.float64).reshape(len(items), t, k)
        return (t * np.einsum("tk,ptk->pt", wt, ut)).std(axis=1)

    @staticmethod
    def min_fit_bytes(config: BPMFConfig, n_users: int = 0, n_items: int = 0) -> int:
        """Both sides' current sample, the kept samples and their concatenation (float32), plus a
        row's (K+1)² float64 system."""
        k, kept = config.rank, min(config.max_kept, config.samples)
        return 2 * (k + 1) ** 2 * 8 + (2 + 2 * kept) * (n_users + n_items) * k * 4
