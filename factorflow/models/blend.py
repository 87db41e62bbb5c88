"""The ``blend`` kind: several factor models blended with learned weights, served as ONE set of factor tables.

Fit (issue 12), on the users×items TRAIN matrix only (the test split is never an input):

1. a seeded, per-user stratified validation slice V of TRAIN (:func:`~factorflow.models._blend.validation_mask`:
   ``validation_fraction`` of each user's ratings, every user keeps one);
2. every component k is fitted on TRAIN − V with its own kind's hyper-parameters and predicts
   the ratings of V: p_k (unclipped, as its tables score);
3. the weights: non-negative ridge with a free intercept, (a₀, a) = argmin ‖r_V − a₀ − P a‖² +
   ``ridge``·‖a‖² subject to a ≥ 0 (:func:`~factorflow.models._blend.fit_blend_weights`);
4. every component is refitted on the whole TRAIN with the same hyper-parameters (and seed) and
   the refits are combined with (a₀, a).

Why the result is exact factor tables. Component k predicts r̂ₖᵢⱼ = wₖᵢ·uₖⱼ + bₖᵢ + cₖⱼ + μₖ, so

    r̂ᵢⱼ = a₀ + Σₖ aₖ r̂ₖᵢⱼ = Σₖ aₖ wₖᵢ·uₖⱼ + Σₖ aₖ bₖᵢ + Σₖ aₖ cₖⱼ + (a₀ + Σₖ aₖ μₖ).

Since aₖ ≥ 0, aₖ wₖᵢ·uₖⱼ = (√aₖ wₖᵢ)·(√aₖ uₖⱼ), and a sum of dot products of stacked blocks is
the dot product of the stacked vectors: with W̃ᵢ = [√a₁ w₁ᵢ, …, √a_K w_Kᵢ] and
Ũⱼ = [√a₁ u₁ⱼ, …, √a_K u_Kⱼ], W̃ᵢ·Ũⱼ = Σₖ aₖ wₖᵢ·uₖⱼ. So r̂ᵢⱼ = W̃ᵢ·Ũⱼ + b̃ᵢ + c̃ⱼ + μ̃ with
b̃ = Σ aₖ bₖ, c̃ = Σ aₖ cₖ, μ̃ = a₀ + Σ aₖ μₖ: ordinary :class:`~factorflow.factors.FactorArrays`
of rank Σ_{aₖ>0} Kₖ (a component with weight 0 adds no columns), published, evaluated and served
(``recommend``: one dot product per item) like any other kind. Only float32 rounding separates
the tables' predictions from the weighted sum of the components' (tests/test_blend.py: 1e-5).
That is why only dot-product kinds can be components: a NetworkScored kind (keras-deep,
keras-residual) scores with its network, not its tables, and is refused; so are ``blend`` itself
and the baselines (``bias``, ``global-mean``: already inside every component's biases).

Fold-in (``recommend --ratings``): each component folds the new user in with its own rule
against its own item tables — recovered exactly from the blend's columns, Ũ[:, block k]/√aₖ,
plus its item biases cₖ and mean μₖ, which ``model.json["fit"]`` records (:meth:`Blend.fit_info`,
restored by :meth:`Blend.load_fit`) — and the user's blended row is [√aₖ wₖ]ₖ with bias Σ aₖ bₖ,
so the folded-in user's scores are exactly a₀ + Σ aₖ (component k's fold-in scores). A blend
with a component that cannot fold in (u-autorec) refuses in one line.

``similar`` on a blend is the cosine of the blended item vectors Ũⱼ, whose inner product is
Σ aₖ uₖⱼ·uₗ…: the components' item geometries weighted by the blend weights — items the blend
scores alike for every user (biases aside).

In the flows the component fits run as parallel tasks (``pipeline/blend.py``; the
:class:`~factorflow.models.base.Composite` capability), and :meth:`Blend.fit` is the same thing
serially in one process (:func:`fit_component` and :func:`combine`).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from factorflow.errors import ParameterError, check_param
from factorflow.factors import FactorArrays
from factorflow.models._blend import blend_factors, fit_blend_weights, split_by_mask, validation_mask
from factorflow.models.base import Composite, check_fold_in, config_params, is_int, is_number
from factorflow.progress import report

if TYPE_CHECKING:
    import scipy.sparse as sp

    from factorflow.progress import Progress

__all__ = ["DEFAULT_COMPONENTS", "Blend", "BlendConfig", "ComponentFit", "combine", "component_configs",
           "fit_component", "validation_split"]

#: The components of ``--model blend`` when none are named, chosen by ``benchmarks/blend.py`` on
#: ml-latest-small (random 80/20, seeds 0–2): test RMSE 0.8276 against its best component's (BPMF)
#: 0.8331. A second, rank-10 BPMF and the bias-free PMF earn their weight there; I-AutoRec (weight
#: ≈ 0.05, +0.0001 RMSE for ~4 more minutes of fitting), U-AutoRec and SVD (weight ≈ 0) do not.
DEFAULT_COMPONENTS: tuple[str | dict[str, Any], ...] = ("als", "bpmf", {"kind": "bpmf", "rank": 10}, "keras-mf",
                                                        "pmf")


def _default_text() -> str:
    """The default components for ``--help``: ``als,bpmf,bpmf(rank=10),...``."""
    def one(c: str | dict[str, Any]) -> str:
        if isinstance(c, str):
            return c
        return c["kind"] + "(" + ", ".join(f"{k}={v}" for k, v in c.items() if k != "kind") + ")"

    return ",".join(one(c) for c in DEFAULT_COMPONENTS)


def _parse_components(value: Any) -> list[Any]:
    """``"als,bpmf"``, a JSON list text, or a list of kinds / ``{"kind": ..., field: value}`` dicts /
    config objects → a list of kinds, dicts and configs."""
    import dataclasses

    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ParameterError(f"components={value!r}: not a JSON list ({exc.msg})") from None
        else:
            value = [part.strip() for part in text.split(",")]
    if dataclasses.is_dataclass(value) or not isinstance(value, (list, tuple)):
        raise ParameterError(f"components={value!r}: must be comma-separated kinds or a list of kinds/configs")
    return list(value)


def component_configs(value: Any) -> list[Any]:
    """The validated config of every component (module docstring: which kinds can be components).

    ``value``: comma-separated kinds (``"als,bpmf"``), a JSON list, or a list whose entries are
    kinds, dicts ``{"kind": "als", "rank": 30}`` or config objects; each kind's defaults fill the
    rest. ParameterError naming ``components`` for an unknown kind, a refused kind, a bad
    hyper-parameter, the same component twice, or fewer than two components.
    """
    import dataclasses

    from factorflow.models import registry
    from factorflow.models.base import NetworkScored

    out: list[Any] = []
    for n, entry in enumerate(_parse_components(value)):
        if dataclasses.is_dataclass(entry) and not isinstance(entry, type):
            kind, values = getattr(entry, "kind", None), config_params(entry)
        elif isinstance(entry, dict):
            kind, values = entry.get("kind"), {k: v for k, v in entry.items() if k != "kind"}
        else:
            kind, values = entry, {}
        where = f"components[{n}]"
        if not isinstance(kind, str) or not kind:
            raise ParameterError(f"{where}={entry!r}: must name a kind")
        registry.spec(kind, where)
        if kind in registry.BASELINES or registry.supports(kind, Composite):
            raise ParameterError(f"{where}={kind!r}: a blend's components are factor models, not "
                                 f"{'a blend' if kind not in registry.BASELINES else 'a baseline'} "
                                 f"(kinds that can be blended: {', '.join(blendable_kinds())})")
        if registry.supports(kind, NetworkScored):
            raise ParameterError(f"{where}={kind!r}: {kind} is scored by its network, not by the dot product of "
                                 f"its factor tables, so it cannot be blended into tables (kinds that can: "
                                 f"{', '.join(blendable_kinds())})")
        try:
            config = registry.make_config(kind, values)
        except ParameterError as exc:
            raise ParameterError(f"{where} ({kind}): {exc}") from None
        if config in out:
            raise ParameterError(f"{where}: {kind} with the same hyper-parameters is already a component")
        out.append(config)
    if len(out) < 2:
        raise ParameterError(f"components={value!r}: a blend needs at least two components")
    return out


def blendable_kinds() -> list[str]:
    """The registered kinds a blend can take as components (module docstring)."""
    from factorflow.models import registry
    from factorflow.models.base import NetworkScored

    return [k for k in registry.kinds() if k not in registry.BASELINES
            and not registry.supports(k, NetworkScored) and not registry.supports(k, Composite)]


@dataclass
class BlendConfig:
    """The blend's options; each component keeps its own kind's hyper-parameters (module docstring)."""

    kind: Literal["blend"] = "blend"
    components: str | list[str | dict[str, Any]] = field(
        default_factory=lambda: [dict(c) if isinstance(c, dict) else c for c in DEFAULT_COMPONENTS], metadata={
            "help": f"the blended kinds, comma-separated, each with its defaults, or a JSON list whose entries may "
                    f"set hyper-parameters, e.g. '[{{\"kind\": \"als\", \"rank\": 30}}, \"bpmf\"]' (default "
                    f"{_default_text()})"})
    validation_fraction: float = field(default=0.1, metadata={
        "help": "blend: fraction of each user's train ratings held out to fit the weights (default 0.1)"})
    seed: int = field(default=42, metadata={"help": "blend: seed of the validation slice (default 42)",
                                            "option": "--model-seed"})
    ridge: float = field(default=1.0, metadata={"help": "λ of the ridge penalty on the blend weights (default 1)"})

    def __post_init__(self) -> None:
        check_param(self.kind == "blend", "kind", self.kind, "'blend'")
        self.components = [{"kind": c.kind, **config_params(c)} for c in component_configs(self.components)]
        check_param(is_number(self.validation_fraction) and 0 < self.validation_fraction < 1,
                    "validation_fraction", self.validation_fraction, "a number in (0, 1)")
        check_param(is_int(self.seed) and self.seed >= 0, "seed", self.seed, "an integer >= 0")
        check_param(is_number(self.ridge) and self.ridge >= 0 and np.isfinite(self.ridge), "ridge", self.ridge,
                    "a finite number >= 0")
        self.validation_fraction, self.seed, self.ridge = float(self.validation_fraction), int(self.seed), \
            float(self.ridge)

    def component_configs(self) -> list[Any]:
        """The components' configs (validated when this config was built)."""
        from factorflow.models import registry

        return [registry.make_config(c["kind"], c) for c in self.components]


# ---------------------------------------------------------------- the pieces of a fit (also the flows')


def validation_split(train: sp.spmatrix, config: BlendConfig) -> tuple[sp.csr_matrix, tuple[np.ndarray, ...]]:
    """(TRAIN without the validation slice, (users, items, ratings) of the slice): step 1."""
    import scipy.sparse as sp

    train = sp.csr_matrix(train)
    return split_by_mask(train, validation_mask(train, config.validation_fraction, config.seed))


def fit_on(component: Any, matrix: sp.spmatrix, progress: Progress | None = None) -> Any:
    """A fitted model of the component config ``component`` on ``matrix`` (its own serial fit)."""
    from factorflow.models import registry

    return registry.make_model(component).fit(matrix, progress=progress)


def rmse(predictions: np.ndarray, ratings: np.ndarray, rating_range: tuple[float, float] | None) -> float:
    """RMSE of the predictions clipped to ``rating_range`` (as the test RMSE is); NaN for none."""
    if len(ratings) == 0:
        return float("nan")
    p = np.asarray(predictions, dtype=np.float64)
    if rating_range is not None:
        p = np.clip(p, rating_range[0], rating_range[1])
    return float(np.sqrt(np.mean((p - np.asarray(ratings, dtype=np.float64)) ** 2)))


@dataclass
class ComponentFit:
    """One component's two fits: its ``validation`` predictions (fitted on TRAIN − V, on V's pairs)
    and its ``factors`` fitted on the whole TRAIN; ``seconds`` of both fits; its ``fit_info``."""

    config: Any
    validation: np.ndarray
    factors: FactorArrays
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


def fit_component(component: Any, fit_part: sp.spmatrix, validation: tuple[np.ndarray, ...], train: sp.spmatrix,
                  progress: Progress | None = None) -> ComponentFit:
    """Steps 2 and 4 for one component, serially: fit on TRAIN − V and predict V, refit on TRAIN."""
    t0 = time.perf_counter()
    predictions = fit_on(component, fit_part).factors().predict(validation[0], validation[1])
    model = fit_on(component, train, progress)
    info = getattr(model, "fit_info", None)
    return ComponentFit(component, predictions, model.factors(), time.perf_counter() - t0, dict(info()) if info else {})


def _f32_text(a: np.ndarray) -> str:
    """A float32 array as base64 of its little-endian bytes (exact, ~5.3 characters a value)."""
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def _f32_array(text: str, n: int, what: str) -> np.ndarray:
    try:
        a = np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), dtype="<f4")
    except (ValueError, AttributeError):
        a = None
    if a is None or a.shape != (n,):
        raise ParameterError(f"model.json fit: {what} is not {n} base64 float32 values")
    return a.astype(np.float32)


def combine(config: BlendConfig, fits: list[ComponentFit], validation_ratings: np.ndarray,
            rating_range: tuple[float, float] | None = None) -> tuple[FactorArrays, dict[str, Any]]:
    """Steps 3–4: the weights from the components' validation predictions, then the exact blended
    tables of their full-TRAIN fits. Returns (tables, what ``model.json["fit"]`` records: weights,
    intercept, each component's validation RMSE, seconds, columns, μₖ and item biases cₖ —
    fold-in's state —, the blend's validation RMSE and ``component_seconds``, the components'
    fits added). RMSEs are clipped to ``rating_range`` when given."""
    r = np.asarray(validation_ratings, dtype=np.float64)
    p = np.column_stack([f.validation for f in fits]) if fits else np.zeros((len(r), 0))
    intercept, weights = fit_blend_weights(p, r, config.ridge)
    tables = blend_factors([f.factors for f in fits], weights, intercept)
    blended_val = intercept + p @ weights
    components, start = [], 0
    for f, a in zip(fits, weights, strict=True):
        entry: dict[str, Any] = {"kind": f.config.kind, "weight": float(a), "rank": f.factors.rank,
                                 "global_mean": float(f.factors.global_mean),
                                 "validation_rmse": rmse(f.validation, r, rating_range), "seconds": f.seconds}
        if f.info:
            entry["fit"] = f.info
        if a > 0:
            entry["columns"] = [start, start + f.factors.rank]
            entry["item_bias"] = _f32_text(f.factors.item_bias)
            start += f.factors.rank
        components.append(entry)
    info = {"intercept": float(intercept), "weights": [float(a) for a in weights],
            "validation_rmse": rmse(blended_val, r, rating_range),
            "validation": {"fraction": config.validation_fraction, "seed": config.seed, "n": int(len(r))},
            "component_seconds": float(sum(f.seconds for f in fits)), "components": components}
    return tables, info


# ---------------------------------------------------------------- the model


class Blend:
    """A blend of factor models (module docstring); capabilities ``Composite``, ``FoldsIn``, ``MemoryBounded``."""

    kind: ClassVar[str] = "blend"

    def __init__(self, config: BlendConfig | None = None) -> None:
        self.config = config if config is not None else BlendConfig()
        self.history: list[dict[str, Any]] = []
        self._factors: FactorArrays | None = None
        self._info: dict[str, Any] | None = None
        self.fits: list[ComponentFit] = []  # after an in-process fit: each component's fits (benchmarks read them)

    def component_configs(self) -> list[Any]:
        return self.config.component_configs()

    def fit(self, train: sp.spmatrix, *, progress: Progress | None = None, callback: Any = None) -> Blend:
        """Steps 1–4 (module docstring) in this process, one component after another. A blend has no
        steps of its own (``history`` stays empty; ``callback`` is unused); ``progress`` counts components."""
        import scipy.sparse as sp

        train = sp.csr_matrix(train)
        fit_part, validation = validation_split(train, self.config)
        configs = self.component_configs()
        fits = []
        report(progress, 0, len(configs), "")
        for n, c in enumerate(configs, 1):
            fits.append(fit_component(c, fit_part, validation, train))
            report(progress, n, len(configs), f"{c.kind} fitted twice in {fits[-1].seconds:.1f} s")
        scale = (float(train.data.min()), float(train.data.max())) if train.nnz else None
        tables, info = combine(self.config, fits, validation[2], scale)
        self.set_blended(tables, info)
        self.fits = fits
        return self

    def set_blended(self, tables: FactorArrays, info: dict[str, Any]) -> None:
        """Take a blend combined outside (the flows' combine step) or in :meth:`fit`."""
        self._factors, self._info = tables, info

    def factors(self) -> FactorArrays:
        if self._factors is None:
            raise RuntimeError("Blend.factors() called before fit()")
        return self._factors

    def params(self) -> dict[str, Any]:
        return config_params(self.config)

    def fit_info(self) -> dict[str, Any]:
        """``model.json["fit"]``: the weights, intercept and per-component record of :func:`combine`."""
        if self._info is None:
            raise RuntimeError("Blend.fit_info() called before fit()")
        return self._info

    def load_fit(self, fit: dict[str, Any] | None) -> None:
        """Restore what :meth:`fit_info` recorded (a published version's ``model.json["fit"]``), so a
        rebuilt blend can fold users in."""
        if not isinstance(fit, dict) or not isinstance(fit.get("components"), list):
            raise ParameterError("model.json: a blend's fit record (weights, components) is missing")
        self._info = fit

    # --- FoldsIn, MemoryBounded ---------------------------------------------------------------

    def fold_in(self, factors: FactorArrays, item_idx: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, float]:
        """A new user's blended row: every weighted component's own fold-in against its own item
        tables (module docstring), stacked as [√aₖ wₖ]ₖ with bias Σ aₖ bₖ."""
        from factorflow.models import registry
        from factorflow.models.base import FoldsIn

        items, r = check_fold_in(factors, item_idx, ratings)
        if self._info is None:
            raise ParameterError("blend fold-in: the blend's weights are unknown (fit it, or load model.json's fit)")
        recorded = self._info["components"]
        configs = self.component_configs()
        if len(recorded) != len(configs):
            raise ParameterError(f"model.json fit: {len(recorded)} components recorded, params name {len(configs)}")
        w = np.zeros(factors.rank, dtype=np.float64)
        b = 0.0
        for config, rec in zip(configs, recorded, strict=True):
            a = float(rec["weight"])
            if a <= 0:
                continue
            model = registry.make_model(config)
            if not isinstance(model, FoldsIn):
                raise ParameterError(f"blend fold-in: component {config.kind} cannot fold in new ratings")
            if not isinstance(rec.get("columns"), list) or "item_bias" not in rec or "global_mean" not in rec:
                raise ParameterError(f"model.json fit: component {config.kind} has no columns, item_bias or "
                                     "global_mean")
            lo, hi = rec["columns"]
            root = np.sqrt(a)
            own = FactorArrays(  # component k's tables, recovered: Ũ[:, block]/√a, its cₖ and μₖ
                (factors.user_factors[:, lo:hi] / root).astype(np.float32),
                (factors.item_factors[:, lo:hi] / root).astype(np.float32),
                np.zeros(factors.n_users, np.float32), _f32_array(rec["item_bias"], factors.n_items, "item_bias"),
                float(rec["global_mean"]))
            wk, bk = model.fold_in(own, items, r)
            w[lo:hi] = root * np.asarray(wk, dtype=np.float64)
            b += a * float(bk)
        return w.astype(np.float32), b

    @staticmethod
    def min_fit_bytes(config: BlendConfig, n_users: int = 0, n_items: int = 0) -> int:
        """The components' bounds added (the flows fit them side by side), plus the blended tables."""
        from factorflow.models import registry
        from factorflow.models.base import MemoryBounded

        total, rank = 0, 0
        for c in config.component_configs():
            if registry.supports(c.kind, MemoryBounded):
                total += registry.model_class(c.kind).min_fit_bytes(c, n_users, n_items)
            rank += int(getattr(c, "rank", 0) or 0)
        return total + 4 * (n_users + n_items) * rank
