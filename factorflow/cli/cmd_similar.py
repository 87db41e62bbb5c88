"""``factorflow similar``: items whose factor vectors have the highest cosine with a given item."""

from __future__ import annotations

import argparse

from factorflow.errors import NotFoundError, ParameterError
from factorflow.cli.cmd_recommend import add_published_model_args


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
    from factorflow.serving import topn as rec
    from factorflow.storage.registry import load_model
    from factorflow.cli.cmd_recommend import candidate_items, item_rows, print_rows, title_lookup

    if args.n < 1:
        raise ParameterError(f"-n={args.n}: must be >= 1")
    model = load_model(args.store, args.model, args.model_version)
    j = model.item_index(model.parse_item_id(args.item))
    if j is None:
        raise NotFoundError(f"--item {args.item}: not in model {model.name} (version {model.version})")
    try:
        ranked = rec.similar_items(model.factors, j, args.n,
                                   allowed=candidate_items(model, args.min_ratings))
    except ParameterError as exc:
        raise ParameterError(f"--item {args.item}: has a zero factor vector in model {model.name} "
                             f"(no train ratings), so it has no cosine neighbours") from exc
    print_rows(item_rows(model, ranked, title_lookup(model, args.titles)), args.json,
               score_label="cosine")
    return 0
