"""Fold-in at serving time: a new user's (w, b) from ratings of published items, by the model itself.

The published version's model is rebuilt from ``model.json`` (``kind`` and ``params``, via
:func:`factorflow.models.registry.model_from_params`) and asked for its
:class:`~factorflow.models.base.FoldsIn` capability, so the fold-in uses the model's own
regularization (ALS: its λ, ``weighted`` and ``reg_bias``; the bias baseline: its λ_user).
A kind whose fold-in needs what its fit learned beyond the tables has a ``load_fit`` hook, given
``model.json["fit"]`` (a blend: its weights and each component's item biases and μ; each
component then folds the user in by its own rule). A kind without the capability is a one-line
ParameterError, never a guess.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from factorflow.errors import ParameterError
from factorflow.storage.registry import PublishedModel


def fold_in_model(model: PublishedModel, param: str = "--ratings") -> Any:
    """The published version's model as trained (unfitted), with the FoldsIn capability.

    ParameterError naming ``param`` when model.json records no kind, a kind this factorflow does
    not know, params that do not rebuild it, or a kind that cannot fold in.
    """
    from factorflow.models import registry
    from factorflow.models.base import FoldsIn

    meta = model.model_json
    kind = meta.get("kind")
    who = f"model {model.name} (kind {kind})"
    if not isinstance(kind, str) or kind not in registry.kinds():
        raise ParameterError(f"{param}: {who} cannot fold in new ratings"
                             + ("" if isinstance(kind, str) else ": model.json records no kind"))
    try:
        built = registry.model_from_params(kind, meta.get("params"))
    except ParameterError as exc:
        raise ParameterError(f"{param}: {who}: model.json params do not rebuild the model ({exc})") from None
    if not isinstance(built, FoldsIn):
        raise ParameterError(f"{param}: {who} cannot fold in new ratings")
    load_fit = getattr(built, "load_fit", None)  # a kind whose fold-in needs fitted state (a blend's weights)
    if load_fit is not None:
        try:
            load_fit(meta.get("fit"))
        except ParameterError as exc:
            raise ParameterError(f"{param}: {who}: {exc}") from None
    return built


def fold_in(model: PublishedModel, item_idx: np.ndarray, ratings: np.ndarray,
            param: str = "--ratings") -> tuple[np.ndarray, float]:
    """(w, b) of a new user who gave ``ratings`` to the dense items ``item_idx``, by the model's own fold-in."""
    return fold_in_model(model, param).fold_in(model.factors, np.asarray(item_idx, dtype=np.int64),
                                               np.asarray(ratings, dtype=np.float64))
