"""What every Keras model shares: training options, the validation slice and the epoch loop.

:class:`KerasTraining` holds the options every Keras kind takes (``--epochs``, ``--batch-size``,
``--lr``, ``--patience``, ``--validation-fraction``, ``--model-seed``, ``--optimizer``); each
kind's config subclasses it (redeclaring a field to change its default) and calls
:meth:`KerasTraining.check_training` from its ``__post_init__``.

:func:`fit_epochs` is the early-stopping loop around :func:`~factorflow.models.loop.run_steps`:
it runs ``train_epoch`` until ``epochs`` or until ``patience`` epochs pass without a better
validation RMSE, and returns the best epoch's snapshot (Keras's ``restore_best_weights``, but
measured in RMSE on the held-out slice of TRAIN that :func:`holdout` draws — never the test
split). Keras is imported inside the functions so configs and the registry stay light.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from factorflow.errors import check_param
from factorflow.models.base import StepCallback, is_int, is_number
from factorflow.models.loop import run_steps

if TYPE_CHECKING:
    from factorflow.progress import Progress

__all__ = ["OPTIMIZERS", "KerasTraining", "fit_epochs", "holdout", "make_optimizer", "rmse"]

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")


@dataclass
class KerasTraining:
    """Training options shared by the Keras kinds (a base class of their configs)."""

    epochs: int = field(default=60, metadata={"help": "maximum training epochs (default 60)"})
    batch_size: int = field(default=512, metadata={"help": "minibatch size in ratings (default 512)"})
    lr: float = field(default=1e-3, metadata={"help": "optimizer learning rate (default 0.001)"})
    patience: int = field(default=3, metadata={
        "help": "early stopping: epochs without a better validation RMSE before stopping (default 3)"})
    validation_fraction: float = field(default=0.1, metadata={
        "help": "fraction of the train ratings held out for early stopping (default 0.1; 0: none)"})
    seed: int = field(default=42, metadata={"help": "seed of the model's initial weights and batches (default 42)",
                                            "option": "--model-seed"})
    optimizer: str = field(default="adam", metadata={"help": "adam, adamw, sgd or rmsprop (default adam)"})

    def check_training(self) -> None:
        """Validate and normalize the shared fields (ParameterError naming the field)."""
        check_param(is_int(self.epochs) and self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        check_param(is_int(self.batch_size) and self.batch_size >= 1, "batch_size", self.batch_size,
                    "an integer >= 1")
        check_param(is_number(self.lr) and self.lr > 0 and np.isfinite(self.lr), "lr", self.lr,
                    "a finite number > 0")
        check_param(is_int(self.patience) and self.patience >= 1, "patience", self.patience, "an integer >= 1")
        check_param(is_number(self.validation_fraction) and 0 <= self.validation_fraction < 1,
                    "validation_fraction", self.validation_fraction, "a number in [0, 1)")
        check_param(is_int(self.seed) and self.seed >= 0, "seed", self.seed, "an integer >= 0")
        check_param(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, " or ".join(OPTIMIZERS))
        self.epochs, self.batch_size, self.patience, self.seed = (int(self.epochs), int(self.batch_size),
                                                                  int(self.patience), int(self.seed))
        self.lr, self.validation_fraction = float(self.lr), float(self.validation_fraction)


def make_optimizer(name: str, lr: float) -> Any:
    """A fresh Keras optimizer ``name`` (one of :data:`OPTIMIZERS`) with learning rate ``lr``."""
    import keras

    return {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD,
            "rmsprop": keras.optimizers.RMSprop}[name](learning_rate=lr)


def holdout(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(validation, fit) index arrays: a seeded shuffle of ``range(n)`` split at ``round(fraction·n)``
    (no validation slice when ``n`` < 2)."""
    order = rng.permutation(n)
    n_val = int(round(fraction * n)) if n > 1 else 0
    return order[:n_val], order[n_val:]


def rmse(scorer: Any, users: np.ndarray, items: np.ndarray, r: np.ndarray) -> float:
    """Unclipped RMSE of ``scorer.score_pairs`` on the pairs (NaN for none): the per-epoch train and
    validation RMSE of every Keras kind."""
    if len(r) == 0:
        return float("nan")
    err = scorer.score_pairs(users, items) - r
    return float(np.sqrt(np.mean(err * err)))


class _EarlyStop(Exception):
    """Raised by an epoch that early stopping skips (caught by :func:`fit_epochs`)."""


def fit_epochs(epochs: int, patience: int, train_epoch: Callable[[int], tuple[Any, dict[str, Any]]],
               snapshot: Callable[[], Any], *, unit: str = "epoch", callback: StepCallback | None = None,
               progress: Progress | None = None) -> tuple[list[dict[str, Any]], int | None, Any]:
    """Run ``train_epoch(1..epochs)`` with early stopping; returns (history, best epoch, its snapshot).

    ``train_epoch(e)`` trains one epoch and returns (a scorer of the current weights — what
    ``callback(e, scorer)`` measures, e.g. the held-out RMSE for the learning curve —, its row of
    measurements). When the row has ``val_rmse`` the best epoch is the one with the lowest, and
    the loop stops after ``patience`` epochs without a better one; without it every epoch is the
    best so far. ``snapshot()`` is called on each new best epoch (e.g. a copy of the weights).
    History rows are those of :func:`~factorflow.models.loop.run_steps`.
    """
    best: dict[str, Any] = {"val": np.inf, "epoch": None, "state": None}
    rows: list[dict[str, Any]] = []
    current: dict[str, Any] = {}

    def step(epoch: int) -> tuple[Any, dict[str, Any]]:
        if best["epoch"] is not None and epoch - best["epoch"] > patience:
            raise _EarlyStop
        current["t0"] = time.perf_counter()
        scorer, measured = train_epoch(epoch)
        val = measured.get("val_rmse")
        if val is None or val < best["val"]:
            best.update(val=np.inf if val is None else val, epoch=epoch, state=snapshot())
        current["measured"] = measured
        return scorer, measured

    def recorded(epoch: int, scorer: Any) -> dict[str, Any]:
        """The row ``run_steps`` appends, kept here too so an early stop keeps the history."""
        extra = (callback(epoch, scorer) if callback is not None else None) or {}
        rows.append({unit: epoch, **current["measured"], "seconds": time.perf_counter() - current["t0"], **extra})
        return extra

    try:
        history = run_steps(epochs, step, unit=unit, callback=recorded, progress=progress)
    except _EarlyStop:
        history = rows
    return history, best["epoch"], best["state"]


def accelerator() -> str:
    """Where Keras trains in this process, e.g. ``jax on gpu (NVIDIA H200)`` or ``tensorflow on CPU``."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            dev = jax.devices()[0]
            return f"jax on {dev.platform} ({getattr(dev, 'device_kind', dev)})"
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            return f"tensorflow on {'GPU ' + gpus[0].name if gpus else 'CPU'}"
        if backend == "torch":
            import torch

            return f"torch on {'cuda (' + torch.cuda.get_device_name(0) + ')' if torch.cuda.is_available() else 'CPU'}"
    except Exception as exc:  # noqa: BLE001 - a description, never a failure
        return f"{backend} (device unknown: {exc})"
    return backend
