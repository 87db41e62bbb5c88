"""The Python API: serve from a published model, or retrain one, through the code paths the CLI runs.

::

    import factorflow

    m = factorflow.load_model("ff-store", "als")         # CURRENT version (or version="...")
    m.predict([1, 1], [318, 296])                          # r̂ clipped to the model's rating range
    m.recommend(1, n=5)                                    # [{"item", "score", "title", "fallback"}, ...]
    m.similar(260, n=5)
    m.fold_in({318: 5, 296: 4.5}, n=5)                     # a new user, no retraining
    factorflow.retrain("ratings.csv", store="ff-store", model="als", rank=30)

Ids are raw ids as in the ratings source (ints stay ints; a string is parsed as the CLI parses
``--user``). ``recommend``, ``similar`` and ``fold_in`` return a list of dicts, best first:
``{"item": raw id, "score": float, "title": str | None, "fallback": bool}`` (``title`` is None
when the model was published without titles; ``fallback`` is True for a popularity list given
to an unknown user). ``pandas.DataFrame(rows)`` turns one into a table. Errors are the CLI's
one-line :class:`~factorflow.errors.FactorflowError` subclasses, naming the argument.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from factorflow.errors import ParameterError
from factorflow.serving.candidates import MIN_RATINGS

if TYPE_CHECKING:
    import numpy as np

    from factorflow.serving.topn import Ranked
    from factorflow.storage.registry import PublishedModel

__all__ = ["Model", "backfill", "load_model", "retrain"]

log = logging.getLogger("factorflow")


class Model:
    """One published model version, read from its tables; every method is the CLI's serving path.

    Attributes from ``model.json``: ``name``, ``version``, ``kind``, ``params``, ``metrics``,
    ``rating_range`` (None if not recorded) and the whole ``model_json``.
    """

    def __init__(self, published: PublishedModel) -> None:
        self.published = published
        meta = published.model_json
        self.name: str = published.name
        self.version: str = published.version
        self.model_json: dict[str, Any] = meta
        self.kind: str | None = meta.get("kind")
        self.params: dict[str, Any] = dict(meta.get("params") or {})
        self.metrics: dict[str, Any] = dict(meta.get("metrics") or {})
        scale = meta.get("rating_range")
        self.rating_range: tuple[float, float] | None = (float(scale[0]), float(scale[1])) if scale else None

    def __repr__(self) -> str:
        return f"<factorflow.Model {self.name} version {self.version} kind {self.kind}>"

    @property
    def n_users(self) -> int:
        return self.published.factors.n_users

    @property
    def n_items(self) -> int:
        return self.published.factors.n_items

    def predict(self, users: Any, items: Any, *, strict: bool = False) -> np.ndarray:
        """r̂ (float64 array) per (users[k], items[k]) raw-id pair, clipped to the model's rating range.

        An id the model does not know contributes zero factors and bias (μ plus the known bias, as
        evaluation scores cold rows); ``strict=True`` raises NotFoundError naming the unknown ids.
        """
        from factorflow.serving import published as serve

        return serve.predict(self.published, users, items, strict=strict)

    def recommend(self, user: Any, n: int = 10, exclude_seen: bool = True, *,
                  min_ratings: int = MIN_RATINGS) -> list[dict[str, Any]]:
        """Top-``n`` items for a raw user id, its train items excluded (unless ``exclude_seen`` is false).

        An unknown user, or one without train ratings, gets popular items with ``fallback: True``.
        Only items with ≥ ``min_ratings`` train ratings are proposed (as ``recommend --min-ratings``).
        """
        from factorflow.serving import published as serve

        serve.check_n(n)
        served = serve.recommend_for_user(self.published, user, n, min_ratings=min_ratings,
                                          exclude_seen=exclude_seen)
        for note in served.notes:
            log.info("%s", note)
        return self._rows(served.ranked)

    def similar(self, item: Any, n: int = 10, *, min_ratings: int = MIN_RATINGS) -> list[dict[str, Any]]:
        """The ``n`` items with the highest cosine to a raw item id's factor vector (the item excluded).

        ``score`` is the cosine. NotFoundError for an unknown item; ParameterError for an item with
        a zero factor vector (no train ratings, or a rank-0 model such as the bias baseline).
        """
        from factorflow.serving import published as serve

        serve.check_n(n)
        return self._rows(serve.similar(self.published, item, n, min_ratings=min_ratings, param="item"))

    def fold_in(self, ratings: Mapping[Any, float] | Sequence[tuple[Any, float]], n: int = 10, *,
                min_ratings: int = MIN_RATINGS) -> list[dict[str, Any]]:
        """Top-``n`` items for a new user who rated ``ratings`` ({raw item id: rating} or (item, rating)
        pairs), folded in by the model's own fold-in (its regularization); the rated items are excluded.

        ParameterError for a rating outside the model's scale or a kind that cannot fold in;
        NotFoundError naming the item ids the model does not know.
        """
        from factorflow.serving import published as serve

        serve.check_n(n)
        served = serve.recommend_from_ratings(self.published, ratings, n, min_ratings=min_ratings, where="ratings")
        return self._rows(served.ranked)

    def _rows(self, ranked: Ranked) -> list[dict[str, Any]]:
        p = self.published
        rows = []
        for j, s in zip(ranked.item_idx, ranked.scores, strict=True):
            rows.append({"item": p.item_ids[int(j)].as_py(), "score": float(s), "title": p.title(int(j)),
                         "fallback": bool(ranked.fallback)})
        return rows


def load_model(store: str, name: str, version: str | None = None) -> Model:
    """The published ``version`` of model ``name`` in ``store`` (CURRENT when None), ready to serve.

    Reads only the published tables (NotFoundError with a hint when there is no such model/version).
    """
    from factorflow.storage.registry import load_model as load_published

    return Model(load_published(store, name, version))


#: retrain() keyword → (RetrainParams section, field); the rest are the model's hyper-parameters.
_PIPELINE_OPTIONS: dict[str, tuple[str, str]] = {
    "dataset": ("ingest", "dataset"), "format": ("ingest", "format"), "columns": ("ingest", "columns"),
    "delimiter": ("ingest", "delimiter"), "rating_range": ("ingest", "rating_range"),
    "max_reject_fraction": ("ingest", "max_reject_fraction"), "test_source": ("ingest", "test_source"),
    "split": ("split", "kind"), "test_fraction": ("split", "test_fraction"), "seed": ("split", "seed"),
    "cutoff": ("split", "cutoff"), "per_user": ("split", "per_user"), "k": ("split", "k"), "by": ("split", "by"),
    "dask_address": ("compute", "dask_address"), "workers": ("compute", "n_workers"),
    "blocks": ("compute", "n_blocks"), "device": ("compute", "device"), "top_n": ("", "top_n"),
    "titles": ("", "item_titles"),
    "challenge": ("publish", "challenge"), "rmse_tolerance": ("publish", "rmse_tolerance"),
    "ndcg_tolerance": ("publish", "ndcg_tolerance"), "keep_versions": ("publish", "keep_versions"),
    "warm_start": ("", "warm_start"),
}


def retrain(source: str, store: str = "ff-store", model: Any = "als", name: str | None = None,
            **options: Any) -> dict[str, Any]:
    """Run the retrain flow on ``source`` exactly as ``factorflow retrain`` does; return its summary dict.

    ``model`` is a kind (``"als"``, ``"bias"``, ``"global-mean"``) or a kind's config object; ``name``
    the published name (default: the kind). ``options`` are the CLI's options as Python names:
    pipeline options (``split``, ``test_fraction``, ``seed``, ``cutoff``, ``per_user``, ``k``, ``by``,
    ``dask_address``, ``workers``, ``blocks``, ``device``, ``top_n``, ``titles``, ``dataset``, ``format``,
    ``columns``, ``delimiter``, ``rating_range``, ``max_reject_fraction``, ``test_source``; publishing:
    ``challenge`` (False: replace CURRENT without comparing), ``rmse_tolerance``, ``ndcg_tolerance``,
    ``keep_versions``, ``warm_start``) and the
    kind's hyper-parameters named like its options (``rank``, ``reg``, ``sweeps``, ``model_seed``, ...;
    one the kind does not take is a ParameterError). Everything is checked before the flow starts.
    The flow reports to ``$PREFECT_API_URL``, else to a private Prefect API server started for the
    call (in ``PREFECT_HOME``). The summary has ``model``, ``version``, ``kind``, ``params``,
    ``metrics``, ``dataset``, ``snapshot``, ``split``, ``store`` and ``rejects``.
    """
    from factorflow.cli._prefect_api import prefect_api
    from factorflow.cli.cmd_retrain import rejects_note
    from factorflow.flows.retrain import retrain_flow

    hyper = {k: v for k, v in options.items() if k not in _PIPELINE_OPTIONS}
    config = _model_config(model, hyper)
    params = _retrain_params({k: v for k, v in options.items() if k in _PIPELINE_OPTIONS})
    _check_request(source, store, name, config, params)
    with prefect_api():
        summary = retrain_flow(source, store, config, name, params)
    summary["rejects"] = rejects_note(store, summary["dataset"], summary["snapshot"])
    return summary


#: retrain()'s pipeline options a backfill does not take: its cutoffs make the splits; it never switches CURRENT.
_NOT_FOR_BACKFILL = ("split", "test_fraction", "seed", "cutoff", "per_user", "k", "by", "test_source", "challenge",
                     "rmse_tolerance", "ndcg_tolerance", "keep_versions", "warm_start")


def backfill(source: str, store: str = "ff-store", start: Any = None, end: Any = None, every: str = "30d",
             model: Any = "als", *, publish: bool = False, name: str | None = None, **options: Any) -> dict[str, Any]:
    """Run the backfill flow as ``factorflow backfill`` does; return its summary dict.

    For each cutoff ``start, start + every, …`` before ``end`` (ISO dates/datetimes in UTC, or
    ``date``/``datetime`` objects; ``every`` like ``30d``, ``12h``, ``1w``, ``3mo``, ``1y``) the
    model is trained on the ratings before the cutoff and evaluated on the window after it
    (:mod:`factorflow.flows.backfill`). ``model`` and ``options`` are as for :func:`retrain`
    (hyper-parameters; ``dataset``, ``format``, ..., ``dask_address``, ``workers``, ``blocks``,
    ``device``, ``top_n``, ``titles``), without the split and publishing options. With ``publish``
    each cutoff's model is published as a historical version of ``name`` (default: the kind),
    never as CURRENT. Finished cutoffs are reused by a re-run. The summary has ``rows`` (one per
    cutoff), ``backfill_id``, ``reused``, ``json``, ``parquet``, ``png``, ``dataset``,
    ``snapshot``, ``kind``, ``params``, ``store`` and ``rejects``.
    """
    from factorflow.cli._prefect_api import prefect_api
    from factorflow.cli.cmd_retrain import rejects_note
    from factorflow.flows.backfill import backfill_flow
    from factorflow.pipeline.backfill import format_instant, parse_instant, windows_from_request

    if start is None or end is None:
        raise ParameterError(f"{'start' if start is None else 'end'}: required (an ISO date such as 2015-01-01)")
    refused = [k for k in options if k in _NOT_FOR_BACKFILL]
    if refused:
        raise ParameterError(f"{', '.join(refused)}: a backfill does not take {'it' if len(refused) == 1 else 'them'} "
                             "(its cutoffs make the splits from one ratings file; it never switches CURRENT)")
    if not isinstance(start, str):
        start = format_instant(parse_instant(start, "start"))
    if not isinstance(end, str):
        end = format_instant(parse_instant(end, "end"))
    windows_from_request(start, end, every)
    hyper = {k: v for k, v in options.items() if k not in _PIPELINE_OPTIONS}
    config = _model_config(model, hyper)
    params = _retrain_params({k: v for k, v in options.items() if k in _PIPELINE_OPTIONS})
    _check_request(source, store, name, config, params)
    with prefect_api():
        summary = backfill_flow(source, store, start, end, every, config, params, publish, name)
    summary["rejects"] = rejects_note(store, summary["dataset"], summary["snapshot"])
    return summary


def _model_config(model: Any, hyper: dict[str, Any]) -> Any:
    """The validated config of ``model`` (a kind or a config) with ``hyper`` (option-style names) over it."""
    from factorflow.models import registry
    from factorflow.models.base import config_options, config_params, option_name

    if isinstance(model, str):
        registry.spec(model, "model")  # an unknown kind: "model='nope': must be one of ..."
        kind, base = model, {}
    else:
        config = registry.as_config(model)
        kind, base = config.kind, config_params(config)
    fields = {option_name(f).lstrip("-").replace("-", "_"): f.name for f in config_options(registry.config_class(kind))}
    unknown = [k for k in hyper if k not in fields]
    if unknown:
        takes = ", ".join(fields) or "no hyper-parameters"
        raise ParameterError(f"{', '.join(unknown)}: model {kind} does not take "
                             f"{'it' if len(unknown) == 1 else 'them'} (it takes: {takes}; retrain also takes: "
                             f"{', '.join(_PIPELINE_OPTIONS)})")
    values = {**base, **{fields[k]: v for k, v in hyper.items()}}
    try:
        return registry.make_config(kind, values)
    except ParameterError as exc:
        field, sep, rest = str(exc).partition("=")
        by_field = {f: kw for kw, f in fields.items()}
        if sep and field in by_field and by_field[field] != field:  # name it as the caller did
            raise ParameterError(by_field[field] + "=" + rest) from None
        raise


def _retrain_params(options: dict[str, Any]) -> Any:
    """``RetrainParams`` from retrain()'s pipeline options (one-line ParameterError naming the option)."""
    from pydantic import ValidationError

    from factorflow.config import ComputeOptions, IngestOptions, PublishOptions, RetrainParams, SplitOptions

    sections: dict[str, dict[str, Any]] = {"ingest": {}, "split": {}, "compute": {}, "publish": {}, "": {}}
    for key, value in options.items():
        section, field = _PIPELINE_OPTIONS[key]
        sections[section][field] = value
    names = {f"{section}.{field}" if section else field: key for key, (section, field) in _PIPELINE_OPTIONS.items()}

    def build(cls: Any, section: str, values: dict[str, Any]) -> Any:
        try:
            return cls(**values)
        except ValidationError as exc:
            parts = []
            for e in exc.errors():
                loc = ".".join([section] * bool(section) + [str(p) for p in e["loc"]])
                value = f"={e['input']!r}" if "input" in e and not isinstance(e["input"], dict) else ""
                parts.append(f"{names.get(loc, loc)}{value}: {e['msg']}")
            raise ParameterError("; ".join(parts)) from None

    return build(RetrainParams, "", {
        "ingest": build(IngestOptions, "ingest", sections["ingest"]),
        "split": build(SplitOptions, "split", sections["split"]),
        "compute": build(ComputeOptions, "compute", sections["compute"]),
        "publish": build(PublishOptions, "publish", sections["publish"]),
        **sections[""],
    })


def _check_request(source: str, store: str, name: str | None, config: Any, params: Any) -> None:
    """What ``factorflow retrain`` checks before its flow starts (``cmd_retrain.check_request``)."""
    from factorflow.cli.cmd_retrain import check_sources_exist
    from factorflow.pipeline.train import check_fit_memory
    from factorflow.serving.titles import read_titles
    from factorflow.storage.fs import probe_writable
    from factorflow.storage.registry import check_name

    check_sources_exist(source, params.ingest.test_source, params.item_titles)
    if params.item_titles:
        read_titles(params.item_titles, item_is_int=False, option="titles")
    check_fit_memory(config, n_workers=params.compute.n_workers or 1)
    check_name(name or config.kind, "name" if name else "model")
    try:
        probe_writable(store)
    except OSError as exc:
        raise ParameterError(f"store={store!r}: cannot write there ({exc.strerror or exc}); "
                             "choose a folder you can write to") from None
