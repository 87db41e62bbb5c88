"""Options and output of the commands that read a published model (``recommend``, ``similar``).

Only argument parsing and printing live here; what is computed comes from
:mod:`factorflow.serving.published`. Light imports only (this module is read for ``--help``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from factorflow.cli._common import add_store_arg
from factorflow.serving.candidates import MIN_RATINGS


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


def print_notes(notes: list[str]) -> None:
    """The serving layer's notes (fallback, missing seen.parquet), one line each on stderr."""
    for note in notes:
        print(note, file=sys.stderr)


def item_rows(model: Any, ranked: Any, titles: Callable[[int], str | None]) -> list[dict[str, Any]]:
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
    has_std = any("std" in r for r in rows)
    width = max(4, max(len(str(r["item"])) for r in rows))
    head = f"{'rank':>4}  {'item':>{width}}  {score_label:>7}" + (f"  {'std':>6}" if has_std else "")
    print(head + ("  title" if has_title else ""))
    for k, r in enumerate(rows, start=1):
        line = f"{k:>4}  {str(r['item']):>{width}}  {r['score']:>7.3f}" + (f"  {r['std']:>6.3f}" if has_std else "")
        print(line + (f"  {r.get('title', '')}" if has_title else ""))
