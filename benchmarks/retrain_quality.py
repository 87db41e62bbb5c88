"""Held-out quality of `factorflow retrain` with its defaults on MovieLens ml-latest-small.

Runs the real CLI (Prefect flow, Dask LocalCluster) once per split and reports test RMSE/MAE/
top-N of ALS beside the baselines: a seeded random 80/20 split for seeds 0, 1, 2 (and their mean)
and a per-user temporal split (each user's last 20% by time).

    python benchmarks/retrain_quality.py [--model als] [--out benchmarks/results/retrain_quality.json]

With ``--model bpmf`` (any kind) the same protocol runs that kind with its defaults; for a kind
with a predictive distribution it also reports the held-out RMSE of the quarter of test ratings
with the lowest and the highest predictive std.
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
    print("$", " ".join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    summary = json.loads(out.stdout)
    summary["wall_seconds"] = time.perf_counter() - t0
    return summary


def uncertainty_quarters(store: str, summary: dict) -> dict | None:
    """Held-out RMSE of the quarter of test ratings with the lowest / highest predictive std, for a
    published kind with the ``Uncertain`` capability (else None)."""
    import numpy as np

    from factorflow.models import registry
    from factorflow.models.base import Uncertain
    from factorflow.storage.datasets import resolve_snapshot
    from factorflow.storage.registry import load_model
    from factorflow.storage.splits import read_test, resolve_split

    model = load_model(store, summary["model"], summary["version"])
    built = registry.model_from_params(summary["kind"], summary["params"])
    if not isinstance(built, Uncertain):
        return None
    test = read_test(resolve_split(resolve_snapshot(store, summary["dataset"], summary["snapshot"]),
                                   summary["split"]))
    users, items, r = (test.column(c).to_numpy() for c in ("user_idx", "item_idx", "rating"))
    f = model.factors
    std = np.zeros(len(users))
    for u in np.unique(users):
        at = np.flatnonzero(users == u)
        std[at] = built.predictive_std(f, f.user_factors[u], items[at])
    lo, hi = (float(q) for q in np.quantile(std, [0.25, 0.75]))
    scale = model.model_json.get("rating_range") or [0.5, 5.0]
    err = np.clip(f.predict(users, items), *scale) - r
    rmse = lambda mask: float(np.sqrt(np.mean(err[mask] ** 2)))  # noqa: E731
    return {"low_std_quarter_rmse": rmse(std <= lo), "high_std_quarter_rmse": rmse(std >= hi),
            "std_quartiles": [lo, hi]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="als", help="model kind (default als)")
    ap.add_argument("--out", default=None,
                    help="JSON (default benchmarks/results/retrain_quality.json, or retrain_quality_KIND.json)")
    args = ap.parse_args()
    kind = args.model
    out = args.out or str(ROOT / "benchmarks" / "results" / (
        "retrain_quality.json" if kind == "als" else f"retrain_quality_{kind}.json"))
    rows = []
    with tempfile.TemporaryDirectory() as store:
        for label, extra in RUNS:
            s = run_once(store, ["--model", kind, *extra])
            m = s["metrics"]
            rows.append({
                "split": label, "split_id": s["split"], "n_test": m["split"]["n_test"],
                f"{kind}_rmse": m["test"]["rmse"], f"{kind}_mae": m["test"]["mae"],
                f"{kind}_ndcg@10": m["test"]["ndcg@10"], "warm_rmse": m["test"]["warm"]["rmse"],
                "cold_n": m["test"]["cold"]["n"],
                "bias_rmse": m["baselines"]["bias"]["rmse"], "bias_ndcg@10": m["baselines"]["bias"]["ndcg@10"],
                "global_mean_rmse": m["baselines"]["global-mean"]["rmse"],
                "params": s.get("params"), "wall_seconds": round(s["wall_seconds"], 1),
            })
            quarters = uncertainty_quarters(store, s)
            if quarters:
                rows[-1].update(quarters)
            print(f"{label:28s} {kind} {rows[-1][f'{kind}_rmse']:.4f}  bias {rows[-1]['bias_rmse']:.4f}  "
                  f"global mean {rows[-1]['global_mean_rmse']:.4f}  ({rows[-1]['wall_seconds']} s)"
                  + (f"  RMSE of the lowest/highest-std quarter {quarters['low_std_quarter_rmse']:.4f}/"
                     f"{quarters['high_std_quarter_rmse']:.4f}" if quarters else ""), flush=True)
    random_rows = [r for r in rows if r["split"].startswith("random")]
    mean = {k: sum(r[k] for r in random_rows) / len(random_rows)
            for k in (f"{kind}_rmse", "bias_rmse", "global_mean_rmse")}
    name = kind.upper() if kind in ("als", "bpmf", "svd", "pmf") else kind
    print(f"\n| split | test rows | {name} RMSE | {name} MAE | {name} nDCG@10 | bias RMSE | bias nDCG@10 "
          "| global-mean RMSE | s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['split']} (`{r['split_id']}`) | {r['n_test']:,} | {r[f'{kind}_rmse']:.4f} | "
              f"{r[f'{kind}_mae']:.4f} | {r[f'{kind}_ndcg@10']:.4f} | {r['bias_rmse']:.4f} | "
              f"{r['bias_ndcg@10']:.4f} | {r['global_mean_rmse']:.4f} | {r['wall_seconds']} |")
    print(f"| **mean of random seeds 0-2** | | **{mean[f'{kind}_rmse']:.4f}** | | | {mean['bias_rmse']:.4f} | | "
          f"{mean['global_mean_rmse']:.4f} | |")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"model": kind, "runs": rows, "mean_random_seeds_0_2": mean}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
