"""The one interface every factor model implements (ALS now; BPMF and Keras models later).

A model is configured by a small validated config object, ``fit`` does the work
and returns the model, and the fitted result leaves as :class:`FactorArrays` — the
only thing the evaluator and the publisher need. Prediction for every model is

    r̂_ij = w_iᵀ u_j + b_i + c_j + μ

(spec §4), so one publishing path and one recommender serve every factor model.
Iterative models also expose ``init``/``step`` so one shared loop can drive
progress bars, learning curves and (for ALS) a Dask driver.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import scipy.sparse as sp

from factorflow.factors import FactorArrays


@runtime_checkable
class FactorModel(Protocol):
    """What ALS, BPMF and the Keras models all provide."""

    kind: ClassVar[str]  # "als", "bpmf", "keras-mf", ...

    def fit(self, train: sp.csr_matrix, *, progress: Any = None, callback: Any = None) -> FactorModel:
        """Fit on a users×items CSR of training ratings; returns self.

        Iterative models call ``callback(step, factors) -> dict`` after each step (sweep, epoch,
        Gibbs sample) and merge what it returns into their ``history`` row for that step.
        """
        ...

    def factors(self) -> FactorArrays:
        """The fitted arrays (raises if not fitted)."""
        ...

    def params(self) -> dict[str, Any]:
        """Hyper-parameters as a JSON-able dict (goes into model.json)."""
        ...
