"""Raw-id operations on a published model: what ``factorflow recommend``/``similar`` and the Python API call.

Everything here takes a :class:`~factorflow.storage.registry.PublishedModel` and raw ids (as
in the ratings source), maps them to dense indices and calls the pure functions of
:mod:`factorflow.serving.topn`, :mod:`factorflow.serving.similar` and
:mod:`factorflow.serving.foldin`. Nothing is printed: the notes the CLI shows on stderr (an
unknown user, a model without ``seen.parquet``) come back as strings in :class:`Served`.
Error messages name the parameter the caller passes (``--ratings`` for the CLI, ``ratings``
for the API). No I/O beyond the model's own tables and an optional titles file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from factorflow.errors import NotFoundError, ParameterError
from factorflow.serving.candidates import MIN_RATINGS, candidate_mask
from factorflow.serving.scoring import Scorer
from factorflow.serving.topn import Ranked, popular_fallback, top_n, top_n_for_vector
from factorflow.storage.layout import NETWORK_FILE
from factorflow.storage.registry import PublishedModel

RawId = int | str

#: Popular-fallback lists only take items with at least this many train ratings (or ``min_ratings`` if higher).
FALLBACK_MIN_RATINGS = 10


@dataclass
class Served:
    """A ranked list with the notes a caller may show (the CLI prints them on stderr), and the
    user's factor vector it was ranked with (None for a popularity fallback)."""

    ranked: Ranked
    notes: list[str] = field(default_factory=list)
    vector: np.ndarray | None = None


def describe(model: PublishedModel) -> str:
    """``model NAME (version V)``, as messages name a published model."""
    return f"model {model.name} (version {model.version})"


def scorer(model: PublishedModel) -> Scorer:
    """What scores the version: its factor tables, or (model.json ``serving`` = ``network``:
    keras-deep, keras-residual) its published ``network.keras``, loaded once per model object."""
    from factorflow.serving.network import SERVING_NETWORK, NetworkScorer, network_from_bytes

    if model.model_json.get("serving") != SERVING_NETWORK:
        return model.factors
    if "scorer" not in model.cache:
        f = model.factors
        where = f"{model.path}/{NETWORK_FILE}"
        model.cache["scorer"] = NetworkScorer(network_from_bytes(model.read_file(NETWORK_FILE), where),
                                              f.n_users, f.n_items, f.global_mean)
    return model.cache["scorer"]


def candidate_items(model: PublishedModel, min_ratings: int = MIN_RATINGS) -> np.ndarray | None:
    """Boolean mask of items with ≥ ``min_ratings`` (and ≥ 1) train ratings; None if unrecorded."""
    if model.item_n_ratings is None:
        candidate_mask(np.zeros(0), min_ratings)  # still validate the option
        return None
    return candidate_mask(model.item_n_ratings, min_ratings)


def title_lookup(model: PublishedModel, titles_path: str | None = None) -> Callable[[int], str | None]:
    """item_idx → title: stored titles first, else the ``titles_path`` file (movies.csv/u.item), else None."""
    from factorflow.serving.titles import read_titles

    if model.item_titles is not None:
        return model.title
    if titles_path:
        table = read_titles(titles_path, model.item_id_is_int)
        return lambda j: table.get(model.item_ids[j].as_py())
    return lambda j: None


def check_rating_scale(given: Sequence[tuple[Any, float]], scale: Sequence[float] | None, where: str,
                       who: str) -> None:
    """ParameterError when a folded-in rating lies outside the scale the model was trained on."""
    if not scale:
        return
    lo, hi = float(scale[0]), float(scale[1])
    bad = [f"{item}={r:g}" for item, r in given if not lo <= r <= hi]
    if bad:
        raise ParameterError(f"{where}: ratings outside the scale {lo:g}..{hi:g} of {who}: {', '.join(bad)}")


def raw_id(value: Any, as_int: bool) -> RawId | None:
    """``value`` as a raw id of a model whose ids are ints (``as_int``) or strings; None if it cannot be one.

    Strings are parsed as the CLI parses them (``" 71"`` → 71 for integer ids); an integer asked
    of a model with string ids is its decimal string.
    """
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, str):
        if not as_int:
            return value
        try:
            return int(value.strip())
        except ValueError:
            return None
    if isinstance(value, (int, np.integer)):
        return int(value) if as_int else str(int(value))
    return None


def raw_indices(ids: pa.Array, values: Iterable[Any] | np.ndarray) -> np.ndarray:
    """Dense indices (int64) of many raw ids in ``ids`` (a model's user or item ids); -1 where unknown."""
    as_int = pa.types.is_integer(ids.type)
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ParameterError(f"ids: must be one-dimensional, got shape {arr.shape}")
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    if as_int and arr.dtype.kind == "i":
        probe = pa.array(arr.astype(np.int64))
    else:
        probe = pa.array([raw_id(v, as_int) for v in arr.tolist()], type=ids.type)
    return pc.index_in(probe, value_set=ids).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _user_and_seen(model: PublishedModel, user: Any, exclude_seen: bool) -> tuple[int | None, np.ndarray, list[str]]:
    """(dense index or None, the user's train items to exclude, notes)."""
    notes: list[str] = []
    user_idx = None if user is None else model.user_index(raw_id(user, model.user_id_is_int))
    if user_idx is None or not exclude_seen:
        return user_idx, np.zeros(0, np.int64), notes
    seen = model.seen_items(user_idx)
    if not model.fs.exists(f"{model.path}/seen.parquet"):
        notes.append(f"note: {describe(model)} was published without seen.parquet; train items are not excluded")
    return user_idx, seen, notes


def recommend_for_user(model: PublishedModel, user: Any, n: int = 10, *, min_ratings: int = MIN_RATINGS,
                       exclude_seen: bool = True) -> Served:
    """Top-``n`` items for a raw user id (its train items excluded unless ``exclude_seen`` is false).

    An unknown user, or one without train ratings, gets the popularity fallback
    (``ranked.fallback``) with a note saying so. Only items with ≥ ``min_ratings`` train ratings
    are proposed (the fallback asks for at least :data:`FALLBACK_MIN_RATINGS`).
    """
    check_n(n)
    allowed = candidate_items(model, min_ratings)
    user_idx, seen, notes = _user_and_seen(model, user, exclude_seen)
    f, who = model.factors, describe(model)
    fallback_min = max(FALLBACK_MIN_RATINGS, min_ratings)
    if user_idx is None:
        notes.append(f"user {user} is not in {who}: showing popular items instead (fallback)")
        ranked = popular_fallback(f, model.item_n_ratings, n, min_ratings=fallback_min)
    elif model.user_n_ratings is not None and model.user_n_ratings[user_idx] == 0:
        notes.append(f"user {user} has no training ratings in {who}: showing popular items instead (fallback)")
        ranked = popular_fallback(f, model.item_n_ratings, n, min_ratings=fallback_min, exclude=seen)
    else:
        ranked = top_n(scorer(model), user_idx, n, seen, allowed=allowed)
        return Served(ranked, notes, f.user_factors[user_idx])
    return Served(ranked, notes)


def recommend_from_ratings(model: PublishedModel, ratings: Mapping[Any, float] | Sequence[tuple[Any, float]],
                           n: int = 10, *, user: Any = None, min_ratings: int = MIN_RATINGS,
                           exclude_seen: bool = True, where: str = "--ratings",
                           scale_where: str | None = None) -> Served:
    """Top-``n`` items for a user folded in from ``ratings`` ((raw item id, rating) pairs) by the model's
    own fold-in (:mod:`factorflow.serving.foldin`); the rated items (and a known ``user``'s train items)
    are excluded. Errors name ``where`` (``scale_where`` for the rating-scale check)."""
    check_n(n)
    given = list(ratings.items()) if isinstance(ratings, Mapping) else [tuple(p) for p in ratings]
    if not given:
        raise ParameterError(f"{where}: give at least one (item, rating) pair")
    if any(len(p) != 2 for p in given):
        raise ParameterError(f"{where}: expected (item, rating) pairs")
    values = np.array([_rating(r, where, item) for item, r in given], dtype=np.float64)
    labels = [str(item) for item, _ in given]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ParameterError(f"{where}: items rated more than once: {', '.join(dup)}")
    allowed = candidate_items(model, min_ratings)
    _, seen, notes = _user_and_seen(model, user, exclude_seen)
    who = describe(model)
    check_rating_scale(list(zip(labels, values.tolist(), strict=True)), model.model_json.get("rating_range"),
                       scale_where or where, who)
    folder = _fold_in_model(model, where)
    idx = raw_indices(model.item_ids, [item for item, _ in given])
    if (idx < 0).any():
        bad = [labels[k] for k in np.flatnonzero(idx < 0)]
        raise NotFoundError(f"{where}: items not in {who}: {', '.join(bad)}")
    w, b = folder.fold_in(model.factors, idx, values)
    ranked = top_n_for_vector(model.factors, w, b, n, np.union1d(idx, seen), allowed=allowed)
    return Served(ranked, notes, np.asarray(w))


def uncertainty(model: PublishedModel, served: Served, param: str = "--uncertainty") -> np.ndarray | None:
    """The predictive std of each ranked item for the user ``served`` was ranked for, by the
    published kind's ``Uncertain`` capability; None for a popularity fallback (no user vector).
    ParameterError naming ``param`` when the kind has no predictive distribution."""
    from factorflow.models import registry
    from factorflow.models.base import Uncertain

    kind = model.model_json.get("kind")
    built = (registry.model_from_params(kind, model.model_json.get("params"))
             if isinstance(kind, str) and kind in registry.kinds() else None)
    if not isinstance(built, Uncertain):
        have = ", ".join(k for k in registry.kinds() if registry.supports(k, Uncertain))
        raise ParameterError(f"{param}: {describe(model)} (kind {kind}) has no predictive distribution "
                             f"(kinds that have one: {have})")
    if served.vector is None:
        return None
    return built.predictive_std(model.factors, served.vector, served.ranked.item_idx)


def _fold_in_model(model: PublishedModel, where: str) -> Any:
    from factorflow.serving.foldin import fold_in_model

    return fold_in_model(model, where)


def _rating(r: Any, where: str, item: Any) -> float:
    try:
        value = float(r)
    except (TypeError, ValueError):
        raise ParameterError(f"{where}: rating {r!r} of item {item} is not a number") from None
    if not np.isfinite(value):
        raise ParameterError(f"{where}: rating {r!r} of item {item} must be finite")
    return value


def similar(model: PublishedModel, item: Any, n: int = 10, *, min_ratings: int = MIN_RATINGS,
            param: str = "--item") -> Ranked:
    """The ``n`` items most similar to a raw item id by cosine of item factors (the item itself excluded).

    For a kind served by its network (keras-deep, keras-residual) the item factors are its item
    embeddings: items the network treats alike, not a dot-product geometry."""
    from factorflow.serving.similar import similar_items

    check_n(n)
    j = model.item_index(raw_id(item, model.item_id_is_int))
    if j is None:
        raise NotFoundError(f"{param} {item}: not in {describe(model)}")
    allowed = candidate_items(model, min_ratings)
    try:
        return similar_items(model.factors, j, n, allowed=allowed)
    except ParameterError as exc:
        raise ParameterError(f"{param} {item}: has a zero factor vector in model {model.name} "
                             f"(no train ratings), so it has no cosine neighbours") from exc


def predict(model: PublishedModel, users: Any, items: Any, *, strict: bool = False) -> np.ndarray:
    """r̂ (float64) for each (users[k], items[k]) raw-id pair, clipped to model.json's ``rating_range``.

    A user or item the model does not know contributes zero factors and bias (μ plus the known
    bias, as evaluation scores cold rows) unless ``strict``, which raises NotFoundError naming them.
    """
    u = raw_indices(model.user_ids, users)
    i = raw_indices(model.item_ids, items)
    if len(u) != len(i):
        raise ParameterError(f"users/items: lengths {len(u)} and {len(i)} differ; give one item per user")
    if strict and ((u < 0).any() or (i < 0).any()):
        bad = ([f"user {v}" for v in np.asarray(users, dtype=object).reshape(-1)[u < 0][:10]]
               + [f"item {v}" for v in np.asarray(items, dtype=object).reshape(-1)[i < 0][:10]])
        raise NotFoundError(f"not in {describe(model)}: {', '.join(bad)}")
    f = model.factors
    known = (u >= 0) & (i >= 0)
    out = np.full(len(u), float(f.global_mean), dtype=np.float64)
    out[known] = scorer(model).score_pairs(u[known], i[known])
    only_u, only_i = (u >= 0) & ~known, (i >= 0) & ~known
    out[only_u] += f.user_bias[u[only_u]]
    out[only_i] += f.item_bias[i[only_i]]
    scale = model.model_json.get("rating_range")
    if scale:
        np.clip(out, float(scale[0]), float(scale[1]), out=out)
    return out


def check_n(n: Any, param: str = "n") -> None:
    """ParameterError naming ``param`` unless ``n`` (how many items) is an integer >= 1."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ParameterError(f"{param}={n if isinstance(n, (int, np.integer)) else repr(n)}: must be >= 1")
