"""Calibrate the AutoRec kinds on ml-latest-small: seeded random 80/20 splits (benchmarks/als_tuning.py masks).

Fits the model directly (no CLI) on the train part and reports the held-out RMSE over ALL test rows
(cold rows get the μ + bias fallback), clipped to [0.5, 5], with the best epoch and the seconds.

    python benchmarks/autorec_tuning.py --model i-autorec --seeds 0 1 2 --set reg=100 activation=sigmoid

(The sweeps in the config docstrings ran with KERAS_BACKEND=jax JAX_PLATFORMS=cpu, about 3x faster here.)

Appends one JSON line per fit to benchmarks/results/autorec_tuning.jsonl (or --out).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from als_tuning import RATINGS, load, random_split

from factorflow.evaluation.metrics import rating_metrics
from factorflow.models import registry
from factorflow.models.baselines import BiasBaseline

ROOT = Path(__file__).resolve().parents[1]


def value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="i-autorec")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", nargs="*", default=[], help="config overrides NAME=VALUE")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "autorec_tuning.jsonl"))
    args = ap.parse_args()
    overrides = {k: value(v) for k, v in (s.split("=", 1) for s in args.set)}
    df = load(RATINGS)
    u, i, r = df["u"].to_numpy(), df["i"].to_numpy(), df["rating"].to_numpy(np.float32)
    shape = (u.max() + 1, i.max() + 1)
    for seed in args.seeds:
        test = random_split(len(df), seed)
        train = sp.csr_matrix((r[~test], (u[~test], i[~test])), shape=shape)
        cold = ~np.isin(u[test], u[~test]) | ~np.isin(i[test], i[~test])
        t0 = time.perf_counter()
        model = registry.make_model(registry.make_config(args.model, overrides))
        model.fit(train)
        seconds = time.perf_counter() - t0
        m = rating_metrics(model.factors(), u[test], i[test], r[test], cold=cold)
        bias = rating_metrics(BiasBaseline().fit(train).factors(), u[test], i[test], r[test])["rmse"]
        row = {"model": args.model, "seed": seed, "set": overrides, "rmse": m["rmse"], "bias_rmse": bias,
               "best_epoch": model.best_epoch, "epochs_run": len(model.history), "seconds": round(seconds, 1),
               "val_rmse": [round(h.get("val_rmse", float("nan")), 4) for h in model.history]}
        print(json.dumps({k: v for k, v in row.items() if k != "val_rmse"}), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
