"""``factorflow ingest SOURCE``: a ratings file → a dataset snapshot in the store."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from factorflow.cli._common import add_ingest_args, add_store_arg, parse_pairs, parse_range

if TYPE_CHECKING:
    from factorflow.storage.datasets import SnapshotRef


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ingest",
        help="ingest a ratings file into a content-addressed dataset snapshot",
        description=(
            "Read a ratings file (MovieLens CSV, ml-100k u.data, ml-1m/10m ratings.dat or any delimited "
            "file; gzip/zip accepted; local path or fsspec URL), validate it, and write "
            "STORE/datasets/NAME/SNAPSHOT. The same bytes again report the existing snapshot."
        ),
    )
    p.add_argument("source", metavar="SOURCE", help="ratings file: local path or fsspec URL")
    add_store_arg(p)
    p.add_argument("--name", help="dataset name (default: the file's stem, e.g. 'ratings')")
    add_ingest_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import warnings

    from factorflow.data.ingest import describe_rejects, ingest_source
    from factorflow.errors import DataWarning
    from factorflow.progress import tqdm_progress

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        try:
            with tqdm_progress("ingest", unit="B") as bar:
                ref = ingest_source(
                    args.source,
                    args.store,
                    args.name,
                    fmt=args.fmt,
                    columns=parse_pairs(args.columns, "--columns"),
                    delimiter=args.delimiter,
                    rating_range=parse_range(args.rating_range, "--rating-range"),
                    max_reject_fraction=args.max_reject_fraction,
                    test_source=args.test_source,
                    progress=bar,
                )
        finally:  # warnings raised before an error are shown too
            _show(caught, DataWarning)
    print(summary(ref))
    note = describe_rejects(ref)
    if note:
        print(note)
    return 0


def _show(caught: list, category: type) -> None:
    """Print ``category`` warnings as one ``factorflow: warning:`` line each; re-issue the others."""
    import sys
    import warnings

    for w in caught:
        if issubclass(w.category, category):
            print(f"factorflow: warning: {_one_line(str(w.message))}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def summary(ref: SnapshotRef) -> str:
    """``NAME/SNAPSHOT (new snapshot): counts; ids; ratings and scale -> PATH``."""
    m = ref.manifest
    state = "existing snapshot" if ref.reused else "new snapshot"
    test = f", {m['n_test']:,} test rows" if "n_test" in m else ""
    low, high = m["rating_range"]
    how = "declared" if m.get("rating_range_declared") else "inferred"
    return (
        f"{ref.name}/{ref.snapshot} ({state}): {m['rows_kept']:,} kept, {m['rows_rejected']:,} rejected, "
        f"{m['rows_duplicate']:,} duplicates{test}; {m['n_users']:,} users, {m['n_items']:,} items; "
        f"ratings {m['rating_min']}..{m['rating_max']} (scale {low:g}..{high:g}, {how}) -> {ref.url}"
    )
