"""``factorflow similar``: items whose factor vectors have the highest cosine with a given item."""

from __future__ import annotations

import argparse

from factorflow.cli._published import add_published_model_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "similar",
        help="items most similar to an item (cosine on item factors)",
        description="Items most similar to ITEM by cosine between published item factor vectors.",
    )
    p.add_argument("--item", required=True, metavar="RAW_ID", help="raw item id as in the source")
    add_published_model_args(p, 'print [{"item": id, "score": cosine}, ...]')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from factorflow.cli._published import item_rows, print_rows
    from factorflow.serving import published as serve
    from factorflow.storage.registry import load_model

    serve.check_n(args.n, "-n")
    model = load_model(args.store, args.model, args.model_version)
    ranked = serve.similar(model, args.item, args.n, min_ratings=args.min_ratings, param="--item")
    print_rows(item_rows(model, ranked, serve.title_lookup(model, args.titles)), args.json,
               score_label="cosine")
    return 0
