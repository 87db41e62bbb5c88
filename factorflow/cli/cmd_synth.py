"""``factorflow synth``: write a seeded synthetic MovieLens-shaped ratings CSV (+ sidecar JSON)."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="generate a synthetic MovieLens-20M-shaped ratings CSV",
        description=(
            "Write OUT.csv (userId,movieId,rating,timestamp) from a planted low-rank model with "
            "biases and Gaussian noise, and OUT.csv.json recording the seed, shape and the noise "
            "floor (the RMSE of the published ratings against the noiseless signal)."
        ),
    )
    p.add_argument("out", metavar="OUT.csv", help="output CSV path")
    p.add_argument("--users", type=int, default=138_493, help="number of users (default 138,493)")
    p.add_argument("--items", type=int, default=26_744, help="number of items (default 26,744)")
    p.add_argument(
        "--ratings", type=int, default=20_000_263, help="number of ratings (default 20,000,263)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--rank", type=int, default=10, help="rank K of the planted signal (default 10)")
    p.add_argument("--noise", type=float, default=0.5, help="noise std σ before rounding (default 0.5)")
    p.add_argument(
        "--min-user-ratings", type=int, default=20, help="ratings per user at least (default 20)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from factorflow.data.synth import write_synthetic_csv
    from factorflow.progress import tqdm_progress

    with tqdm_progress("synth", unit="rating") as progress:
        meta = write_synthetic_csv(
            args.out,
            args.users,
            args.items,
            args.ratings,
            args.seed,
            rank=args.rank,
            noise=args.noise,
            min_user_ratings=args.min_user_ratings,
            progress=progress,
        )
    print(
        f"wrote {meta['n_ratings_written']:,} ratings ({meta['n_users']:,} users × "
        f"{meta['n_items']:,} items) to {args.out}; noise floor RMSE "
        f"{meta['noise_floor_rmse']:.4f} (sidecar {args.out}.json)"
    )
    print(json.dumps({k: meta[k] for k in ("seed", "noise_floor_rmse", "n_ratings_written")}))
    return 0
