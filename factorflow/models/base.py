"""The one interface every model implements, and the capabilities the pipeline looks for.

A model kind is a module under ``factorflow/models/`` holding a config dataclass and a model
class, plus one line in :mod:`factorflow.models.registry`. The config is validated when it is
built (``__post_init__`` raises :class:`~factorflow.errors.ParameterError` naming the field);
its fields' ``metadata`` (``help``, optional ``option``) become ``retrain``'s options, so a new
model's ``--epochs`` appears in ``factorflow retrain --help`` without editing the CLI.

Every fitted model leaves as :class:`~factorflow.factors.FactorArrays` (spec §4:
r̂_ij = w_iᵀu_j + b_i + c_j + μ), which is what evaluation, publishing and serving read.
What else a model can do is declared by capability, never decided by its name:

- :class:`BlockAlternating` — a fit made of half-steps whose rows are solved independently
  given the other side; the Dask driver (:mod:`factorflow.parallel.block_driver`) maps its
  kernel over partition blocks, and the serial fit runs the same kernel over the whole matrix.
- :class:`FoldsIn` — a new user's (w, b) from a few ratings against the published items, with
  the model's own regularization (``recommend --ratings``).
- :class:`Uncertain` — the predictive std of a user's scores (``recommend --uncertainty``).
- :class:`MemoryBounded` — a lower bound on a fit's memory, checked before fitting.
- :class:`Composite` — the fit is independent fits of component models plus a combine step (the
  blend): the flows run the component fits as parallel tasks instead of one ``fit``.
- :class:`NetworkScored` — r̂ is the model's Keras network, not the tables' dot product
  (keras-deep, keras-residual): its ``.keras`` file is published beside the tables and
  evaluation, top-N and ``recommend`` score with it (:mod:`factorflow.serving.network`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from factorflow.errors import ParameterError, check_param
from factorflow.factors import FactorArrays

if TYPE_CHECKING:
    import scipy.sparse as sp

    from factorflow.progress import Progress

#: ``callback(step, factors) -> dict | None``: merged into that step's history row.
StepCallback = Any


@runtime_checkable
class FactorModel(Protocol):
    """What every kind provides (ALS, the baselines; BPMF and the Keras models later)."""

    kind: ClassVar[str]  # "als", "bias", "global-mean", "bpmf", "keras-mf", ...
    config: Any  # the kind's config dataclass
    history: list[dict[str, Any]]  # one row per step of an iterative fit ([] for closed forms)

    def fit(self, train: sp.csr_matrix, *, progress: Progress | None = None,
            callback: StepCallback | None = None) -> FactorModel:
        """Fit on a users×items CSR of training ratings; returns self.

        Iterative models call ``callback(step, factors)`` after each step (sweep, epoch, Gibbs
        sample) and merge what it returns into their ``history`` row for that step.
        """
        ...

    def factors(self) -> FactorArrays:
        """The fitted arrays (raises if not fitted)."""
        ...

    def params(self) -> dict[str, Any]:
        """Hyper-parameters as a JSON-able dict (``model.json["params"]``)."""
        ...


@runtime_checkable
class BlockAlternating(Protocol):
    """Capability: alternating half-steps over row blocks (what the Dask driver distributes).

    A step solves every user row given the item side, then every item row given the user side;
    each row's solution depends only on its own ratings and the other side, so any blocking of
    the rows gives the same result.
    """

    step_unit: ClassVar[str]  # the history key of a step: "sweep", "epoch", "sample"

    def n_steps(self) -> int:
        """How many steps the fit runs."""
        ...

    def init_sides(self, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Starting (W, b, U, c), a function of the config and the shape only."""
        ...

    def solve_rows(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                   other: tuple[np.ndarray, np.ndarray], mu: float, context: Any = None, start: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, float, float]:
        """The block kernel: (factors, biases, sse, penalty) of the rows of one CSR block given
        the other side's (factors, biases). ``context`` is what the model's optional
        ``half_step_context`` hook returned for this half-step (None without one); ``start`` is
        the block's first row, so a row's result (and any random draw) can depend on the row,
        never on the blocking. Pure and picklable: it runs on Dask workers."""
        ...

    def set_fitted(self, factors: FactorArrays, history: list[dict[str, Any]]) -> None:
        """Take the result of a fit driven from outside (the Dask driver)."""
        ...


@runtime_checkable
class FoldsIn(Protocol):
    """Capability: a new user's (w, b) from ratings of published items (no retraining)."""

    def fold_in(self, factors: FactorArrays, item_idx: np.ndarray,
                ratings: np.ndarray) -> tuple[np.ndarray, float]:
        ...


@runtime_checkable
class Uncertain(Protocol):
    """Capability: the predictive standard deviation of a user's scores (e.g. BPMF's spread of r̂
    over its posterior samples), from the published arrays and the user's factor vector ``w``."""

    def predictive_std(self, factors: FactorArrays, w: np.ndarray, items: np.ndarray) -> np.ndarray:
        ...


@runtime_checkable
class MemoryBounded(Protocol):
    """Capability: a lower bound on one fitting process's memory, checked before fitting
    (a static method of the model class: it needs the config, not a built model)."""

    @staticmethod
    def min_fit_bytes(config: Any, n_users: int = 0, n_items: int = 0) -> int:
        ...


@runtime_checkable
class NetworkScored(Protocol):
    """Capability: predictions come from a Keras network, so the factor tables (its embeddings)
    are not a dot-product model. ``network()`` is the fitted prediction model: inputs ``user``
    and ``item`` (int32 dense indices, shape (batch,)) → r̂ − μ (shape (batch,)), μ being
    ``factors().global_mean``; it must be saveable as a ``.keras`` file without custom objects
    (keras layers and ``keras.ops`` only), which is what is published and served."""

    def network(self) -> Any:
        ...


@runtime_checkable
class Composite(Protocol):
    """Capability: the fit is independent fits of component models (their configs) plus a combine
    step (``blend``): the flows submit the component fits as parallel tasks
    (:mod:`factorflow.pipeline.blend`); ``fit`` does the same serially."""

    def component_configs(self) -> list[Any]:
        ...


def config_params(config: Any) -> dict[str, Any]:
    """A config's hyper-parameters as a JSON-able dict (its fields without ``kind``)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "kind"}


def config_options(config_class: type) -> list[dataclasses.Field]:
    """The fields of a config class that are hyper-parameters (all but ``kind``)."""
    return [f for f in dataclasses.fields(config_class) if f.name != "kind"]


def option_name(f: dataclasses.Field) -> str:
    """The CLI option of a config field: ``metadata["option"]``, else ``--field-name``."""
    return f.metadata.get("option") or "--" + f.name.replace("_", "-")


def is_number(v: object) -> bool:
    """A real number that is not a bool (for config validation)."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def is_int(v: object) -> bool:
    """An integer that is not a bool (for config validation)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def check_fold_in(factors: FactorArrays, item_idx: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(items int64, ratings float64) after checking shapes, range and uniqueness (ParameterError)."""
    items = np.asarray(item_idx, dtype=np.int64)
    r = np.asarray(ratings, dtype=np.float64)
    check_param(items.ndim == 1 and r.shape == items.shape, "ratings", f"shape {r.shape}",
                f"the same shape as item_idx {items.shape}")
    if len(items) and (items.min() < 0 or items.max() >= factors.n_items):
        raise ParameterError(f"item_idx: values must be in [0, {factors.n_items})")
    if len(np.unique(items)) != len(items):
        raise ParameterError("item_idx: each item may be rated once")
    if not np.isfinite(r).all():
        raise ParameterError("ratings: must be finite")
    return items, r
