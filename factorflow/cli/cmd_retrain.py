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

MODEL_DEST = "model_option__"  # argparse dest prefix of the options built from the model configs


def add_retrain_args(p: argparse.ArgumentParser) -> None:
    """Model, split and compute options (shared with ``demo``)."""
    p.add_argument("--name", help="published model name (default: the model kind)")
    add_model_args(p)
    add_split_args(p)
    add_compute_args(p)
    p.add_argument("--top-n", type=int, default=10, help="N for top-N metrics and batch recommendations")
    p.add_argument("--titles", help="a movies.csv (movieId,title,...) whose titles are published with the items")
    p.add_argument("--json", action="store_true", help="print the flow's summary as JSON")


def add_split_args(p: argparse.ArgumentParser) -> None:
    """The split options (``params_from_args`` reads them; shared with ``compare``)."""
    s = p.add_argument_group("split")
    s.add_argument("--split", default="random", choices=["random", "temporal", "user-holdout", "given"])
    s.add_argument("--test-fraction", type=float, default=0.2)
    s.add_argument("--seed", type=int, default=42, help="split seed (default 42)")
    s.add_argument("--cutoff", type=int, help="temporal: test = ratings at or after this timestamp")
    s.add_argument("--per-user", action="store_true", help="temporal: each user's last fraction by time")
    s.add_argument("-k", type=int, default=1, help="user-holdout: ratings held out per user")
    s.add_argument("--by", choices=["time", "random"], default="time", help="user-holdout: which ratings")


def add_compute_args(p: argparse.ArgumentParser) -> None:
    """The compute options (``params_from_args`` reads them; shared with ``compare``)."""
    c = p.add_argument_group("compute")
    c.add_argument("--dask-address", help="tcp://HOST:PORT of a running Dask scheduler "
                                          "(default: $FACTORFLOW_DASK_ADDRESS, else a LocalCluster)")
    c.add_argument("--workers", type=int,
                    help="a LocalCluster of N single-threaded processes (default: 1 process, a thread per core)")
    c.add_argument("--blocks", type=int, help="partition blocks P per side (default: from the rating count)")
    c.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                   help="gpu: train a Keras model on a worker of the Dask cluster (--dask-address) started with "
                        "'dask worker --resources GPU=1'; without one it trains on this process (default cpu)")


def add_publish_args(p: argparse.ArgumentParser) -> None:
    """Champion/challenger, retention and warm start (``params_from_args`` reads them)."""
    g = p.add_argument_group("publishing (champion/challenger, retention, warm start)")
    g.add_argument("--rmse-tolerance", type=float, default=0.005, metavar="X",
                   help="CURRENT is replaced only if the new test RMSE is at most CURRENT's + X on the same test "
                        "data (default 0.005)")
    g.add_argument("--ndcg-tolerance", type=float, default=0.02, metavar="X",
                   help="... and the new NDCG@10 at least CURRENT's - X (default 0.02)")
    g.add_argument("--no-challenge", action="store_true",
                   help="replace CURRENT without comparing with it (the publish gate still applies)")
    g.add_argument("--keep-versions", type=int, metavar="K",
                   help="after publishing, delete all but the newest K versions (never CURRENT or its "
                        "predecessor; default: keep all)")
    g.add_argument("--warm-start", action="store_true",
                   help="start ALS from CURRENT's factors, matched by raw user/item id (new ones start random)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """``--model`` and one option per hyper-parameter of every registered model's config.

    The options come from the config dataclasses (field type, ``metadata["help"]``, optional
    ``metadata["option"]``), so a new model's options appear here without editing the CLI.
    An option shared by several kinds (``--rank``) is listed once, naming them.
    """
    import typing

    from factorflow.models import registry
    from factorflow.models.base import config_options, option_name

    kinds = registry.kinds()
    summary = "; ".join(f"{k}: {registry.spec(k).summary}" for k in kinds)
    p.add_argument("--model", default=registry.DEFAULT_KIND, metavar="KIND",
                   help=f"model kind, one of {', '.join(kinds)} (default: {registry.DEFAULT_KIND}) — {summary}")
    group = p.add_argument_group("model hyper-parameters (default: the model's tuned defaults; "
                                 "an option the chosen --model does not take is an error)")
    seen: dict[str, tuple[argparse.Action, dict[str, list[str]]]] = {}  # option → (action, help → kinds)
    for kind in kinds:
        cls = registry.config_class(kind)
        hints = typing.get_type_hints(cls)
        for f in config_options(cls):
            option = option_name(f)
            kw = _option_type(hints[f.name])
            if option in seen:
                action, helps = seen[option]
                helps.setdefault(f.metadata.get("help", ""), []).append(kind)
                action.help = "; ".join(f"{text} [{', '.join(users)}]" for text, users in helps.items())
                if (action.type, action.choices) != (kw.get("type"), kw.get("choices")):
                    # kinds type it differently (--hidden: I-AutoRec's width, keras-deep's "128,64"):
                    # take the text; model_config_from_args converts it for the chosen kind.
                    action.type, action.choices, action.metavar = str, None, "VALUE"
                continue
            action = group.add_argument(option, dest=MODEL_DEST + f.name, default=argparse.SUPPRESS,
                                        help=f"{f.metadata.get('help', '')} [{kind}]", **kw)
            seen[option] = (action, {f.metadata.get("help", ""): [kind]})


def _option_type(hint: object) -> dict[str, object]:
    """argparse keywords for a config field's type: bool → --x/--no-x, ``X | None`` → X or 'none'."""
    import types
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = (typing.get_origin(hint) in (typing.Union, types.UnionType)) and len(args) == 1
    base = args[0] if optional else hint
    if base is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(base) is typing.Literal:
        return {"choices": list(typing.get_args(base))}
    conv = base if base in (int, float, str) else str
    if not optional:
        return {"type": conv, "metavar": conv.__name__.upper()}

    def parse(text: str) -> object:
        return None if text.strip().lower() == "none" else conv(text)

    parse.__name__ = conv.__name__  # argparse's "invalid float value" message
    return {"type": parse, "metavar": f"{conv.__name__.upper()}|none"}


def model_config_from_args(args: argparse.Namespace) -> object:
    """The chosen model's validated config from ``--model`` and the hyper-parameter options given
    (one-line ParameterError naming the option for a bad value or an option the kind does not take)."""
    from factorflow.models import registry

    given = {k[len(MODEL_DEST):]: v for k, v in vars(args).items() if k.startswith(MODEL_DEST)}
    registry.spec(args.model)  # an unknown kind first: "--model='nope': must be one of ..."
    return registry.make_config(args.model, _typed(args.model, given), as_options=True)


def _typed(kind: str, given: dict[str, object]) -> dict[str, object]:
    """Text values of options that several kinds type differently, converted to ``kind``'s field type
    (ParameterError naming the option when the text is not one)."""
    import typing

    from factorflow.errors import ParameterError
    from factorflow.models import registry
    from factorflow.models.base import config_options, option_name

    fields = {f.name: f for f in config_options(registry.config_class(kind))}
    hints = typing.get_type_hints(registry.config_class(kind))
    out = dict(given)
    for name, value in given.items():
        if not isinstance(value, str) or name not in fields:
            continue
        kw = _option_type(hints[name])
        conv = kw.get("type")
        if "choices" in kw and value not in kw["choices"]:
            raise ParameterError(f"{option_name(fields[name])}={value!r}: model {kind} takes one of "
                                 f"{', '.join(map(str, kw['choices']))}")
        if conv is not None and conv is not str:
            try:
                out[name] = conv(value)
            except ValueError:
                raise ParameterError(f"{option_name(fields[name])}={value!r}: model {kind} takes "
                                     f"{getattr(conv, '__name__', 'a value')} here") from None
    return out


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrain", help="ingest → split → partition → train → evaluate → publish (Prefect flow)",
                       description="Retrain a model on SOURCE and publish its factor tables.")
    p.add_argument("source", help="ratings file: local path or fsspec URL")
    add_store_arg(p)
    p.add_argument("--dataset", help="dataset name in the store (default: the source file's stem)")
    add_ingest_args(p)
    add_retrain_args(p)
    add_publish_args(p)
    p.set_defaults(func=run)


def params_from_args(args: argparse.Namespace, dataset: str | None) -> Any:
    from pydantic import ValidationError

    from factorflow.config import ComputeOptions, PublishOptions, RetrainParams, SplitOptions
    from factorflow.errors import ParameterError

    def build(cls: Any, options: dict[str, str], **values: Any) -> Any:
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ParameterError(one_line(exc, options)) from None

    split = build(SplitOptions, {"kind": "--split", "k": "-k"}, kind=args.split, test_fraction=args.test_fraction,
                  seed=args.seed, cutoff=args.cutoff, per_user=args.per_user, k=args.k, by=args.by)
    compute = build(ComputeOptions, {"n_workers": "--workers", "n_blocks": "--blocks"},
                    dask_address=args.dask_address, n_workers=args.workers, n_blocks=args.blocks,
                    device=getattr(args, "device", "cpu"))
    publish = build(PublishOptions, {"challenge": "--no-challenge", "keep_versions": "--keep-versions"},
                    challenge=not getattr(args, "no_challenge", False),
                    rmse_tolerance=getattr(args, "rmse_tolerance", 0.005),
                    ndcg_tolerance=getattr(args, "ndcg_tolerance", 0.02),
                    keep_versions=getattr(args, "keep_versions", None))
    return build(RetrainParams, {"item_titles": "--titles"}, ingest=ingest_options(args, dataset), split=split,
                 compute=compute, top_n=args.top_n, item_titles=args.titles, publish=publish,
                 warm_start=getattr(args, "warm_start", False))


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


def check_request(args: argparse.Namespace, params: Any, config: Any) -> None:
    """Everything that can be checked before the flow starts, each failure one line: sources,
    the titles file, the memory the model's fit needs, the published name, the store's
    writability. (The model config was validated when it was built.)"""
    from factorflow.pipeline.train import check_fit_memory
    from factorflow.serving.titles import read_titles
    from factorflow.storage.registry import check_name

    check_sources_exist(args.source, args.test_source, args.titles)
    if args.titles:
        read_titles(args.titles, item_is_int=False)
    check_fit_memory(config, n_workers=params.compute.n_workers or 1)
    check_name(args.name or args.model, "--name" if args.name else "--model")
    ensure_writable_store(args.store)


def run(args: argparse.Namespace) -> int:
    import json

    config = model_config_from_args(args)
    params = params_from_args(args, args.dataset)
    check_request(args, params, config)
    from factorflow.cli._prefect_api import prefect_api
    from factorflow.flows.retrain import retrain_flow

    quiet_user_error_tracebacks()
    with prefect_api():
        summary = retrain_flow(args.source, args.store, config, args.name, params)
    summary["rejects"] = rejects_note(args.store, summary["dataset"], summary["snapshot"])
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print_summary(summary, args.top_n)
    return 0
