"""``factorflow partition``: cut a split's train part into user/item row blocks balanced by nnz."""

from __future__ import annotations

import argparse

from factorflow.cli._common import add_store_arg


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "partition",
        help="build user/item row blocks (balanced by nnz) of a split's train part",
        description=(
            "Write SPLIT/partitions/pP/: partitions.json and user_XXX.npz / item_XXX.npz, the "
            "contiguous row blocks of the train CSR by user and by item that the Dask ALS "
            "sweeps map over. An existing set is reused."
        ),
    )
    add_store_arg(p)
    p.add_argument("--name", required=True, help="dataset name in the store")
    p.add_argument("--snapshot", help="snapshot id (default: the latest)")
    p.add_argument("--split", required=True, help="split id, as printed by `factorflow split`")
    p.add_argument("-p", "--blocks", type=int, dest="blocks",
                   help="number of blocks P (default: max(4, min(64, nnz // 200000)))")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from factorflow.data.partitions import build_partitions
    from factorflow.progress import tqdm_progress
    from factorflow.storage.datasets import resolve_snapshot
    from factorflow.storage.splits import resolve_split

    snapshot = resolve_snapshot(args.store, args.name, args.snapshot)
    split = resolve_split(snapshot, args.split)
    with tqdm_progress("partition", unit="block") as progress:
        ref = build_partitions(split, args.blocks, progress=progress)
    m = ref.manifest
    state = "existing" if ref.reused else "new"
    for side in ("user", "item"):
        nnz = [b["nnz"] for b in m[side]]
        print(
            f"{side}: {len(nnz)} blocks, nnz min {min(nnz):,} / mean {sum(nnz) / len(nnz):,.0f} / "
            f"max {max(nnz):,}"
        )
    print(f"partitions p{m['n_blocks']} ({state}) of split {split.split}: {m['nnz']:,} ratings, "
          f"global mean {m['global_mean']:.4f} at {ref.path}")  # fmt: skip
    return 0
