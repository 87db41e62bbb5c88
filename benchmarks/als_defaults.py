"""ALS defaults that hold at scale, and what the CG row solver costs in accuracy.

Two data sets, held-out RMSE only (predictions clipped to [0.5, 5]; rows of unknown users or
items predict μ + the known bias):

* ml-latest-small (``tests/data``), seeded random 80/20 splits, seeds 0, 1, 2 — the protocol of
  ``als_tuning.py`` (its ``load``/``random_split``/``evaluate_split``), mean over the seeds;
* the synthetic MovieLens-20M shape: ``factorflow.data.synth.synthetic_matrix(138,493, 26,744,
  20,000,263, seed 0)`` (planted rank-10 signal, noise σ = 0.5 before half-star rounding), test =
  a seeded random 10% of the ratings (``default_rng(0).random(nnz) < 0.1``), in-process fits
  (``ALS(cfg).fit``, all cores), the test RMSE after every sweep. Cached under benchmarks/data/.

Sections (``--part``): ``small`` (the candidate defaults on ml-latest-small), ``large`` (the same
candidates at the 20M shape, default rank and sweeps), ``solver`` (rank 64, 5 sweeps, 20M: the
fast Cholesky kernel, CG with 3 and 2 steps, and the plain NumPy float64 reference solver — per-sweep
seconds and test RMSE, so the fast kernel's RMSE can be compared with the reference's). Prints
tables and writes benchmarks/results/als_defaults.json.

    python benchmarks/als_defaults.py                  # all parts (~25 min on 2 cores)
    python benchmarks/als_defaults.py --part small
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from als_tuning import RATINGS, evaluate_split, load, random_split  # noqa: E402

from factorflow.evaluation.metrics import rating_metrics  # noqa: E402
from factorflow.models.als import ALS, ALSConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "als_defaults.json"
DATA = ROOT / "benchmarks" / "data"
SHAPE = (138_493, 26_744, 20_000_263)

#: Candidate regularizations: (label, ALSConfig overrides). The first is the old default.
CANDIDATES: list[tuple[str, dict[str, Any]]] = [
    ("6+0.02·n, 5 sw (default)", {}),
    ("λ=12, 15 sw (old default)", {"reg": 12.0, "reg_per_rating": 0.0, "sweeps": 15}),
    ("weighted 0.05·n, 5 sw", {"reg": 0.05, "weighted": True}),
    ("weighted 0.05·n, 15 sw", {"reg": 0.05, "weighted": True, "sweeps": 15}),
]


def small(candidates: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    df = load(RATINGS)
    rmse: dict[str, list[float]] = {label: [] for label, _ in candidates}
    for seed in (0, 1, 2):
        test = random_split(len(df), seed)
        models = {label: (lambda kw=kw: ALS(ALSConfig(**kw))) for label, kw in candidates}
        out = evaluate_split(df, test, models)
        for label, _ in candidates:
            rmse[label].append(out[label]["rmse"])
    return [{"label": label, "config": kw, "rmse": rmse[label], "mean_rmse": float(np.mean(rmse[label]))}
            for label, kw in candidates]


def synthetic(data_dir: Path) -> tuple[sp.csr_matrix, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(train CSR, (test users, items, ratings)) of the 20M shape, cached as .npz."""
    from factorflow.data.synth import synthetic_matrix

    path = data_dir / f"als_defaults-{SHAPE[2]}-s0.npz"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        m = synthetic_matrix(*SHAPE, seed=0)
        tmp = path.with_suffix(".tmp.npz")
        sp.save_npz(tmp, m, compressed=False)
        os.replace(tmp, path)
    coo = sp.load_npz(path).tocoo()
    test = np.random.default_rng(0).random(coo.nnz) < 0.1
    train = sp.csr_matrix((coo.data[~test], (coo.row[~test], coo.col[~test])), shape=coo.shape)
    return train, (coo.row[test], coo.col[test], coo.data[test])


def fit_curve(train: sp.csr_matrix, test: tuple[np.ndarray, ...], cfg: ALSConfig) -> dict[str, Any]:
    curve: list[float] = []

    def cb(step: int, f: Any) -> dict[str, Any]:
        curve.append(float(rating_metrics(f, *test)["rmse"]))
        return {}

    t0 = time.perf_counter()
    hist = ALS(cfg).fit(train, callback=cb).history
    secs = [h["seconds"] for h in hist]
    return {"test_rmse_by_sweep": curve, "test_rmse": curve[-1], "sweep_seconds": secs,
            "median_sweep_s": float(np.median(secs[1:] if len(secs) > 1 else secs)),
            "fit_s": time.perf_counter() - t0}


def reference_fit(train: sp.csr_matrix, test: tuple[np.ndarray, ...], cfg: ALSConfig) -> dict[str, Any]:
    """The same sweeps with the plain NumPy float64 solver (``solve_block_reference``)."""
    from factorflow.factors import FactorArrays
    from factorflow.models._solve import solve_block_reference
    from factorflow.models.als import init_factors, train_csr_parts

    by_user, by_item, mu = train_csr_parts(train)
    w, b, u, c = init_factors(cfg, *train.shape)
    args = (mu, cfg.reg, cfg.weighted, cfg.reg_bias)
    curve, secs = [], []
    for _ in range(cfg.sweeps):
        t0 = time.perf_counter()
        w, b, _ = solve_block_reference(by_user.indptr, by_user.indices, by_user.data, u, c, *args,
                                        reg_per_rating=cfg.reg_per_rating)
        u, c, _ = solve_block_reference(by_item.indptr, by_item.indices, by_item.data, w, b, *args,
                                        reg_per_rating=cfg.reg_per_rating)
        secs.append(time.perf_counter() - t0)
        curve.append(float(rating_metrics(FactorArrays(w, u, b, c, mu), *test)["rmse"]))
    return {"test_rmse_by_sweep": curve, "test_rmse": curve[-1], "sweep_seconds": secs,
            "median_sweep_s": float(np.median(secs[1:])), "fit_s": float(sum(secs))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("all", "small", "large", "solver"), default="all")
    ap.add_argument("--data-dir", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    result: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    result["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                         "loadavg_start": os.getloadavg()}
    result["defaults"] = {k: v for k, v in vars(ALSConfig()).items()}
    if args.part in ("all", "small"):
        rows = small(CANDIDATES)
        result["small"] = {"protocol": "ml-latest-small, random 80/20, seeds 0,1,2, all test rows", "rows": rows}
        print("ml-latest-small, random 80/20 (mean of seeds 0-2), rank 50")
        for r in rows:
            print(f"  {r['label']:<22} {r['mean_rmse']:.4f}   {np.round(r['rmse'], 4).tolist()}")
    if args.part in ("all", "large", "solver"):
        train, test = synthetic(args.data_dir)
        shape = {"users": train.shape[0], "items": train.shape[1], "train": int(train.nnz), "test": int(test[0].size),
                 "split": "random 10% (default_rng(0)), synthetic seed 0"}
    if args.part in ("all", "large"):
        rows = []
        print(f"20M shape ({shape['train']:,} train / {shape['test']:,} test), default rank and sweeps")
        for label, kw in CANDIDATES:
            r = {"label": label, "config": kw, **fit_curve(train, test, ALSConfig(**kw))}
            rows.append(r)
            print(f"  {label:<22} test RMSE {r['test_rmse']:.4f}  (best {min(r['test_rmse_by_sweep']):.4f}), "
                  f"{r['median_sweep_s']:.1f} s/sweep", flush=True)
        result["large"] = {"shape": shape, "rows": rows}
    if args.part in ("all", "solver"):
        rows = []
        print("20M shape, rank 64, 5 sweeps: Cholesky vs CG (defaults otherwise)")
        for label, kw in (("cholesky", {}), ("cg, 3 steps", {"solver": "cg", "cg_steps": 3}),
                          ("cg, 2 steps", {"solver": "cg", "cg_steps": 2}), ("NumPy reference", {})):
            cfg = ALSConfig(rank=64, sweeps=5, **kw)
            fit = reference_fit if label == "NumPy reference" else fit_curve
            r = {"label": label, "config": kw, **fit(train, test, cfg)}
            rows.append(r)
            print(f"  {label:<12} test RMSE {r['test_rmse']:.4f}, {r['median_sweep_s']:.2f} s/sweep", flush=True)
        result["solver"] = {"shape": shape, "rows": rows}
    result["machine"]["loadavg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
