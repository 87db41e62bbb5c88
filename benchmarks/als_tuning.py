"""Tune ALS defaults on ml-latest-small: seeded random 80/20 splits (mean over seeds 0,1,2).

Protocol (matches the issue's "Must show"): ids mapped to dense indices over the whole file;
test = rows at ``default_rng(seed).permutation(n)[:round(0.2 n)]``; RMSE over ALL test rows
(cold-start rows predict μ + the known bias); predictions clipped to [0.5, 5]. Also a per-user
temporal split (each user's last 20% of ratings by time, ties by item) with the defaults.

    python benchmarks/als_tuning.py [--quick] [--ratings PATH]

Prints a table and writes benchmarks/results/als_tuning.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from factorflow.evaluation.metrics import rating_metrics
from factorflow.models.als import ALS, ALSConfig
from factorflow.models.baselines import BiasBaseline, GlobalMean

ROOT = Path(__file__).resolve().parents[1]
RATINGS = ROOT / "tests" / "data" / "ml-latest-small" / "ratings.csv"
OUT = ROOT / "benchmarks" / "results" / "als_tuning.json"
SEEDS = (0, 1, 2)


def load(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    df["u"] = np.unique(df["userId"].to_numpy(), return_inverse=True)[1]
    df["i"] = np.unique(df["movieId"].to_numpy(), return_inverse=True)[1]
    return df


def random_split(n: int, seed: int) -> np.ndarray:
    """Boolean test mask: positions permutation(n)[:round(0.2 n)] of default_rng(seed)."""
    mask = np.zeros(n, bool)
    mask[np.random.default_rng(seed).permutation(n)[: round(0.2 * n)]] = True
    return mask


def temporal_split(df: pd.DataFrame, fraction: float = 0.2) -> np.ndarray:
    """Boolean test mask: each user's last round(fraction·n_u) ratings by (timestamp, item)."""
    order = np.lexsort((df["i"].to_numpy(), df["timestamp"].to_numpy(), df["u"].to_numpy()))
    users = df["u"].to_numpy()[order]
    counts = np.bincount(users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(users.size) - starts[users]
    n_test = np.round(fraction * counts).astype(int)
    mask = np.zeros(len(df), bool)
    mask[order] = pos >= counts[users] - n_test[users]
    return mask


def evaluate_split(df: pd.DataFrame, test: np.ndarray, models: dict) -> dict[str, dict]:
    u, i, r = df["u"].to_numpy(), df["i"].to_numpy(), df["rating"].to_numpy(np.float32)
    shape = (u.max() + 1, i.max() + 1)
    train = sp.csr_matrix((r[~test], (u[~test], i[~test])), shape=shape)
    cold = ~np.isin(u[test], u[~test]) | ~np.isin(i[test], i[~test])
    out = {}
    for name, make in models.items():
        t0 = time.perf_counter()
        model = make().fit(train)
        m = rating_metrics(model.factors(), u[test], i[test], r[test], cold=cold)
        m["seconds"] = time.perf_counter() - t0
        out[name] = m
    return out


def grid(quick: bool) -> list[ALSConfig]:
    """The configurations tried (defaults first); --quick runs the defaults only."""
    cfgs = [ALSConfig()]
    if quick:
        return cfgs
    cfgs += [ALSConfig(rank=k, reg=lam, weighted=False)
             for k, lam in itertools.product((20, 50, 100), (6.0, 10.0, 12.0, 15.0, 20.0))]
    cfgs += [ALSConfig(rank=k, reg=lam, weighted=True)
             for k, lam in itertools.product((20, 50, 100), (0.05, 0.08, 0.12, 0.15))]
    cfgs += [ALSConfig(sweeps=s) for s in (5, 10, 20, 30)]
    cfgs += [ALSConfig(init_scale=s) for s in (0.01, 0.3, 1.0)]
    cfgs += [ALSConfig(reg_bias=rb) for rb in (2.0, 3.0, 6.0)]
    cfgs += [ALSConfig(rank=50, reg=0.12, weighted=True, reg_bias=rb) for rb in (2.0, 5.0)]
    return [c for i, c in enumerate(cfgs) if c not in cfgs[:i]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratings", type=Path, default=RATINGS)
    ap.add_argument("--quick", action="store_true", help="defaults only")
    args = ap.parse_args()
    df = load(args.ratings)
    masks = {f"random-s{s}": random_split(len(df), s) for s in SEEDS}
    baselines = {"global-mean": GlobalMean, "bias": BiasBaseline}
    rows = []
    print(f"{'model':66s} {'rmse s0':>8s} {'s1':>7s} {'s2':>7s} {'mean':>7s} {'sec':>6s}")

    def run(label: str, models: dict) -> None:
        per = {k: evaluate_split(df, m, models) for k, m in masks.items()}
        for name in models:
            rm = [per[k][name]["rmse"] for k in masks]
            sec = float(np.mean([per[k][name]["seconds"] for k in masks]))
            rows.append({"model": name, "label": label, "rmse": rm, "mean_rmse": float(np.mean(rm)),
                         "mae": [per[k][name]["mae"] for k in masks], "seconds": sec,
                         "warm_rmse": [per[k][name]["warm"]["rmse"] for k in masks],
                         "cold_rmse": [per[k][name]["cold"]["rmse"] for k in masks]})
            print(f"{label:66s} " + " ".join(f"{x:7.4f}" for x in rm)
                  + f" {np.mean(rm):7.4f} {sec:6.1f}", flush=True)

    run("global-mean", {"global-mean": GlobalMean})
    for lu, li in ((0.0, 0.0), (2.0, 2.0), (3.0, 3.0), (5.0, 5.0), (10.0, 10.0), (5.0, 15.0)):
        run(f"bias reg_user={lu} reg_item={li}",
            {"bias": lambda lu=lu, li=li: BiasBaseline(reg_user=lu, reg_item=li)})
    for cfg in grid(args.quick):
        label = (f"als K={cfg.rank} reg={cfg.reg} w={int(cfg.weighted)} sw={cfg.sweeps} "
                 f"is={cfg.init_scale}" + (f" rb={cfg.reg_bias}" if cfg.reg_bias is not None else ""))
        run(label, {"als": lambda cfg=cfg: ALS(cfg)})

    temporal = temporal_split(df)
    tres = evaluate_split(df, temporal, {"als": lambda: ALS(ALSConfig()), **baselines})
    print("per-user temporal split (last 20% by time), defaults:")
    for name, m in tres.items():
        print(f"  {name:12s} rmse {m['rmse']:.4f} mae {m['mae']:.4f} (warm {m['warm']['n']}, "
              f"cold {m['cold']['n']} rows)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "data": str(args.ratings.relative_to(ROOT) if args.ratings.is_relative_to(ROOT) else args.ratings),
        "protocol": "random 80/20, seeds 0,1,2; all test rows; clipped [0.5,5]",
        "defaults": asdict(ALSConfig()), "machine": platform.processor() or platform.machine(),
        "random": rows, "temporal": tres}, indent=1, default=float))
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
