"""``factorflow models``: list and inspect published versions; promote, roll back, prune.

Forms (``--json`` prints JSON instead of text everywhere)::

    factorflow models                                   the models and their CURRENT version
    factorflow models NAME [--set-current V [--force]]  NAME's versions (* marks CURRENT); switch CURRENT
    factorflow models list [--model NAME]               versions with kind, RMSE, NDCG@10, status
    factorflow models show [VERSION] [--model NAME]     one version's model.json essentials (default CURRENT)
    factorflow models promote VERSION [--model NAME] [--force] [--reason TEXT]
    factorflow models rollback [--model NAME] [--reason TEXT]    back to the previous CURRENT
    factorflow models prune --keep K [--model NAME]     delete all but the newest K (never CURRENT or its predecessor)
    factorflow models history [--model NAME]            CURRENT's changes, oldest first

The first word is an action when it is one of the action words or when ``--model`` is given;
otherwise it is a model name (the older forms). ``--model`` may be left out when the store holds
exactly one model (or, for ``show``/``promote``, when only one model has that VERSION).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from factorflow.cli._common import add_store_arg

ACTIONS = ("list", "show", "promote", "rollback", "prune", "history")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list/show published versions; promote, rollback, prune; switch CURRENT",
        description="Without arguments: the models and their CURRENT version. `models NAME`: its versions "
                    "(* marks CURRENT); --set-current VERSION switches CURRENT. Actions: list [--model NAME], "
                    "show [VERSION], promote VERSION [--force], rollback, prune --keep K, history. The first word "
                    "is an action when it is one of these or when --model is given, else a model name.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("::", 1)[1].split("\n\nThe first word")[0],
    )
    p.add_argument("words", nargs="*", metavar="ACTION|NAME [VERSION]",
                   help=f"an action ({', '.join(ACTIONS)}) and its VERSION, or a model NAME")
    p.add_argument("--model", metavar="NAME", help="the model the action is about (default: the store's only model)")
    p.add_argument("--set-current", metavar="VERSION", help="with NAME: point CURRENT at VERSION")
    p.add_argument("--force", action="store_true", help="promote/--set-current: allow a version that was rejected")
    p.add_argument("--keep", type=int, metavar="K", help="prune: how many of the newest versions to keep")
    p.add_argument("--reason", help="promote/rollback: recorded in CURRENT's history")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_store_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from factorflow.errors import ParameterError

    words = list(args.words)
    if words and (words[0] in ACTIONS or args.model):
        action, rest = words[0], words[1:]
        if action not in ACTIONS:
            raise ParameterError(f"{action!r}: not an action (one of {', '.join(ACTIONS)}); with --model the first "
                                 "word is the action")
        if args.set_current:
            raise ParameterError(f"--set-current: not with `models {action}`; use `factorflow models promote "
                                 "VERSION --model NAME`")
        return _ACTIONS[action](args, rest)
    if len(words) > 1:
        raise ParameterError(f"{' '.join(words[1:])!r}: `factorflow models NAME` takes no more words "
                             f"(actions: {', '.join(ACTIONS)})")
    return _legacy(args, words[0] if words else None)


# ---------------------------------------------------------------- which model


def _model(args: argparse.Namespace, version: str | None = None) -> str:
    """``--model``, else the one model holding ``version``, else the store's only model."""
    from factorflow.errors import NotFoundError, ParameterError
    from factorflow.storage import registry as reg

    if args.model:
        reg.check_name(args.model, "--model")
        return args.model
    names = reg.list_models(args.store)
    if not names:
        raise NotFoundError(f"no models in {args.store}; publish one with `factorflow retrain SOURCE --store "
                            f"{args.store}`")
    if version is not None and len(names) > 1:
        having = [n for n in names if version in reg.list_versions(args.store, n)]
        if len(having) == 1:
            return having[0]
    if len(names) > 1:
        raise ParameterError(f"--model: the store has {len(names)} models ({', '.join(names)}); say which with "
                             "--model NAME")
    return names[0]


def _no_more(action: str, rest: list[str], takes: int = 0) -> None:
    from factorflow.errors import ParameterError

    if len(rest) > takes:
        raise ParameterError(f"{' '.join(rest[takes:])!r}: `factorflow models {action}` takes "
                             f"{'no VERSION' if takes == 0 else 'one VERSION'}")


# ---------------------------------------------------------------- reading


def _row(store: str, name: str, version: str, current: str | None) -> dict[str, Any]:
    from factorflow.storage import registry as reg

    meta = reg.read_model_json(store, name, version)
    test = (meta.get("metrics") or {}).get("test") or {}
    return {"model": name, "version": version, "current": version == current, "created_at": meta.get("created_at"),
            "kind": meta.get("kind"), "rank": meta.get("rank"), "test_rmse": test.get("rmse"),
            "test_ndcg@10": test.get("ndcg@10"), "split": (meta.get("split") or {}).get("id"),
            "status": meta.get("status", "published"), "serving": meta.get("serving", "dot-product")}


def _rows(store: str, name: str) -> list[dict[str, Any]]:
    from factorflow.storage import registry as reg

    versions = reg.list_versions(store, name)
    if not versions:
        reg.current_version(store, name)  # raises the one-line "no published model"
    current = reg.named_current(store, name)
    return [_row(store, name, v, current) for v in versions]


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _print_rows(rows: list[dict[str, Any]], with_model: bool = False) -> None:
    for r in rows:
        who = f"{r['model']}  " if with_model else ""
        print(f"{'*' if r['current'] else ' '} {who}{r['version']}  kind={r['kind']}  rank={r['rank']}  "
              f"test_rmse={_num(r['test_rmse'])}  ndcg@10={_num(r['test_ndcg@10'])}  split={r['split'] or '-'}  "
              f"serving={r['serving']}" + ("" if r["status"] == "published" else f"  {r['status'].upper()}"))


def _legacy(args: argparse.Namespace, name: str | None) -> int:
    """``factorflow models [NAME] [--set-current VERSION]`` (the forms from before the actions)."""
    from factorflow.errors import NotFoundError, ParameterError
    from factorflow.storage import registry as reg

    if args.set_current:
        if not name:
            raise ParameterError("--set-current: give the model NAME too (factorflow models NAME "
                                 "--set-current VERSION)")
        reg.set_current(args.store, name, args.set_current, force=args.force)
        print(f"{name}: CURRENT -> {args.set_current}")
        return 0
    if not name:
        rows = []
        for model in reg.list_models(args.store):
            try:
                cur = reg.current_version(args.store, model)
            except NotFoundError:
                cur = None
            rows.append({"name": model, "current": cur, "versions": len(reg.list_versions(args.store, model))})
        if args.json:
            print(json.dumps(rows))
        elif not rows:
            print(f"no models in {args.store}")
        for r in rows if not args.json else []:
            print(f"{r['name']}  current={r['current'] or '-'}  versions={r['versions']}")
        return 0
    rows = _rows(args.store, name)
    if args.json:
        print(json.dumps(rows))
    else:
        _print_rows(rows)
    return 0


def _list(args: argparse.Namespace, rest: list[str]) -> int:
    from factorflow.storage import registry as reg

    _no_more("list", rest)
    names = [_model(args)] if args.model else reg.list_models(args.store)
    rows = [r for n in names for r in _rows(args.store, n)]
    if args.json:
        print(json.dumps(rows))
    elif not rows:
        print(f"no models in {args.store}")
    else:
        _print_rows(rows, with_model=len(names) > 1)
    return 0


def show_dict(store: str, name: str, version: str) -> dict[str, Any]:
    """The essentials of one version's model.json (what ``models show`` prints)."""
    from factorflow.storage import registry as reg

    meta = reg.read_model_json(store, name, version)
    metrics = meta.get("metrics") or {}
    test = metrics.get("test") or {}
    return {
        "model": name, "version": version, "current": reg.named_current(store, name) == version,
        "created_at": meta.get("created_at"), "kind": meta.get("kind"), "params": meta.get("params"),
        "rank": meta.get("rank"), "n_users": meta.get("n_users"), "n_items": meta.get("n_items"),
        "serving": meta.get("serving", "dot-product"),
        "dataset": meta.get("dataset"), "split": meta.get("split"),
        "metrics": {"test": {k: test.get(k) for k in ("rmse", "mae", "ndcg@10", "precision@10", "recall@10")
                             if k in test},
                    "train_rmse": (metrics.get("train") or {}).get("rmse"),
                    "baselines_rmse": {k: v.get("rmse") for k, v in (metrics.get("baselines") or {}).items()}},
        "status": meta.get("status", "published"), "rejected_because": meta.get("rejected_because"),
        "challenge": meta.get("challenge"), "fit": meta.get("fit"),
        "files": {k: (v or {}).get("bytes") for k, v in (meta.get("files") or {}).items()},
        "code_version": meta.get("code_version"),
    }


def _show(args: argparse.Namespace, rest: list[str]) -> int:
    from factorflow.storage import registry as reg

    _no_more("show", rest, 1)
    version = rest[0] if rest and rest[0].upper() != "CURRENT" else None
    name = _model(args, version)
    version = version or reg.current_version(args.store, name)
    if version not in reg.list_versions(args.store, name):
        reg.load_model(args.store, name, version)  # the one-line "not a complete version ... (versions: ...)"
    d = show_dict(args.store, name, version)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    print(f"model {name} version {version}{'  (CURRENT)' if d['current'] else ''}")
    ds, sp = d["dataset"] or {}, d["split"] or {}
    lines = [
        ("created", d["created_at"]), ("kind", d["kind"]),
        ("params", json.dumps(d["params"], sort_keys=True) if d["params"] else None),
        ("shape", f"{d['n_users']} users x {d['n_items']} items, rank {d['rank']}, serving {d['serving']}"),
        ("data", f"dataset {ds.get('name')} snapshot {ds.get('snapshot')}" if ds else None),
        ("split", f"{sp.get('id')} ({sp.get('n_train')} train / {sp.get('n_test')} test ratings)" if sp else None),
        ("test", "  ".join(f"{k}={_num(v)}" for k, v in d["metrics"]["test"].items())),
        ("baselines", "  ".join(f"{k} rmse={_num(v)}" for k, v in d["metrics"]["baselines_rmse"].items())),
        ("status", d["status"] + (f": {'; '.join(d['rejected_because'])}" if d["rejected_because"] else "")),
    ]
    c = d["challenge"]
    if c:
        champ = c.get("champion")
        vs = (f" vs CURRENT {champ['version']} (metrics {champ['obtained']}: rmse={_num(champ['metrics'].get('rmse'))}"
              f" ndcg@10={_num(champ['metrics'].get('ndcg@10'))})") if champ else ""
        lines.append(("challenge", f"{c['decision']}{vs}: {c['reason']}"))
    if (d["fit"] or {}).get("warm_start"):
        lines.append(("warm start", json.dumps(d["fit"]["warm_start"], sort_keys=True)))
    lines.append(("files", ", ".join(f"{k} ({v:,} B)" if isinstance(v, int) else k for k, v in d["files"].items())))
    for key, value in lines:
        if value:
            print(f"  {key + ':':<12}{value}")
    return 0


# ---------------------------------------------------------------- switching CURRENT


def _promote(args: argparse.Namespace, rest: list[str]) -> int:
    from factorflow.errors import ParameterError
    from factorflow.storage import registry as reg

    if not rest:
        raise ParameterError("promote: give the VERSION (factorflow models promote VERSION --model NAME)")
    _no_more("promote", rest, 1)
    name = _model(args, rest[0])
    before = reg.named_current(args.store, name)
    changed = reg.promote(args.store, name, rest[0], force=args.force, reason=args.reason)
    out = {"model": name, "action": "promote", "from": before, "current": rest[0], "changed": changed}
    print(json.dumps(out) if args.json else
          f"{name}: CURRENT -> {rest[0]}" + (f" (was {before})" if changed else " (it already was)"))
    return 0


def _rollback(args: argparse.Namespace, rest: list[str]) -> int:
    from factorflow.storage import registry as reg

    _no_more("rollback", rest)
    name = _model(args)
    left, now = reg.rollback(args.store, name, reason=args.reason)
    print(json.dumps({"model": name, "action": "rollback", "from": left, "current": now}) if args.json else
          f"{name}: CURRENT -> {now} (rolled back from {left})")
    return 0


def _prune(args: argparse.Namespace, rest: list[str]) -> int:
    from factorflow.errors import ParameterError
    from factorflow.storage import registry as reg

    _no_more("prune", rest)
    if args.keep is None:
        raise ParameterError("prune: give --keep K (how many of the newest versions to keep)")
    if args.keep < 1:
        raise ParameterError(f"--keep={args.keep}: must be an integer >= 1")
    name = _model(args)
    deleted = reg.prune_versions(args.store, name, args.keep)
    kept = reg.list_versions(args.store, name)
    if args.json:
        print(json.dumps({"model": name, "deleted": deleted, "kept": kept}))
    else:
        print(f"{name}: deleted {len(deleted)} version(s), kept {len(kept)}" +
              (f": {', '.join(deleted)}" if deleted else ""))
    return 0


def _history(args: argparse.Namespace, rest: list[str]) -> int:
    from factorflow.storage import registry as reg

    _no_more("history", rest)
    name = _model(args)
    entries = reg.read_history(args.store, name)
    if args.json:
        print(json.dumps(entries))
    elif not entries:
        print(f"{name}: no CURRENT history recorded")
    for e in entries if not args.json else []:
        print(f"{e['at']}  {e['action']:<11} {e['version']}" + (f"  {e['reason']}" if e.get("reason") else ""))
    return 0


_ACTIONS = {"list": _list, "show": _show, "promote": _promote, "rollback": _rollback, "prune": _prune,
            "history": _history}
