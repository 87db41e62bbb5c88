"""The one loop that drives every iterative fit: steps, progress, callbacks, history.

:func:`run_steps` is what serial fits and distributed drivers share: it times each step, adds
what the ``callback`` returns (e.g. the held-out RMSE of the named split for the learning
curve), appends the history row and reports progress. :func:`fit_alternating` is the
alternating-half-step fit of a :class:`~factorflow.models.base.BlockAlternating` model given a
``solve_side`` function: the serial fit passes one that runs the model's kernel over the whole
CSR, the Dask driver one that maps it over partition blocks, so both give the same factors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from factorflow.factors import FactorArrays
from factorflow.models.base import BlockAlternating, StepCallback
from factorflow.progress import Progress, report

if TYPE_CHECKING:
    import scipy.sparse as sp

#: ``solve_side(side, other, context) -> (factors, biases, sse, penalty[, extra])`` for ``side`` in
#: {"user", "item"}; ``extra`` (optional) is a tuple of per-row arrays of that side.
SolveSide = Callable[[str, tuple[np.ndarray, np.ndarray], Any], tuple[Any, ...]]


def step_message(row: dict[str, Any]) -> str:
    """One progress line for a history row: train RMSE, the validation RMSE of an early-stopping
    fit, and the held-out (test) RMSE when the callback gave it."""
    parts = [f"{label} RMSE {row[key]:.4f}" for key, label in (("train_rmse", "train"), ("val_rmse", "val"),
                                                               ("test_rmse", "test")) if key in row]
    return ", ".join(parts)


def run_steps(n_steps: int, step: Callable[[int], tuple[FactorArrays, dict[str, Any]]], *, unit: str = "step",
              callback: StepCallback | None = None, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Run ``step(1..n_steps)``; each returns (factors after the step, its row of measurements).

    History row: ``{unit: s, **row, "seconds": wall time of the step, **callback(s, factors)}``.
    """
    history: list[dict[str, Any]] = []
    report(progress, 0, n_steps, "")
    for s in range(1, n_steps + 1):
        t0 = time.perf_counter()
        factors, measured = step(s)
        row: dict[str, Any] = {unit: s, **measured, "seconds": time.perf_counter() - t0}
        if callback is not None:
            row.update(callback(s, factors) or {})
        history.append(row)
        report(progress, s, n_steps, step_message(row))
    return history


def fit_alternating(model: BlockAlternating, solve_side: SolveSide, n_users: int, n_items: int, nnz: int,
                    mu: float, *, callback: StepCallback | None = None,
                    progress: Progress | None = None) -> tuple[FactorArrays, list[dict[str, Any]]]:
    """Alternate user and item half-steps ``model.n_steps()`` times from ``model.init_sides``.

    Optional hooks of the model: ``half_step_context(step, side, own, other)`` runs on the driver
    before each half-step and its (small) result is handed to every block's ``solve_rows`` (e.g.
    BPMF's hyper-parameter draw); ``end_step(step, factors) -> (factors, measurements)`` runs
    after each step (e.g. BPMF keeps a sample and reports the running posterior mean). A kernel
    may return a fifth element, per-row arrays beside the new side (e.g. BPMF's conditional
    means); the item side's is passed on as ``end_step(step, factors, extra)``.
    Row measurements: ``train_rmse`` (after the item half-step) and ``objective`` (its sse plus
    both sides' penalties), plus the hook's. Returns the final factors and the history.
    """
    w, b, u, c = model.init_sides(n_users, n_items)
    context = getattr(model, "half_step_context", None) or (lambda *_: None)
    end_step = getattr(model, "end_step", None)
    state: dict[str, FactorArrays] = {}

    def step(s: int) -> tuple[FactorArrays, dict[str, Any]]:
        nonlocal w, b, u, c
        w, b, _, user_penalty, *_ = solve_side("user", (u, c), context(s, "user", (w, b), (u, c)))
        u, c, sse, item_penalty, *item_extra = solve_side("item", (w, b), context(s, "item", (u, c), (w, b)))
        measured = {"train_rmse": float(np.sqrt(sse / nnz)) if nnz else 0.0,
                    "objective": float(sse + user_penalty + item_penalty)}
        state["f"] = FactorArrays(w, u, b, c, mu)
        if end_step is not None:
            extra_rows = item_extra[0] if item_extra and item_extra[0] is not None else None
            state["f"], extra = end_step(s, state["f"]) if extra_rows is None else end_step(s, state["f"], extra_rows)
            measured.update(extra)
        return state["f"], measured

    history = run_steps(model.n_steps(), step, unit=model.step_unit, callback=callback, progress=progress)
    return state.get("f", FactorArrays(w, u, b, c, mu)), history


def train_csr_parts(train: sp.spmatrix) -> tuple[sp.csr_matrix, sp.csr_matrix, float]:
    """(users×items CSR, items×users CSR, μ) with canonical sorted indices and float32 data."""
    import scipy.sparse as sp

    if not sp.issparse(train):
        raise TypeError("train must be a scipy.sparse users×items matrix")
    by_user = sp.csr_matrix(train, dtype=np.float32)
    by_user.sum_duplicates()
    by_user.sort_indices()
    by_item = by_user.T.tocsr()
    by_item.sort_indices()
    mu = float(by_user.data.astype(np.float64).mean()) if by_user.nnz else 0.0
    return by_user, by_item, mu


def fit_serial(model: Any, train: sp.spmatrix, *, progress: Progress | None = None,
               callback: StepCallback | None = None,
               reported_mean: Callable[[float], float] | None = None) -> Any:
    """The serial fit of a :class:`~factorflow.models.base.BlockAlternating` model: its kernel over
    the whole user and item CSRs, through :func:`fit_alternating`; returns the fitted model.

    The kernel gets the train mean μ; ``reported_mean(μ)`` is the μ of the reported factors when it
    differs (e.g. uncentred PMF reports 0)."""
    by_user, by_item, mu = train_csr_parts(train)
    sides = {"user": by_user, "item": by_item}

    def solve_side(side: str, other: tuple[np.ndarray, np.ndarray], context: Any) -> tuple[Any, ...]:
        m = sides[side]
        return model.solve_rows(m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data, other, mu, context, 0)

    shown = mu if reported_mean is None else reported_mean(mu)
    factors, history = fit_alternating(model, solve_side, by_user.shape[0], by_user.shape[1], by_user.nnz, shown,
                                       callback=callback, progress=progress)
    model.set_fitted(factors, history)
    return model
