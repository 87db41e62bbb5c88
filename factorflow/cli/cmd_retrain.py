"""``factorflow retrain SOURCE``: run the Prefect retrain flow and print the metrics table."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from factorflow.cli._common import (
    add_ingest_args,
    add_store_arg,
    ensure_writable_store,
    ingest_options,
    one_line,
    quiet_user_error_tracebacks,
)

MODEL_OPTIONS = {"rank": "--rank", "reg": "--reg", "sweeps": "--sweeps", "weighted": "--weighted",
                 "init_scale": "--init-scale", "seed": "--model-seed"}  # model config field → CLI option


def add_retrain_args(p: argparse.ArgumentParser) -> None:
    """Model, split and compute options (shared with ``demo``)."""
    p.add_argument("--name", help="published model name (default: the model kind)")
    p.add_argument("--model", default="als", help="model kind: als | bias | global-mean (default: als)")
    m = p.add_argument_group("hyper-parameters (default: the model's tuned defaults)")
    m.add_argument("--rank", type=int, help="latent dimensionality K")
    m.add_argument("--reg", type=float, help="regularization λ")
    m.add_argument("--sweeps", type=int, help="ALS sweeps")
    m.add_argument("--weighted", action=argparse.BooleanOptionalAction, default=None,
                   help="ALS-WR: scale λ by each row's rating count")
    m.add_argument("--init-scale", type=float, help="std of the random initial factors")
    m.add_argument("--model-seed", type=int, help="seed of the model's initial factors")
    s = p.add_argument_group("split")
    s.add_argument("--split", default="random", choices=["random", "temporal", "user-holdout", "given"])
    s.add_argument("--test-fraction", type=float, default=0.2)
    s.add_argument("--seed", type=int, default=42, help="split seed (default 42)")
    s.add_argument("--cutoff", type=int, help="temporal: test = ratings at or after this timestamp")
    s.add_argument("--per-user", action="store_true", help="temporal: each user's last fraction by time")
    s.add_argument("-k", type=int, default=1, help="user-holdout: ratings held out per user")
    s.add_argument("--by", choices=["time", "random"], default="time", help="user-holdout: which ratings")
    c = p.add_argument_group("compute")
    c.add_argument("--dask-address", help="tcp://HOST:PORT of a running Dask scheduler "
                                          "(default: $FACTORFLOW_DASK_ADDRESS, else a LocalCluster)")
    c.add_argument("--workers", type=int, help="LocalCluster worker processes (default: one per core)")
    c.add_argument("--blocks", type=int, help="partition blocks P per side (default: from the rating count)")
    p.add_argument("--top-n", type=int, default=10, help="N for top-N metrics and batch recommendations")
    p.add_argument("--titles", help="a movies.csv (movieId,title,...) whose titles are published with the items")
    p.add_argument("--json", action="store_true", help="print the flow's summary as JSON")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrain", help="ingest → split → partition → train → evaluate → publish (Prefect flow)",
                       description="Retrain a model on SOURCE and publish its factor tables.")
    p.add_argument("source", help="ratings file: local path or fsspec URL")
    add_store_arg(p)
    p.add_argument("--dataset", help="dataset name in the store (default: the source file's stem)")
    add_ingest_args(p)
    add_retrain_args(p)
    p.set_defaults(func=run)


def params_from_args(args: argparse.Namespace, dataset: str | None) -> Any:
    from pydantic import ValidationError

    from factorflow.config import ComputeOptions, ModelOptions, RetrainParams, SplitOptions
    from factorflow.errors import ParameterError

    def build(cls: Any, options: dict[str, str], **values: Any) -> Any:
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ParameterError(one_line(exc, options)) from None

    split = build(SplitOptions, {"kind": "--split", "k": "-k"}, kind=args.split, test_fraction=args.test_fraction,
                  seed=args.seed, cutoff=args.cutoff, per_user=args.per_user, k=args.k, by=args.by)
    model = build(ModelOptions, {"seed": "--model-seed"}, rank=args.rank, reg=args.reg, sweeps=args.sweeps,
                  weighted=args.weighted, init_scale=args.init_scale, seed=args.model_seed)
    compute = build(ComputeOptions, {"n_workers": "--workers", "n_blocks": "--blocks"},
                    dask_address=args.dask_address, n_workers=args.workers, n_blocks=args.blocks)
    return build(RetrainParams, {"item_titles": "--titles"}, ingest=ingest_options(args, dataset), split=split,
                 model=model, compute=compute, top_n=args.top_n, item_titles=args.titles)


def print_summary(summary: dict[str, Any], top_n: int, out=sys.stdout) -> None:
    from factorflow.evaluation.report import format_table, metrics_rows

    m = summary["metrics"]
    print(f"\nmodel {summary['model']} version {summary['version']} published in {summary['store']}", file=out)
    print(f"dataset {summary['dataset']} snapshot {summary['snapshot']}; held-out metrics on split "
          f"'{summary['split']}' ({m['split']['n_test']} test ratings):\n", file=out)
    print(format_table(metrics_rows(m, summary["kind"], top_n)), file=out)
    warm, cold = m["test"].get("warm"), m["test"].get("cold")
    if warm and cold:
        print(f"\n{summary['kind']} test RMSE on warm rows {_num(warm['rmse'])} ({warm['n']:,}); on cold-start rows "
              f"(user or item unseen in train: μ + known bias) {_num(cold['rmse'])} ({cold['n']:,})", file=out)
    print(f"train RMSE {_num(m['train']['rmse'])}", file=out)
    if summary.get("rejects"):
        print(f"ingest: {summary['rejects']}", file=out)
    if m.get("learning_curve_png"):
        print(f"learning curve: {m['learning_curve_png']}", file=out)


def rejects_note(store: str, dataset: str, snapshot: str) -> str | None:
    """How many source rows the snapshot's ingest rejected and where they are listed (None: none)."""
    from factorflow.data.ingest import describe_rejects
    from factorflow.storage.datasets import resolve_snapshot

    return describe_rejects(resolve_snapshot(store, dataset, snapshot))


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def check_sources_exist(*sources: str | None) -> None:
    """Fail in one line, before Prefect starts, when a source file is missing."""
    from factorflow.errors import InputError
    from factorflow.storage.fs import open_path

    for src in sources:
        if src:
            fs, path = open_path(src)
            if not fs.exists(path):
                raise InputError(f"{src}: file not found")


def check_request(args: argparse.Namespace, params: Any) -> None:
    """Everything that can be checked before the flow starts, each failure one line: sources,
    the titles file, the model kind and values (and the memory its fit needs), the published
    name, the store's writability."""
    from factorflow.errors import ParameterError
    from factorflow.models.registry import make_model
    from factorflow.storage.registry import check_name
    from factorflow.serving.titles import read_titles
    from factorflow.pipeline.train import check_fit_memory

    check_sources_exist(args.source, args.test_source, args.titles)
    if args.titles:
        read_titles(args.titles, item_is_int=False)
    try:
        model = make_model(args.model, params.model.overrides())  # a bad kind or value fails here
    except ParameterError as exc:  # the model names its fields; the user typed options
        field, sep, rest = str(exc).partition("=")
        if sep and field in MODEL_OPTIONS:
            raise ParameterError(MODEL_OPTIONS[field] + "=" + rest) from None
        raise
    check_fit_memory(model, n_workers=params.compute.n_workers or 1)
    check_name(args.name or args.model, "--name" if args.name else "--model")
    ensure_writable_store(args.store)


def run(args: argparse.Namespace) -> int:
    import json

    params = params_from_args(args, args.dataset)
    check_request(args, params)
    from factorflow.flows.retrain import retrain_flow
    from factorflow.cli._prefect_api import prefect_api

    quiet_user_error_tracebacks()
    with prefect_api():
        summary = retrain_flow(args.source, args.store, args.model, args.name, params)
    summary["rejects"] = rejects_note(args.store, summary["dataset"], summary["snapshot"])
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print_summary(summary, args.top_n)
    return 0
