"""Champion/challenger: the new version against CURRENT on the same test data; warm starts from CURRENT.

**The challenge** (:func:`challenge_current`). The challenger is the version being published, with
the metrics :mod:`factorflow.pipeline.evaluate` measured on its split. The champion is the
version CURRENT names. Its metrics on that split are

- ``recorded``: its own ``model.json`` metrics, when it was evaluated on the same dataset,
  snapshot and split id (the same test rows, the same train rows excluded from its top-N);
- ``rescored``: otherwise. The published champion is mapped onto the challenger's snapshot by
  raw id (:func:`id_map`: dense index of the new snapshot → the champion's, -1 where the
  champion does not know the id) and evaluated by the same code the challenger's metrics came
  from (:func:`factorflow.pipeline.evaluate.evaluate_on_split`, without the baselines). A
  dot-product champion becomes a :class:`~factorflow.factors.FactorArrays` in the new id space
  (:func:`remap_factors`); a network-served one (keras-deep, keras-residual) a
  :class:`MappedScorer` over its published network. Either way a user or item the champion does
  not know gets the champion's own fallback, as its serving and its evaluation do for a
  cold-start row: μ plus whichever of the two biases it knows (zero factors).

The challenger replaces CURRENT only when its test RMSE ≤ the champion's + ``rmse_tolerance``
and its NDCG@10 ≥ the champion's − ``ndcg_tolerance`` (:func:`decide`). The first version of a
model (no CURRENT) is accepted without a challenge; so is everything with ``challenge`` off.

**Warm start** (:func:`warm_start_from_current`): CURRENT's factor tables mapped by raw id onto
the new snapshot's dense indices, handed to a model that takes initial factors (ALS's
``set_initial``); rows CURRENT does not know keep the model's usual random start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from factorflow.config import PublishOptions
from factorflow.errors import InputError, NotFoundError
from factorflow.factors import FactorArrays
from factorflow.serving.network import SERVING_NETWORK
from factorflow.serving.scoring import Scorer
from factorflow.storage.datasets import SnapshotRef, read_ids
from factorflow.storage.registry import PublishedModel, load_model, named_current
from factorflow.storage.splits import SplitRef

#: The challenge compares these test metrics (model.json ``metrics.test`` keys).
RMSE, NDCG = "rmse", "ndcg@10"
#: What the challenge record keeps of the champion's metrics.
KEPT_METRICS = ("rmse", "mae", "ndcg@10", "precision@10", "recall@10", "n")


# ---------------------------------------------------------------- raw ids → dense indices


def id_map(known: pa.Array, wanted: pa.Array) -> np.ndarray:
    """For each id of ``wanted`` (a new snapshot's ids in dense order), its index in ``known`` (a
    published version's ids), -1 where absent. Integer ids match integers, strings strings; ids
    of different kinds (int vs string) never match."""
    known = known.combine_chunks() if isinstance(known, pa.ChunkedArray) else known
    wanted = wanted.combine_chunks() if isinstance(wanted, pa.ChunkedArray) else wanted
    if pa.types.is_integer(known.type) and pa.types.is_integer(wanted.type):
        known, wanted = known.cast(pa.int64()), wanted.cast(pa.int64())
    elif _is_text(known.type) and _is_text(wanted.type):
        known, wanted = known.cast(pa.string()), wanted.cast(pa.string())
    else:
        return np.full(len(wanted), -1, dtype=np.int64)
    if len(wanted) == 0:
        return np.zeros(0, dtype=np.int64)
    idx = pc.index_in(wanted, value_set=known).fill_null(-1)
    return idx.to_numpy(zero_copy_only=False).astype(np.int64)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _take_rows(a: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """Rows ``a[mapping[k]]`` where ``mapping[k] >= 0``, zeros elsewhere (same dtype)."""
    out = np.zeros((len(mapping), *a.shape[1:]), dtype=a.dtype)
    known = mapping >= 0
    out[known] = a[mapping[known]]
    return out


def remap_factors(f: FactorArrays, user_map: np.ndarray, item_map: np.ndarray) -> FactorArrays:
    """``f`` in another dense id space: row k of the result is row ``user_map[k]`` (``item_map``)
    of ``f``, zero factors and zero bias where the map is -1 (so r̂ falls back to μ + known bias)."""
    return FactorArrays(_take_rows(f.user_factors, user_map), _take_rows(f.item_factors, item_map),
                        _take_rows(f.user_bias, user_map), _take_rows(f.item_bias, item_map), f.global_mean)


class MappedScorer:
    """A :class:`~factorflow.serving.scoring.Scorer` in a new dense id space over a scorer of
    another one (e.g. a published network): pairs whose user and item the inner scorer knows are
    scored by it; every other pair by ``fallback`` (μ + the known biases, in the new space)."""

    def __init__(self, inner: Scorer, user_map: np.ndarray, item_map: np.ndarray, fallback: FactorArrays) -> None:
        self.inner, self.user_map, self.item_map, self.fallback = inner, user_map, item_map, fallback
        self._known_items = np.flatnonzero(item_map >= 0)

    @property
    def n_users(self) -> int:
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        return len(self.item_map)

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        out = self.fallback.score_pairs(users, items)
        u, i = self.user_map[users], self.item_map[items]
        both = (u >= 0) & (i >= 0)
        if both.any():
            out[both] = self.inner.score_pairs(u[both], i[both])
        return out

    def score_users(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        out = self.fallback.score_users(users)
        u = self.user_map[users]
        rows = np.flatnonzero(u >= 0)
        if rows.size and self._known_items.size:
            scores = self.inner.score_users(u[rows])
            out[np.ix_(rows, self._known_items)] = scores[:, self.item_map[self._known_items]]
        return out


def champion_scorer(champion: PublishedModel, user_ids: pa.Array, item_ids: pa.Array) -> Scorer:
    """The published ``champion`` as a scorer over the dense ids whose raw ids are ``user_ids`` /
    ``item_ids`` (unknown ids: the champion's fallback, see the module docstring)."""
    from factorflow.serving.published import scorer

    user_map, item_map = id_map(champion.user_ids, user_ids), id_map(champion.item_ids, item_ids)
    f = champion.factors
    if champion.model_json.get("serving") != SERVING_NETWORK:
        return remap_factors(f, user_map, item_map)
    biases = FactorArrays(np.zeros((len(user_map), 0), np.float32), np.zeros((len(item_map), 0), np.float32),
                          _take_rows(f.user_bias, user_map), _take_rows(f.item_bias, item_map), f.global_mean)
    return MappedScorer(scorer(champion), user_map, item_map, biases)


# ---------------------------------------------------------------- the challenge


def same_test_data(meta: dict[str, Any], snapshot: SnapshotRef, split: SplitRef) -> bool:
    """Whether a version's recorded metrics were measured on this snapshot's split ``split``."""
    ds, sp = meta.get("dataset") or {}, meta.get("split") or {}
    return (ds.get("name"), ds.get("snapshot"), sp.get("id")) == (snapshot.name, snapshot.snapshot, split.split)


def champion_metrics(champion: PublishedModel, snapshot: SnapshotRef, split: SplitRef,
                     rating_range: tuple[float, float]) -> tuple[dict[str, Any], str]:
    """(the champion's test metrics on ``split``, ``"recorded"`` or ``"rescored"``)."""
    recorded = (champion.model_json.get("metrics") or {}).get("test") or {}
    if same_test_data(champion.model_json, snapshot, split) and recorded.get(RMSE) is not None \
            and NDCG in recorded:
        return recorded, "recorded"
    from factorflow.pipeline.evaluate import evaluate_on_split

    scorer = champion_scorer(champion, read_ids(snapshot, "user").column("user_id"),
                             read_ids(snapshot, "item").column("item_id"))
    return evaluate_on_split(scorer, split, rating_range=rating_range, baselines=())["test"], "rescored"


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def decide(challenger: dict[str, Any], champion: dict[str, Any], options: PublishOptions, split: str,
           champion_version: str, obtained: str) -> tuple[bool, str]:
    """(accepted, one-line reason) for challenger/champion test metrics on split ``split``."""
    ch_rmse, cp_rmse = challenger.get(RMSE), champion.get(RMSE)
    ch_ndcg, cp_ndcg = challenger.get(NDCG), champion.get(NDCG)
    who = f"CURRENT {champion_version}'s {{}} ({obtained})"
    fails, passes = [], []
    if ch_rmse is None or cp_rmse is None:
        passes.append(f"RMSE not compared (challenger {_f(ch_rmse)}, champion {_f(cp_rmse)})")
    elif ch_rmse > cp_rmse + options.rmse_tolerance + 1e-12:
        fails.append(f"its test RMSE {ch_rmse:.4f} is worse than {who.format(f'{cp_rmse:.4f}')} by more than the "
                     f"tolerance {options.rmse_tolerance:g}")
    else:
        passes.append(f"test RMSE {ch_rmse:.4f} vs {who.format(f'{cp_rmse:.4f}')} (tolerance "
                      f"{options.rmse_tolerance:g})")
    if ch_ndcg is None or cp_ndcg is None:
        passes.append(f"NDCG@10 not compared (challenger {_f(ch_ndcg)}, champion {_f(cp_ndcg)})")
    elif ch_ndcg < cp_ndcg - options.ndcg_tolerance - 1e-12:
        rmses = "" if fails else f" (test RMSE {_f(ch_rmse)} vs CURRENT's {_f(cp_rmse)})"  # both RMSEs named once
        fails.append(f"its NDCG@10 {ch_ndcg:.4f} is below CURRENT's {cp_ndcg:.4f} by more than the tolerance "
                     f"{options.ndcg_tolerance:g}{rmses}")
    else:
        passes.append(f"NDCG@10 {ch_ndcg:.4f} vs CURRENT's {cp_ndcg:.4f} (tolerance {options.ndcg_tolerance:g})")
    if fails:
        return False, f"{' and '.join(fails)} on split {split}"
    return True, f"{'; '.join(passes)} on split {split}"


def challenge_current(store: str, name: str, metrics: dict[str, Any], snapshot: SnapshotRef, split: SplitRef,
                      rating_range: tuple[float, float], options: PublishOptions) -> dict[str, Any]:
    """The challenge record of a new version of ``name`` whose evaluation is ``metrics`` (model.json
    ``challenge``): ``decision`` (``accepted`` | ``rejected``), ``reason`` (one line), and when a
    champion was compared ``champion: {version, kind, metrics, obtained}``, ``challenger`` (its test
    RMSE and NDCG@10), ``split``, ``tolerances``."""
    tolerances = {RMSE: options.rmse_tolerance, NDCG: options.ndcg_tolerance}
    if not options.challenge:
        return {"decision": "accepted", "reason": "no challenge (challenge off)", "tolerances": tolerances}
    if named_current(store, name) is None:
        return {"decision": "accepted", "tolerances": tolerances,
                "reason": f"first version of model {name}: no CURRENT to challenge"}
    try:
        champion = load_model(store, name)
    except (NotFoundError, InputError) as exc:  # CURRENT names a missing or damaged version
        return {"decision": "accepted", "tolerances": tolerances,
                "reason": f"CURRENT is unusable, so the challenger replaces it ({exc})"}
    test, obtained = champion_metrics(champion, snapshot, split, rating_range)
    challenger = metrics.get("test") or {}
    accepted, reason = decide(challenger, test, options, split.split, champion.version, obtained)
    return {
        "decision": "accepted" if accepted else "rejected",
        "reason": reason,
        "split": split.split,
        "snapshot": snapshot.snapshot,
        "tolerances": tolerances,
        "champion": {"version": champion.version, "kind": champion.model_json.get("kind"), "obtained": obtained,
                     "metrics": {k: test.get(k) for k in KEPT_METRICS if k in test}},
        "challenger": {k: challenger.get(k) for k in (RMSE, NDCG)},
    }


def decision_markdown(name: str, version: str, accepted: bool, reason: str,
                      challenge: dict[str, Any] | None) -> str:
    """The ``publish-decision`` artifact: accepted or rejected, why, and the two sides' metrics."""
    lines = [f"# {name} {version}: {'ACCEPTED — now CURRENT' if accepted else 'REJECTED — CURRENT unchanged'}",
             "", reason, ""]
    champ = (challenge or {}).get("champion")
    if champ:
        cm, ch = champ["metrics"], challenge["challenger"]
        tol = challenge["tolerances"]
        lines += [f"Split `{challenge['split']}`; champion metrics {champ['obtained']}.", "",
                  "| | version | test RMSE | NDCG@10 |", "|---|---|---|---|",
                  f"| challenger | {version} | {_f(ch.get(RMSE))} | {_f(ch.get(NDCG))} |",
                  f"| champion (CURRENT) | {champ['version']} | {_f(cm.get(RMSE))} | {_f(cm.get(NDCG))} |",
                  f"| tolerance | | +{tol[RMSE]:g} | −{tol[NDCG]:g} |"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- warm start


@dataclass
class WarmStart:
    """Where a warm start comes from: model ``name``'s CURRENT in ``store``, mapped by raw id onto
    ``snapshot`` (the snapshot being trained on)."""

    store: str
    name: str
    snapshot: SnapshotRef


def warm_start_from_current(model: Any, warm: WarmStart) -> dict[str, Any]:
    """Hand ``model`` CURRENT's factors mapped by raw id (``model.set_initial``); returns what
    happened, for the log and model.json ``fit.warm_start``: ``{"from": version, "users": known,
    "items": known, ...}`` or ``{"skipped": reason}`` (then the fit starts cold)."""
    set_initial = getattr(model, "set_initial", None)
    if set_initial is None:
        return {"skipped": f"model {model.kind} takes no initial factors: cold start"}
    try:
        champion = load_model(warm.store, warm.name)
    except NotFoundError:
        return {"skipped": f"model {warm.name} has no CURRENT version to start from: cold start"}
    if champion.model_json.get("serving") == SERVING_NETWORK:
        return {"skipped": f"CURRENT {champion.version} is served by its network (its tables are embeddings, "
                           "not dot-product factors): cold start"}
    rank, want = champion.factors.rank, getattr(model.config, "rank", None)
    if rank != want:
        return {"skipped": f"CURRENT {champion.version} has rank {rank}, this fit rank {want}: cold start"}
    user_map = id_map(champion.user_ids, read_ids(warm.snapshot, "user").column("user_id"))
    item_map = id_map(champion.item_ids, read_ids(warm.snapshot, "item").column("item_id"))
    set_initial(remap_factors(champion.factors, user_map, item_map), user_map >= 0, item_map >= 0)
    return {"from": champion.version, "kind": champion.model_json.get("kind"),
            "users": int((user_map >= 0).sum()), "n_users": len(user_map),
            "items": int((item_map >= 0).sum()), "n_items": len(item_map)}
