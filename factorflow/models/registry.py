"""Model kinds: kind → (model class, config class). Adding a model is its module plus one line here.

Everything that needs to know the kinds asks this module: ``retrain --model`` and its options
(built from the config fields), the flow's typed ``model`` parameter (:func:`config_type`), the
train step (:func:`make_model`), the baselines beside every evaluation, fold-in at serving time
(:func:`model_from_params` rebuilds the published model's config from ``model.json``), and the
shared model contract test, which runs over :func:`kinds`.

Entries are ``"module:Class"`` strings, imported on first use, so reading the registry does not
import every model's dependencies (TensorFlow, numba).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Union

from factorflow.errors import ParameterError
from factorflow.models.base import config_options, option_name


@dataclass(frozen=True)
class ModelSpec:
    """Where a kind's model and config classes live, and a one-line description for ``--help``."""

    model: str  # "package.module:Class"
    config: str  # "package.module:ConfigClass"
    summary: str


MODELS: dict[str, ModelSpec] = {
    "als": ModelSpec("factorflow.models.als:ALS", "factorflow.models.als:ALSConfig",
                     "biased alternating least squares (spec §§3–5)"),
    "bpmf": ModelSpec("factorflow.models.bpmf:BPMF", "factorflow.models.bpmf:BPMFConfig",
                      "Bayesian PMF with biases by Gibbs sampling (spec §9)"),
    "keras-mf": ModelSpec("factorflow.models.keras_mf:KerasMF", "factorflow.models.keras_mf:KerasMFConfig",
                          "Keras 3 MF with biases, Adam and early stopping (spec §§10–11)"),
    "keras-deep": ModelSpec("factorflow.models.keras_nets:KerasDeep", "factorflow.models.keras_nets:KerasDeepConfig",
                            "Keras 3 MLP on concatenated user/item embeddings, scored by its network (spec §12)"),
    "keras-residual": ModelSpec("factorflow.models.keras_nets:KerasResidual",
                                "factorflow.models.keras_nets:KerasResidualConfig",
                                "Keras 3 MF plus an MLP branch, added; scored by its network (spec §13)"),
    "i-autorec": ModelSpec("factorflow.models.autorec:IAutoRec", "factorflow.models.autorec:IAutoRecConfig",
                           "I-AutoRec: autoencoder of each item's rating vector, served as tables (spec §§14–15)"),
    "u-autorec": ModelSpec("factorflow.models.autorec:UAutoRec", "factorflow.models.autorec:UAutoRecConfig",
                           "U-AutoRec: autoencoder of each user's rating vector, served as tables (spec §§14–15)"),
    "bias": ModelSpec("factorflow.models.baselines:BiasBaseline", "factorflow.models.baselines:BiasConfig",
                      "baseline: regularized user and item biases"),
    "global-mean": ModelSpec("factorflow.models.baselines:GlobalMean",
                             "factorflow.models.baselines:GlobalMeanConfig", "baseline: the train mean"),
    "pmf": ModelSpec("factorflow.models.pmf:PMF", "factorflow.models.pmf:PMFConfig",
                     "MAP probabilistic matrix factorization: ALS without biases (spec §8)"),
    "blend": ModelSpec("factorflow.models.blend:Blend", "factorflow.models.blend:BlendConfig",
                       "non-negative blend of factor models, fitted on a validation slice, served as one set of "
                       "factor tables (issue 12)"),
    "svd": ModelSpec("factorflow.models.svd:SVD", "factorflow.models.svd:SVDConfig",
                     "baseline: truncated SVD of the bias-removed ratings, missing as 0 (spec §7)"),
}

#: Kinds evaluated beside every model on the same split (model.json ``metrics.baselines``).
BASELINES = ("global-mean", "bias")
DEFAULT_KIND = "als"


def _load(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def kinds() -> list[str]:
    """The registered kinds, sorted."""
    return sorted(MODELS)


def spec(kind: str, param: str = "--model") -> ModelSpec:
    """The entry of ``kind`` (ParameterError naming ``param`` and listing the kinds if unknown)."""
    if kind not in MODELS:
        raise ParameterError(f"{param}={kind!r}: must be one of {', '.join(kinds())}")
    return MODELS[kind]


def config_class(kind: str) -> type:
    return _load(spec(kind).config)


def model_class(kind: str) -> type:
    return _load(spec(kind).model)


def make_config(kind: str, values: dict[str, Any] | None = None, *, as_options: bool = False) -> Any:
    """The validated config of ``kind`` with ``values`` over its defaults.

    A value the kind does not take is a ParameterError naming it and listing what the kind
    takes, never silently dropped; ``as_options`` names fields as CLI options (``--sweeps``).
    """
    cls = config_class(kind)
    fields = {f.name: f for f in config_options(cls)}
    values = dict(values or {})
    values.pop("kind", None)
    unknown = [k for k in values if k not in fields]
    if unknown:
        name = (lambda k: "--" + k.replace("_", "-")) if as_options else str
        takes = ", ".join((option_name(f) if as_options else f.name) for f in fields.values()) or "no options"
        raise ParameterError(f"{', '.join(name(k) for k in unknown)}: model {kind} does not take "
                             f"{'it' if len(unknown) == 1 else 'them'} (it takes: {takes})")
    try:
        return cls(**values)
    except ParameterError as exc:
        if not as_options:
            raise
        field, sep, rest = str(exc).partition("=")
        if sep and field in fields:  # the config names its field; the user typed an option
            raise ParameterError(option_name(fields[field]) + "=" + rest) from None
        raise


def as_config(model: Any) -> Any:
    """A kind name (its defaults) or a config object → a validated config object."""
    if isinstance(model, str):
        return make_config(model)
    if dataclasses.is_dataclass(model) and getattr(model, "kind", None) in MODELS:
        return model
    raise ParameterError(f"model={model!r}: must be a kind ({', '.join(kinds())}) or one of their configs")


def make_model(config: Any) -> Any:
    """An unfitted model for ``config`` (a config object or a kind name)."""
    config = as_config(config)
    return model_class(config.kind)(config)


def model_from_params(kind: str, params: dict[str, Any] | None) -> Any:
    """The model a published version was trained as (``model.json`` ``kind`` and ``params``).

    A field added to the kind's config after the version was published is missing from its
    recorded params; it takes the value that reproduces how the version was trained (the
    config's ``ADDED_FIELDS``, e.g. ALS's ``reg_per_rating = 0``), not today's default."""
    values = dict(params or {})
    if values:
        for name, then in getattr(config_class(kind), "ADDED_FIELDS", {}).items():
            values.setdefault(name, then)
    return make_model(make_config(kind, values))


def supports(model_or_kind: Any, capability: type) -> bool:
    """Whether a model (or a kind's model class) has a capability of :mod:`factorflow.models.base`."""
    if isinstance(model_or_kind, str):
        cls = model_class(model_or_kind)
        return all(hasattr(cls, name) for name in _protocol_members(capability))
    return isinstance(model_or_kind, capability)


def _protocol_members(protocol: type) -> list[str]:
    names = set(getattr(protocol, "__annotations__", {})) | set(vars(protocol))
    return sorted(n for n in names if not n.startswith("_"))


@cache
def config_type() -> Any:
    """``Union`` of every kind's config, discriminated by ``kind`` (the flow's typed parameter)."""
    from pydantic import ConfigDict, Field

    classes = tuple(config_class(k) for k in kinds())
    for cls in classes:  # a deployment's unknown hyper-parameter is an error, not ignored
        cls.__pydantic_config__ = ConfigDict(extra="forbid")
    return Annotated[Union[classes], Field(discriminator="kind")]  # noqa: UP007 - built at run time
