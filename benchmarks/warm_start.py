"""Warm start vs cold start of ALS on MovieLens ml-latest-small: sweeps to converge.

Protocol (no Prefect; the pipeline functions the retrain flow calls):

1. Ingest ml-latest-small and make the random 80/20 split (seed 42): split ``random-f0.2-s42``.
2. The champion: ALS fitted on the ratings of that split's TRAIN part that fall in the first 90%
   of the data by time (so it never saw a test rating, and it knows fewer users and items),
   published as model ``als`` with its own raw-id tables (a different dense id space).
3. Retrain on the whole train part, cold (the usual random start) and warm (``--warm-start``:
   CURRENT's factors matched by raw id, :func:`factorflow.pipeline.champion.warm_start_from_current`),
   same config, ``--sweeps`` sweeps each; every sweep records the train objective J and the held-out
   RMSE on the split's test part.
4. Sweeps to converge: the first sweep whose objective (and held-out RMSE) is within 0.1% of the
   run's final value (and of the cold run's final value).

    python benchmarks/warm_start.py [--sweeps 40] [--rank 50] [--reg 12] [--out benchmarks/results/warm_start.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "ml-latest-small" / "ratings.csv"
RANGE = (0.5, 5.0)


def first_within(values: list[float], target: float, rel: float = 1e-3) -> int | None:
    """1-based index of the first value within ``rel`` of ``target`` (None if none)."""
    for i, v in enumerate(values, 1):
        if abs(v - target) <= rel * abs(target):
            return i
    return None


def publish_champion(store: str, snapshot, split, config, fraction: float) -> dict:
    """Fit ALS on the split's train rows before the ``fraction`` time quantile; publish it as ``als``."""
    import pyarrow as pa
    import scipy.sparse as sp

    from factorflow.models.registry import make_model
    from factorflow.storage.datasets import read_ids
    from factorflow.storage.registry import publish
    from factorflow.storage.splits import read_train

    train = read_train(split)
    t = train.column("timestamp").to_numpy()
    ratings = snapshot_ratings(snapshot)
    cutoff = int(np.quantile(ratings.column("timestamp").to_numpy(), fraction))
    keep = t < cutoff
    users = train.column("user_idx").to_numpy()[keep]
    items = train.column("item_idx").to_numpy()[keep]
    r = train.column("rating").to_numpy()[keep]
    uu, u_dense = np.unique(users, return_inverse=True)
    ii, i_dense = np.unique(items, return_inverse=True)
    csr = sp.csr_matrix((r.astype(np.float32), (u_dense, i_dense)), shape=(len(uu), len(ii)))
    model = make_model(config).fit(csr)
    user_ids = read_ids(snapshot, "user").column("user_id").take(pa.array(uu))
    item_ids = read_ids(snapshot, "item").column("item_id").take(pa.array(ii))
    version = publish(store, "als", model.factors(), user_ids, item_ids,
                      {"kind": "als", "params": model.params(), "note": f"train rows before t={cutoff}"})
    return {"version": version, "cutoff_timestamp": cutoff, "n_ratings": int(keep.sum()),
            "n_users": len(uu), "n_items": len(ii)}


def snapshot_ratings(snapshot):
    from factorflow.storage import parquet as pqio
    from factorflow.storage.fs import open_path
    from factorflow.storage.layout import RATINGS_FILE, snapshot_file

    fs, path = open_path(snapshot_file(snapshot.path, RATINGS_FILE))
    return pqio.read_table(fs, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweeps", type=int, default=40)
    ap.add_argument("--rank", type=int, default=50)
    ap.add_argument("--reg", type=float, default=12.0)
    ap.add_argument("--fraction", type=float, default=0.9, help="the champion's share of the data by time")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "warm_start.json"))
    args = ap.parse_args()

    from factorflow.data.ingest import ingest_source
    from factorflow.data.splits import make_split
    from factorflow.models.registry import make_config
    from factorflow.pipeline.champion import WarmStart
    from factorflow.pipeline.train import train_model

    config = make_config("als", {"rank": args.rank, "reg": args.reg, "sweeps": args.sweeps})
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "store")
        snapshot = ingest_source(str(DATA), store, "ml")
        split = make_split(snapshot, "random", test_fraction=0.2, seed=42)
        champion = publish_champion(store, snapshot, split, config, args.fraction)
        runs = {}
        for label, warm in (("cold", None), ("warm", WarmStart(store, "als", snapshot))):
            t0 = time.perf_counter()
            result = train_model(config, split, rating_range=RANGE, warm_start=warm)
            runs[label] = {"seconds": time.perf_counter() - t0, "history": result.history,
                           "warm_start": result.fit.get("warm_start")}
    cold, warm = runs["cold"]["history"], runs["warm"]["history"]
    summary = {}
    for label, hist in (("cold", cold), ("warm", warm)):
        obj = [h["objective"] for h in hist]
        rmse = [h["test_rmse"] for h in hist]
        summary[label] = {
            "final_objective": obj[-1], "final_test_rmse": rmse[-1],
            "sweeps_objective_within_0.1pct_of_own_final": first_within(obj, obj[-1]),
            "sweeps_objective_within_0.1pct_of_cold_final": first_within(obj, cold[-1]["objective"]),
            "sweeps_test_rmse_within_0.1pct_of_own_final": first_within(rmse, rmse[-1]),
            "sweeps_test_rmse_within_0.1pct_of_cold_final": first_within(rmse, cold[-1]["test_rmse"]),
            "seconds": runs[label]["seconds"],
        }
    print(f"ml-latest-small, split {split.split} ({split.manifest['n_train']:,} train / "
          f"{split.manifest['n_test']:,} test ratings); ALS K={args.rank} λ={args.reg:g}, {args.sweeps} sweeps")
    print(f"champion (CURRENT): train rows before the {args.fraction:.0%} time quantile: {champion['n_ratings']:,} "
          f"ratings, {champion['n_users']} users, {champion['n_items']} items")
    ws = runs["warm"]["warm_start"]
    print(f"warm start matched {ws['users']}/{ws['n_users']} users and {ws['items']}/{ws['n_items']} items by raw id\n")
    print(f"{'sweep':>5}  {'cold J':>12}  {'warm J':>12}  {'cold RMSE':>9}  {'warm RMSE':>9}")
    for c, w in zip(cold, warm, strict=True):
        print(f"{c['sweep']:>5}  {c['objective']:>12,.1f}  {w['objective']:>12,.1f}  {c['test_rmse']:>9.4f}  "
              f"{w['test_rmse']:>9.4f}")
    print()
    for key in ("sweeps_objective_within_0.1pct_of_own_final", "sweeps_objective_within_0.1pct_of_cold_final",
                "sweeps_test_rmse_within_0.1pct_of_own_final", "sweeps_test_rmse_within_0.1pct_of_cold_final"):
        print(f"{key.replace('_', ' '):<48} cold {summary['cold'][key]!s:>4}   warm {summary['warm'][key]!s:>4}")
    print(f"{'final objective':<48} cold {summary['cold']['final_objective']:,.1f}   warm "
          f"{summary['warm']['final_objective']:,.1f}")
    print(f"{'final held-out RMSE':<48} cold {summary['cold']['final_test_rmse']:.4f}   warm "
          f"{summary['warm']['final_test_rmse']:.4f}")
    out = {"dataset": "ml-latest-small", "split": split.split, "config": {"rank": args.rank, "reg": args.reg,
                                                                            "sweeps": args.sweeps},
           "champion": champion, "warm_start": ws, "summary": summary,
           "per_sweep": [{"sweep": c["sweep"], "cold_objective": c["objective"], "warm_objective": w["objective"],
                          "cold_test_rmse": c["test_rmse"], "warm_test_rmse": w["test_rmse"]}
                         for c, w in zip(cold, warm, strict=True)],
           "machine": platform.platform()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
