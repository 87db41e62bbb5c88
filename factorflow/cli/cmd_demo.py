"""``factorflow demo``: a synthetic MovieLens-shaped dataset through the whole retrain flow.

Small enough for a couple of minutes on 2 cores; prints the metrics table (ALS beside the
global-mean and bias baselines, held-out RMSE on the named split) and a sample recommendation.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

from factorflow.cli._common import (
    add_store_arg,
    ensure_writable_store,
    quiet_user_error_tracebacks,
)

DEMO = {"users": 3000, "items": 2000, "ratings": 300_000, "seed": 7}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="generate a synthetic dataset and run the retrain flow on it",
                       description=__doc__.splitlines()[0])
    add_store_arg(p)
    p.add_argument("--users", type=int, default=DEMO["users"])
    p.add_argument("--items", type=int, default=DEMO["items"])
    p.add_argument("--ratings", type=int, default=DEMO["ratings"])
    p.add_argument("--seed", type=int, default=DEMO["seed"])
    p.add_argument("--workers", type=int,
                    help="a LocalCluster of N single-threaded processes (default: 1 process, a thread per core)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from factorflow.config import ComputeOptions, IngestOptions, RetrainParams
    from factorflow.flows.retrain import retrain_flow

    quiet_user_error_tracebacks()
    from factorflow.cli._prefect_api import prefect_api
    from factorflow.cli.cmd_retrain import print_summary
    from factorflow.data.synth import write_synthetic_csv
    from factorflow.storage.fs import join, open_store, url_of
    from factorflow.storage.layout import sources_dir

    ensure_writable_store(args.store)
    fs, root = open_store(args.store)
    name = f"demo-{args.users}x{args.items}-{args.ratings}-s{args.seed}.csv"
    source = join(sources_dir(root), name)
    if not fs.exists(source):
        print(f"generating {args.ratings:,} synthetic ratings ({args.users:,} users × {args.items:,} items) → {source}")
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, name)
            write_synthetic_csv(local, args.users, args.items, args.ratings, seed=args.seed)
            fs.makedirs(sources_dir(root), exist_ok=True)
            fs.put_file(local + ".json", source + ".json")
            fs.put_file(local, source + ".part")
            fs.mv(source + ".part", source)  # last: its presence means the pair is complete
    truth = fs.cat(source + ".json").decode()
    source = url_of(fs, source)
    params = RetrainParams(ingest=IngestOptions(dataset="demo"), compute=ComputeOptions(n_workers=args.workers))
    with prefect_api():
        summary = retrain_flow(source, args.store, "als", "demo-als", params)
    print_summary(summary, params.top_n)
    floor = json.loads(truth).get("noise_floor_rmse")
    if floor is not None:
        print(f"planted noise floor (best achievable RMSE): {floor:.4f}")
    from factorflow.cli import main

    print(f"\nsample: factorflow recommend --model demo-als --user 1 -n 5 --store {args.store}")
    return main(["recommend", "--model", "demo-als", "--user", "1", "-n", "5", "--store", args.store])
