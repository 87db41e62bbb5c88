"""``factorflow recommend``: top-N unseen items for a user, from the published tables only.

Reads ``user_factors``/``item_factors``/``model.json`` and one user's rows of ``seen.parquet``.
An unknown user (or one without train ratings) gets the popularity fallback with a one-line
note on stderr; ``--ratings`` folds a user in (known or new) by the model's own fold-in and
excludes the rated items. The work is done by :mod:`factorflow.serving.published`; this
module parses the options and prints.
"""

from __future__ import annotations

import argparse
import csv
import math

from factorflow.cli._published import add_published_model_args
from factorflow.errors import InputError, ParameterError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "recommend",
        help="top-N unseen items for a user from a published model",
        description="Top-N unseen items for a user, read from the published factor tables. "
                    "Unknown users get popular items (flagged as fallback); --ratings folds a "
                    "user in from a few ratings without retraining.",
    )
    p.add_argument("--user", metavar="RAW_ID", help="raw user id as in the ratings source")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ratings", metavar="ITEM=R,...",
                   help="fold in these ratings (e.g. 318=5,296=4.5) and recommend from them")
    g.add_argument("--ratings-file", metavar="F.csv",
                   help="fold in ratings from a CSV with columns item,rating (header optional)")
    p.add_argument("--uncertainty", action="store_true",
                   help="add each item's predictive std for this user (models with a posterior, e.g. bpmf)")
    add_published_model_args(p, 'print [{"item": id, "score": x}, ...]')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from factorflow.cli._published import item_rows, print_notes, print_rows
    from factorflow.serving import published as serve
    from factorflow.storage.registry import load_model

    serve.check_n(args.n, "-n")
    given = (_parse_ratings(args.ratings) if args.ratings
             else _read_ratings_file(args.ratings_file) if args.ratings_file else [])
    if args.user is None and not given:
        raise ParameterError("--user: give a user id, or --ratings/--ratings-file to fold one in")
    model = load_model(args.store, args.model, args.model_version)
    if given:
        served = serve.recommend_from_ratings(
            model, given, args.n, user=args.user, min_ratings=args.min_ratings, where="--ratings",
            scale_where="--ratings" if args.ratings else f"--ratings-file {args.ratings_file}")
    else:
        served = serve.recommend_for_user(model, args.user, args.n, min_ratings=args.min_ratings)
    rows = item_rows(model, served.ranked, serve.title_lookup(model, args.titles))
    if args.uncertainty:
        std = serve.uncertainty(model, served)
        if std is None:
            served.notes.append("note: a popularity fallback has no predictive std")
        else:
            for row, s in zip(rows, std, strict=True):
                row["std"] = round(float(s), 6)
    print_notes(served.notes)
    print_rows(rows, args.json)
    return 0


def _parse_ratings(text: str) -> list[tuple[str, float]]:
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        item, eq, value = part.rpartition("=")
        if not eq or not item:
            raise ParameterError(f"--ratings: {part!r} is not ITEM=RATING (e.g. 318=5)")
        out.append((item.strip(), _rating(value, f"--ratings: {part!r}")))
    return _no_dupes(out, "--ratings")


def _read_ratings_file(path: str) -> list[tuple[str, float]]:
    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--ratings-file {path}: cannot open ({exc.strerror})") from exc
    out = []
    with f:
        rows = list(csv.reader(f))
    item_col, rating_col, first = 0, 1, 1
    if rows and rows[0] and not _is_number(rows[0][-1]):  # a header row
        head = [h.strip() for h in rows[0]]
        item_col = next((head.index(c) for c in ("item", "item_id", "itemId", "movieId")
                         if c in head), 0)
        rating_col = head.index("rating") if "rating" in head else 1
        first = 2
    else:
        rows.insert(0, [])
    for line, row in enumerate(rows[1:], start=first):
        if not row or not "".join(row).strip():
            continue
        if len(row) <= max(item_col, rating_col):
            raise InputError(f"--ratings-file {path}:{line}: expected columns item,rating; got {row!r}")
        out.append((row[item_col].strip(),
                    _rating(row[rating_col], f"--ratings-file {path}:{line}")))
    if not out:
        raise InputError(f"--ratings-file {path}: no ratings found (expected lines item,rating)")
    return _no_dupes(out, f"--ratings-file {path}")


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _rating(value: str, where: str) -> float:
    try:
        r = float(value)
    except ValueError as exc:
        raise ParameterError(f"{where}: rating {value.strip()!r} is not a number") from exc
    if not math.isfinite(r):
        raise ParameterError(f"{where}: rating {value.strip()!r} must be finite")
    return r


def _no_dupes(pairs: list[tuple[str, float]], where: str) -> list[tuple[str, float]]:
    seen: set[str] = set()
    dup = sorted({i for i, _ in pairs if i in seen or seen.add(i)})
    if dup:
        raise ParameterError(f"{where}: items rated more than once: {', '.join(dup)}")
    return pairs
