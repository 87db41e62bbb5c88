"""``factorflow recommend``: top-N unseen items for a user, from the published tables only.

Reads ``user_factors``/``item_factors``/``model.json`` and one user's rows of ``seen.parquet``.
An unknown user (or one without train ratings) gets the popularity fallback with a one-line
note on stderr; ``--ratings`` folds a user in (known or new) and excludes the rated items.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from typing import Any

from factorflow.errors import InputError, NotFoundError, ParameterError
from factorflow.serving.candidates import MIN_RATINGS
from factorflow.serving.titles import read_titles
from factorflow.cli._common import add_store_arg


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
    add_published_model_args(p, 'print [{"item": id, "score": x}, ...]')
    p.set_defaults(func=run)


def add_published_model_args(p: argparse.ArgumentParser, json_help: str) -> None:
    """Options of every command that reads a published model (recommend, similar)."""
    p.add_argument("--model", required=True, metavar="NAME", help="published model name")
    p.add_argument("-n", type=int, default=10, help="number of items (default 10)")
    p.add_argument("--json", action="store_true", help=json_help)
    p.add_argument("--version", dest="model_version", metavar="V",
                   help="model version (default: the one CURRENT names)")
    p.add_argument("--titles", metavar="movies.csv",
                   help="MovieLens movies.csv (movieId,title,...) for titles not stored with the model")
    p.add_argument("--min-ratings", type=int, default=MIN_RATINGS, metavar="K",
                   help=f"only return items with at least K train ratings (default {MIN_RATINGS}; 0 = any)")
    add_store_arg(p)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from factorflow.serving import topn as rec
    from factorflow.storage.registry import load_model

    if args.n < 1:
        raise ParameterError(f"-n={args.n}: must be >= 1")
    given = (_parse_ratings(args.ratings) if args.ratings
             else _read_ratings_file(args.ratings_file) if args.ratings_file else [])
    if args.user is None and not given:
        raise ParameterError("--user: give a user id, or --ratings/--ratings-file to fold one in")
    model = load_model(args.store, args.model, args.model_version)
    f = model.factors
    who = f"model {model.name} (version {model.version})"
    allowed = candidate_items(model, args.min_ratings)

    user_idx = None
    if args.user is not None:
        user_idx = model.user_index(model.parse_user_id(args.user))
    seen = model.seen_items(user_idx) if user_idx is not None else np.zeros(0, np.int64)
    if user_idx is not None and not model.fs.exists(f"{model.path}/seen.parquet"):
        print(f"note: {who} was published without seen.parquet; train items are not excluded",
              file=sys.stderr)

    if given:
        check_rating_scale(given, model.model_json.get("rating_range"),
                           "--ratings" if args.ratings else f"--ratings-file {args.ratings_file}", who)
        raw_items = [model.parse_item_id(i) for i, _ in given]
        idx = np.full(len(given), -1, dtype=np.int64)
        ok = [k for k, r in enumerate(raw_items) if r is not None]
        if ok:
            idx[ok] = model.item_indices([raw_items[k] for k in ok])
        if (idx < 0).any():
            bad = [given[k][0] for k in np.flatnonzero(idx < 0)]
            raise NotFoundError(f"--ratings: items not in {who}: {', '.join(bad)}")
        params = model.model_json.get("params") or {}
        w, b = rec.fold_in(f, idx, np.array([r for _, r in given]),
                           float(params.get("reg", 0.1)), bool(params.get("weighted", False)),
                           params.get("reg_bias"))
        exclude = np.union1d(idx, seen)
        ranked = rec.top_n_for_vector(f, w, b, args.n, exclude, allowed=allowed)
    elif user_idx is None:
        print(f"user {args.user} is not in {who}: showing popular items instead (fallback)",
              file=sys.stderr)
        ranked = rec.popular_fallback(f, model.item_n_ratings, args.n,
                                      min_ratings=max(10, args.min_ratings))
    elif model.user_n_ratings is not None and model.user_n_ratings[user_idx] == 0:
        print(f"user {args.user} has no training ratings in {who}: showing popular items "
              "instead (fallback)", file=sys.stderr)
        ranked = rec.popular_fallback(f, model.item_n_ratings, args.n,
                                      min_ratings=max(10, args.min_ratings), exclude=seen)
    else:
        ranked = rec.top_n(f, user_idx, args.n, seen, allowed=allowed)

    titles = title_lookup(model, args.titles)
    print_rows(item_rows(model, ranked, titles), args.json)
    return 0


def check_rating_scale(given: list[tuple[str, float]], scale: list[float] | None, where: str, who: str) -> None:
    """ParameterError when a folded-in rating lies outside the scale the model was trained on."""
    if not scale:
        return
    lo, hi = float(scale[0]), float(scale[1])
    bad = [f"{item}={r:g}" for item, r in given if not lo <= r <= hi]
    if bad:
        raise ParameterError(f"{where}: ratings outside the scale {lo:g}..{hi:g} of {who}: {', '.join(bad)}")


def candidate_items(model: Any, min_ratings: int) -> Any:
    """Boolean mask of items with ≥ ``min_ratings`` (and ≥ 1) train ratings; None if unrecorded."""
    from factorflow.serving.candidates import candidate_mask

    if model.item_n_ratings is None:
        candidate_mask([], min_ratings)  # still validate the option
        return None
    return candidate_mask(model.item_n_ratings, min_ratings)


def item_rows(model: Any, ranked: Any, titles: Any) -> list[dict[str, Any]]:
    """JSON-ready rows: raw item id (int stays int), plain-float score, title, fallback flag."""
    rows = []
    for j, s in zip(ranked.item_idx, ranked.scores, strict=True):
        row: dict[str, Any] = {"item": model.item_ids[int(j)].as_py(), "score": round(float(s), 6)}
        t = titles(int(j))
        if t is not None:
            row["title"] = t
        if ranked.fallback:
            row["fallback"] = True
        rows.append(row)
    return rows


def title_lookup(model: Any, titles_path: str | None) -> Any:
    """item_idx → title: stored titles first, else ``--titles``, else None."""
    if model.item_titles is not None:
        return model.title
    if titles_path:
        table = read_titles(titles_path, model.item_id_is_int)
        return lambda j: table.get(model.item_ids[j].as_py())
    return lambda j: None


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


def print_rows(rows: list[dict[str, Any]], as_json: bool, score_label: str = "score") -> None:
    """Rows of ``{"item", "score", ["title"], ["fallback"]}`` as JSON or an aligned table."""
    if as_json:
        json.dump(rows, sys.stdout)
        sys.stdout.write("\n")
        return
    if not rows:
        print("(no items)")
        return
    has_title = any("title" in r for r in rows)
    width = max(4, max(len(str(r["item"])) for r in rows))
    head = f"{'rank':>4}  {'item':>{width}}  {score_label:>7}"
    print(head + ("  title" if has_title else ""))
    for k, r in enumerate(rows, start=1):
        line = f"{k:>4}  {str(r['item']):>{width}}  {r['score']:>7.3f}"
        print(line + (f"  {r.get('title', '')}" if has_title else ""))
