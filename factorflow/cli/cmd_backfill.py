"""``factorflow backfill SOURCE --start DATE --end DATE --every 365d``: a model retrained at past cutoffs.

Runs the Prefect flow ``backfill_flow`` (:mod:`factorflow.flows.backfill`): for each cutoff
``start, start + every, …`` before ``end`` it trains on the ratings before the cutoff and
evaluates on the window ``[cutoff, cutoff + every)``, then prints one table (cutoff, train and
test sizes, RMSE, MAE, NDCG@10, ...) and where the table and its plot are stored. The model
options are ``retrain``'s (``--model KIND`` and its hyper-parameters), and so are the ingest and
compute options. A re-run of the same backfill reuses the cutoffs that finished. Exit code: 0
when every cutoff finished or was skipped (an empty window); else, after the table, 3 when the
only failures are publish-gate rejections (``--publish``), 2 otherwise (also when no cutoff
finished: the flow run fails).
"""

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

#: How the flow's parameters are spelled on the command line (for the checks before the flow).
OPTION_NAMES = {"start": "--start", "end": "--end", "every": "--every"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    from factorflow.cli.cmd_retrain import add_compute_args, add_model_args

    p = sub.add_parser("backfill", help="retrain a model at a series of past cutoffs and evaluate each on the "
                                        "window after it (Prefect flow)",
                       description="For each cutoff START, START+EVERY, ... before END: train on the ratings before "
                                   "the cutoff, evaluate on the ratings in [cutoff, cutoff+EVERY). Prints one table "
                                   "and stores it under STORE/backfills/ID/ (JSON, Parquet, a PNG plot of the metrics "
                                   "over time); also a Prefect table artifact 'backfill'. Finished cutoffs are reused "
                                   "by a re-run. Nothing becomes CURRENT.")
    p.add_argument("source", help="ratings file with timestamps: local path or fsspec URL")
    add_store_arg(p)
    p.add_argument("--dataset", help="dataset name in the store (default: the source file's stem)")
    p.add_argument("--start", required=True, metavar="DATE",
                   help="first cutoff: an ISO date or datetime in UTC (2015-01-01, 2015-01-01T12:00:00Z)")
    p.add_argument("--end", required=True, metavar="DATE", help="cutoffs are before this date (ISO, UTC)")
    p.add_argument("--every", default="30d", metavar="DURATION",
                   help="time between cutoffs, and the length of each test window: N followed by s, m, h, d, w "
                        "(fixed lengths) or mo, y (calendar months, years), e.g. 30d, 12h, 1w, 3mo, 1y "
                        "(default 30d; at most 100 cutoffs)")
    p.add_argument("--publish", action="store_true",
                   help="publish each cutoff's model as a historical version of --name (model.json status "
                        "'historical' and its cutoff); CURRENT never changes")
    p.add_argument("--name", help="with --publish: the model name the versions go under (default: the model kind)")
    add_model_args(p)
    add_ingest_args(p)
    add_compute_args(p)
    p.add_argument("--top-n", type=int, default=10, help="N of the batch recommendations published with --publish "
                                                          "(the table's NDCG is @10)")
    p.add_argument("--titles", help="with --publish: a movies.csv (movieId,title,...) whose titles are published")
    p.add_argument("--json", action="store_true", help="print the flow's summary as JSON")
    p.set_defaults(func=run)


def params_from_args(args: argparse.Namespace) -> Any:
    """The ``RetrainParams`` of a backfill: ingest, compute, top-N and titles (no split options)."""
    from pydantic import ValidationError

    from factorflow.config import ComputeOptions, RetrainParams
    from factorflow.errors import ParameterError

    try:
        compute = ComputeOptions(dask_address=args.dask_address, n_workers=args.workers, n_blocks=args.blocks,
                                 device=args.device)
        return RetrainParams(ingest=ingest_options(args, args.dataset), compute=compute, top_n=args.top_n,
                             item_titles=args.titles)
    except ValidationError as exc:
        raise ParameterError(one_line(exc, {"n_workers": "--workers", "n_blocks": "--blocks",
                                            "item_titles": "--titles"})) from None


def check_request(args: argparse.Namespace, params: Any, config: Any) -> None:
    """What can be checked before the flow starts, each failure one line: the range and the
    duration, the source (no test file), titles, the fit's memory, the name, the store."""
    from factorflow.cli.cmd_retrain import check_sources_exist
    from factorflow.errors import ParameterError
    from factorflow.pipeline.backfill import windows_from_request
    from factorflow.pipeline.train import check_fit_memory
    from factorflow.serving.titles import read_titles
    from factorflow.storage.registry import check_name

    windows_from_request(args.start, args.end, args.every, OPTION_NAMES)
    if args.test_source:
        raise ParameterError(f"--test-source={args.test_source!r}: a backfill cuts one ratings file in time; "
                             "it takes no test file")
    check_sources_exist(args.source, args.titles)
    if args.titles:
        read_titles(args.titles, item_is_int=False)
    check_fit_memory(config, n_workers=params.compute.n_workers or 1)
    check_name(args.name or args.model, "--name" if args.name else "--model")
    ensure_writable_store(args.store)


def print_table(summary: dict[str, Any], out=sys.stdout) -> None:
    """The table, what it was measured on, where it is stored, and why any cutoff failed or was skipped."""
    from factorflow.evaluation.report import format_table
    from factorflow.pipeline.backfill import display_rows

    rows = summary["rows"]
    print(f"\nbackfill {summary['backfill_id']}: {summary['kind']} on dataset {summary['dataset']} snapshot "
          f"{summary['snapshot']}; cutoffs every {summary['every']} from {summary['start']} before {summary['end']}: "
          f"train on the ratings before each cutoff, test on the window after it"
          + (f"; {summary['reused']} cutoff(s) reused" if summary.get("reused") else "")
          + ("" if summary["published"] else "; nothing published") + "\n", file=out)
    print(format_table(display_rows(rows)), file=out)
    for r in rows:
        if r["note"]:
            print(f"{r['cutoff']} {r['status']}: {r['note']}", file=out)
    print(f"\nstored: {summary['json']}\n        {summary['parquet']}", file=out)
    if summary.get("png"):
        print(f"plot:   {summary['png']}", file=out)
    if summary.get("rejects"):
        print(f"ingest: {summary['rejects']}", file=out)


def run(args: argparse.Namespace) -> int:
    import json

    from factorflow.cli.cmd_retrain import model_config_from_args, rejects_note
    from factorflow.pipeline.backfill import exit_code

    config = model_config_from_args(args)
    params = params_from_args(args)
    check_request(args, params, config)
    from factorflow.cli._prefect_api import prefect_api
    from factorflow.flows.backfill import backfill_flow

    quiet_user_error_tracebacks()
    with prefect_api():
        summary = backfill_flow(args.source, args.store, args.start, args.end, args.every, config, params,
                                args.publish, args.name)
    summary["rejects"] = rejects_note(args.store, summary["dataset"], summary["snapshot"])
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print_table(summary)
    return exit_code(summary["rows"])
