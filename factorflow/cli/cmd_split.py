"""``factorflow split``: make (or reuse) a named, seeded train/test split of a snapshot."""

from __future__ import annotations

import argparse

from factorflow.cli._common import add_store_arg


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "split",
        help="make a named train/test split of a dataset snapshot",
        description=(
            "Write STORE/datasets/NAME/SNAPSHOT/splits/SPLIT/ (train.parquet, test.parquet with "
            "cold_user/cold_item flags, manifest.json). The same request reuses the same SPLIT."
        ),
    )
    add_store_arg(p)
    p.add_argument("--name", required=True, help="dataset name in the store")
    p.add_argument("--snapshot", help="snapshot id (default: the latest)")
    p.add_argument(
        "--kind", required=True, choices=["random", "temporal", "user-holdout", "given"],
        help="random: a fraction of ratings; temporal: at/after --cutoff or the last fraction by "
        "time (--per-user: each user's); user-holdout: -k ratings per user; given: the "
        "snapshot's --test-source file",
    )  # fmt: skip
    p.add_argument("--test-fraction", type=float, help="fraction of ratings to test (default 0.2)")
    p.add_argument("--seed", type=int, default=42, help="seed for random choices (default 42)")
    p.add_argument("--cutoff", type=int, help="temporal: test = ratings with timestamp ≥ CUTOFF")
    p.add_argument("--per-user", action="store_true", help="temporal: each user's last fraction")
    p.add_argument("-k", type=int, default=1, help="user-holdout: ratings per user to test (default 1)")
    p.add_argument("--by", choices=["time", "random"], default="time",
                   help="user-holdout: hold out the latest or random ratings (default time)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from factorflow.data.splits import make_split
    from factorflow.errors import ParameterError
    from factorflow.progress import tqdm_progress
    from factorflow.storage.datasets import resolve_snapshot

    if args.cutoff is not None and args.test_fraction is not None:
        raise ParameterError(
            f"--cutoff={args.cutoff} and --test-fraction={args.test_fraction}: give one of them"
        )
    snapshot = resolve_snapshot(args.store, args.name, args.snapshot)
    with tqdm_progress("split", unit="step") as progress:
        ref = make_split(
            snapshot, args.kind,
            test_fraction=0.2 if args.test_fraction is None else args.test_fraction,
            seed=args.seed, cutoff=args.cutoff, per_user=args.per_user, k=args.k, by=args.by,
            progress=progress,
        )  # fmt: skip
    m = ref.manifest
    state = "existing" if ref.reused else "new"
    print(
        f"split {ref.split} ({state}) of {m['dataset']}/{m['snapshot']}: {m['n_train']:,} train, "
        f"{m['n_test']:,} test ({m['n_test_cold_user']:,} cold-user, {m['n_test_cold_item']:,} "
        f"cold-item, {m['n_test_cold']:,} cold) at {ref.path}"
    )
    return 0
