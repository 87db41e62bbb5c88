"""Held-out quality of `factorflow retrain` with its defaults on MovieLens ml-latest-small.

Runs the real CLI (Prefect flow, Dask LocalCluster) once per split and reports test RMSE/MAE/
top-N of ALS beside the baselines: a seeded random 80/20 split for seeds 0, 1, 2 (and their mean)
and a per-user temporal split (each user's last 20% by time).

    python benchmarks/retrain_quality.py [--out benchmarks/results/retrain_quality.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "ml-latest-small" / "ratings.csv"

RUNS = [
    ("random 80/20, seed 0", ["--seed", "0"]),
    ("random 80/20, seed 1", ["--seed", "1"]),
    ("random 80/20, seed 2", ["--seed", "2"]),
    ("temporal per-user last 20%", ["--split", "temporal", "--per-user", "--test-fraction", "0.2"]),
]


def run_once(store: str, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "factorflow", "retrain", str(DATA), "--store", store, "--json", *extra]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    summary = json.loads(out.stdout)
    summary["wall_seconds"] = time.perf_counter() - t0
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "retrain_quality.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as store:
        for label, extra in RUNS:
            s = run_once(store, extra)
            m = s["metrics"]
            rows.append({
                "split": label, "split_id": s["split"], "n_test": m["split"]["n_test"],
                "als_rmse": m["test"]["rmse"], "als_mae": m["test"]["mae"],
                "als_ndcg@10": m["test"]["ndcg@10"], "warm_rmse": m["test"]["warm"]["rmse"],
                "cold_n": m["test"]["cold"]["n"],
                "bias_rmse": m["baselines"]["bias"]["rmse"], "bias_ndcg@10": m["baselines"]["bias"]["ndcg@10"],
                "global_mean_rmse": m["baselines"]["global-mean"]["rmse"],
                "params": s.get("params"), "wall_seconds": round(s["wall_seconds"], 1),
            })
            print(f"{label:28s} ALS {rows[-1]['als_rmse']:.4f}  bias {rows[-1]['bias_rmse']:.4f}  "
                  f"global mean {rows[-1]['global_mean_rmse']:.4f}  ({rows[-1]['wall_seconds']} s)", flush=True)
    random_rows = [r for r in rows if r["split"].startswith("random")]
    mean = {k: sum(r[k] for r in random_rows) / len(random_rows) for k in ("als_rmse", "bias_rmse", "global_mean_rmse")}
    print("\n| split | test rows | ALS RMSE | ALS MAE | ALS nDCG@10 | bias RMSE | bias nDCG@10 | global-mean RMSE |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['split']} (`{r['split_id']}`) | {r['n_test']:,} | {r['als_rmse']:.4f} | {r['als_mae']:.4f} | "
              f"{r['als_ndcg@10']:.4f} | {r['bias_rmse']:.4f} | {r['bias_ndcg@10']:.4f} | "
              f"{r['global_mean_rmse']:.4f} |")
    print(f"| **mean of random seeds 0-2** | | **{mean['als_rmse']:.4f}** | | | {mean['bias_rmse']:.4f} | | "
          f"{mean['global_mean_rmse']:.4f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"runs": rows, "mean_random_seeds_0_2": mean}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
