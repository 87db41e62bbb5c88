"""``factorflow models``: list published models and versions; roll CURRENT back or forward."""

from __future__ import annotations

import argparse
import json

from factorflow.cli._common import add_store_arg


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list published models/versions, or switch CURRENT (rollback)",
        description="Without NAME: list models and their current version. With NAME: list its "
                    "versions (* marks CURRENT) with test RMSE. --set-current VERSION switches CURRENT.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="model name")
    p.add_argument("--set-current", metavar="VERSION", help="point CURRENT at VERSION (rollback)")
    p.add_argument("--force", action="store_true", help="with --set-current: allow a version the publish gate rejected")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_store_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from factorflow.errors import NotFoundError, ParameterError
    from factorflow.storage import registry as reg

    if args.set_current:
        if not args.name:
            raise ParameterError("--set-current: give the model NAME too (factorflow models NAME "
                                 "--set-current VERSION)")
        reg.set_current(args.store, args.name, args.set_current, force=args.force)
        print(f"{args.name}: CURRENT -> {args.set_current}")
        return 0
    if not args.name:
        rows = []
        for name in reg.list_models(args.store):
            try:
                cur = reg.current_version(args.store, name)
            except NotFoundError:
                cur = None
            rows.append({"name": name, "current": cur,
                         "versions": len(reg.list_versions(args.store, name))})
        if args.json:
            print(json.dumps(rows))
        elif not rows:
            print(f"no models in {args.store}")
        for r in rows if not args.json else []:
            print(f"{r['name']}  current={r['current'] or '-'}  versions={r['versions']}")
        return 0
    versions = reg.list_versions(args.store, args.name)
    if not versions:
        reg.current_version(args.store, args.name)  # raises the one-line "no published model"
    try:
        cur = reg.current_version(args.store, args.name)
    except NotFoundError:
        cur = None
    rows = []
    for v in versions:
        meta = reg.read_model_json(args.store, args.name, v)
        rmse = ((meta.get("metrics") or {}).get("test") or {}).get("rmse")
        rows.append({"version": v, "current": v == cur, "created_at": meta.get("created_at"),
                     "kind": meta.get("kind"), "rank": meta.get("rank"), "test_rmse": rmse,
                     "status": meta.get("status", "published"),
                     "serving": meta.get("serving", "dot-product")})
    if args.json:
        print(json.dumps(rows))
        return 0
    for r in rows:
        rmse = "-" if r["test_rmse"] is None else f"{r['test_rmse']:.4f}"
        print(f"{'*' if r['current'] else ' '} {r['version']}  kind={r['kind']}  rank={r['rank']}  "
              f"test_rmse={rmse}  serving={r['serving']}" + ("  REJECTED" if r["status"] == "rejected" else ""))
    return 0
