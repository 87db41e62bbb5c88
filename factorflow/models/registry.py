"""Model kinds by name: how the CLI's ``--model`` and the flow's ``model`` find a model class."""

from __future__ import annotations

from typing import Any

from factorflow.errors import ParameterError
from factorflow.models.base import FactorModel


def _als(params: dict[str, Any]) -> FactorModel:
    from factorflow.models.als import ALS, ALSConfig

    return ALS(ALSConfig(**params))


def _bias(params: dict[str, Any]) -> FactorModel:
    from factorflow.models.baselines import BiasBaseline

    return BiasBaseline(**params)


def _global_mean(params: dict[str, Any]) -> FactorModel:
    from factorflow.models.baselines import GlobalMean

    return GlobalMean(**params)


MODELS = {"als": _als, "bias": _bias, "global-mean": _global_mean}

# Hyper-parameters each kind accepts from the generic ModelOptions (others are ignored for it).
ACCEPTS = {
    "als": {"rank", "reg", "sweeps", "weighted", "init_scale", "seed"},
    "bias": set(),
    "global-mean": set(),
}


def make_model(kind: str, params: dict[str, Any] | None = None) -> FactorModel:
    """A configured, unfitted model of ``kind`` (ParameterError listing the kinds if unknown)."""
    if kind not in MODELS:
        raise ParameterError(f"--model={kind!r}: must be one of {', '.join(sorted(MODELS))}")
    params = {k: v for k, v in (params or {}).items() if k in ACCEPTS[kind]}
    return MODELS[kind](params)
