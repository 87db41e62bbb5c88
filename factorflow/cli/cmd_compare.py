"""``factorflow compare SOURCE --models als,bpmf,...``: several models on one split, one leaderboard.

Runs the Prefect flow ``compare_flow`` (:mod:`factorflow.flows.compare`) and prints its
leaderboard (one row per model, best test RMSE first). The ingest, split and compute options
and the checks before the flow are ``retrain``'s. Each model runs with its registered
defaults; ``--set KIND.FIELD=VALUE`` overrides one hyper-parameter of one kind. Exit code: 0
when every model did what was asked; else, after the table, 3 when the only failures are
publish-gate rejections (``--publish``), 2 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from factorflow.cli._common import add_ingest_args, add_store_arg, ensure_writable_store, quiet_user_error_tracebacks

DEFAULT_MODELS = "als,bpmf,svd,pmf,bias"


def add_parser(sub: argparse._SubParsersAction) -> None:
    from factorflow.cli.cmd_retrain import add_compute_args, add_split_args

    p = sub.add_parser("compare", help="train several models on one split and print/store a leaderboard "
                                       "(Prefect flow)",
                       description="Train several models on the same split of SOURCE, concurrently, and rank them "
                                   "by held-out test RMSE. The leaderboard is printed, stored under "
                                   "STORE/leaderboards/SPLIT/ (JSON and Parquet) and shown as a Prefect table "
                                   "artifact. Nothing is published unless --publish is given.")
    p.add_argument("source", help="ratings file: local path or fsspec URL")
    add_store_arg(p)
    p.add_argument("--dataset", help="dataset name in the store (default: the source file's stem)")
    p.add_argument("--models", default=DEFAULT_MODELS, metavar="KIND,KIND,...",
                   help=f"model kinds to compare, each with its registered defaults (default: {DEFAULT_MODELS}; "
                        "'factorflow retrain --help' lists the kinds)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KIND.FIELD=VALUE[,...]",
                   help="override a hyper-parameter of one kind, e.g. --set bpmf.samples=50,bpmf.burn_in=10 "
                        "(field names as in the kind's config; repeatable); a list value takes the commas up to "
                        "the next KIND.FIELD=, e.g. --set blend.components=als,bpmf,svd")
    p.add_argument("--publish", action="store_true",
                   help="publish each model under its kind as name (the publish gate decides whether it becomes "
                        "CURRENT); without it nothing is published and no CURRENT changes")
    add_ingest_args(p)
    add_split_args(p)
    add_compute_args(p)
    p.add_argument("--top-n", type=int, default=10, help="N of the batch recommendations published with --publish "
                                                          "(the leaderboard's metrics are @10)")
    p.add_argument("--titles", help="with --publish: a movies.csv (movieId,title,...) whose titles are published")
    p.add_argument("--json", action="store_true", help="print the flow's summary as JSON")
    p.set_defaults(func=run)


def parse_models(text: str) -> list[str]:
    """``"als,bpmf"`` → ``["als", "bpmf"]``: registered kinds, each once (one-line ParameterError
    naming ``--models`` and the valid kinds)."""
    from factorflow.errors import ParameterError
    from factorflow.models.registry import kinds

    valid = kinds()
    names = [m.strip() for m in (text or "").split(",")]
    if not any(names):
        raise ParameterError(f"--models={text!r}: must name at least one kind, comma-separated, of {', '.join(valid)}")
    unknown = [m for m in names if m not in valid]
    if unknown:
        raise ParameterError(f"--models={text!r}: {', '.join(repr(m) for m in unknown)} "
                             f"{'is not a model kind' if len(unknown) == 1 else 'are not model kinds'}; "
                             f"must be comma-separated kinds of {', '.join(valid)}")
    twice = sorted({m for m in names if names.count(m) > 1})
    if twice:
        raise ParameterError(f"--models={text!r}: {', '.join(twice)} listed more than once")
    return names


def _convert(kind: str, name: str, text: str) -> Any:
    """``text`` as the type of field ``name`` of ``kind``'s config (the config validates the value)."""
    import types
    import typing

    from factorflow.errors import ParameterError
    from factorflow.models.registry import config_class

    hint = typing.get_type_hints(config_class(kind)).get(name)
    if hint is None:
        return text  # make_config names the unknown field and lists the kind's fields
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1
    base = args[0] if optional else hint
    if optional and text.strip().lower() == "none":
        return None
    if base is bool:
        low = text.strip().lower()
        if low in ("true", "yes", "1", "on"):
            return True
        if low in ("false", "no", "0", "off"):
            return False
        raise ParameterError(f"--set {kind}.{name}={text!r}: must be true or false")
    if base in (int, float):
        try:
            return base(text)
        except ValueError:
            raise ParameterError(f"--set {kind}.{name}={text!r}: must be {'an integer' if base is int else 'a number'}"
                                 ) from None
    return text


def _parts(item: str) -> list[str]:
    """``"blend.components=als,svd,blend.ridge=2"`` → ``["blend.components=als,svd", "blend.ridge=2"]``:
    a comma-separated piece without ``=`` continues the value before it (a list value)."""
    parts: list[str] = []
    for piece in item.split(","):
        if not piece.strip():
            continue
        if parts and "=" not in piece and "=" in parts[-1]:
            parts[-1] += "," + piece
        else:
            parts.append(piece)
    return parts


def parse_overrides(items: list[str], models: list[str]) -> dict[str, dict[str, Any]]:
    """``["bpmf.samples=50,bpmf.burn_in=5"]`` → ``{"bpmf": {"samples": 50, "burn_in": 5}}`` for kinds
    of ``models`` (ParameterError naming ``--set`` otherwise). Values are converted to the field's
    type here and validated by the config (:func:`configs`)."""
    from factorflow.errors import ParameterError

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        for part in _parts(item):
            key, sep, value = part.partition("=")
            kind, dot, name = key.strip().partition(".")
            name = name.strip().replace("-", "_")
            if not sep or not dot or not kind or not name or not value.strip():
                raise ParameterError(f"--set {part.strip()!r}: must be KIND.FIELD=VALUE, e.g. bpmf.samples=50")
            if kind not in models:
                raise ParameterError(f"--set {part.strip()!r}: {kind!r} is not one of --models ({', '.join(models)})")
            out.setdefault(kind, {})[name] = _convert(kind, name, value.strip())
    return out


def configs(models: list[str], overrides: dict[str, dict[str, Any]]) -> list[Any]:
    """The validated config of each kind: its registered defaults with its ``--set`` values
    (``registry.make_config``; a bad one is a ParameterError naming ``--set KIND.FIELD``)."""
    from factorflow.errors import ParameterError
    from factorflow.models.registry import make_config

    out = []
    for kind in models:
        try:
            out.append(make_config(kind, overrides.get(kind)))
        except ParameterError as exc:
            if kind not in overrides:
                raise
            raise ParameterError(f"--set {kind}.{exc}") from None
    return out


def check_request(args: argparse.Namespace, params: Any, model_configs: list[Any]) -> None:
    """``retrain``'s checks before the flow, for every model: sources, titles, the memory each
    fit needs, the names the kinds would be published under, the store's writability."""
    from factorflow.cli.cmd_retrain import check_sources_exist
    from factorflow.pipeline.train import check_fit_memory
    from factorflow.serving.titles import read_titles
    from factorflow.storage.registry import check_name

    check_sources_exist(args.source, args.test_source, args.titles)
    if args.titles:
        read_titles(args.titles, item_is_int=False)
    for config in model_configs:
        check_fit_memory(config, n_workers=params.compute.n_workers or 1)
        check_name(config.kind, "--models")
    ensure_writable_store(args.store)


def print_leaderboard(summary: dict[str, Any], out=sys.stdout) -> None:
    """The leaderboard as a table, with what it was measured on, where it is stored, and why
    any model failed."""
    from factorflow.evaluation.report import format_table
    from factorflow.pipeline.leaderboard import display_rows, failures

    rows = summary["rows"]
    print(f"\nleaderboard: dataset {summary['dataset']} snapshot {summary['snapshot']}, held-out metrics on split "
          f"'{summary['split']}' ({summary['n_test']:,} test ratings), best test RMSE first"
          + ("" if summary["published"] else "; nothing published") + "\n", file=out)
    print(format_table(display_rows(rows)), file=out)
    for r in failures(rows):
        print(f"{r['kind']} {r['status']}: {r['note']}", file=out)
    print(f"\nstored: {summary['json']}\n        {summary['parquet']}", file=out)
    if summary.get("rejects"):
        print(f"ingest: {summary['rejects']}", file=out)


def run(args: argparse.Namespace) -> int:
    import json

    from factorflow.cli.cmd_retrain import params_from_args, rejects_note
    from factorflow.pipeline.leaderboard import exit_code

    models = parse_models(args.models)
    model_configs = configs(models, parse_overrides(args.overrides, models))
    params = params_from_args(args, args.dataset)
    check_request(args, params, model_configs)
    from factorflow.cli._prefect_api import prefect_api
    from factorflow.flows.compare import compare_flow

    quiet_user_error_tracebacks()
    with prefect_api():
        summary = compare_flow(args.source, args.store, model_configs, params, args.publish)
    summary["rejects"] = rejects_note(args.store, summary["dataset"], summary["snapshot"])
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print_leaderboard(summary)
    return exit_code(summary["rows"])
