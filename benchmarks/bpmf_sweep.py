"""Seconds per Gibbs sweep of BPMF beside the ALS sweep, on the Dask block driver.

Both models run through the same driver (``parallel/block_driver.fit_blocks``) on the same
partitions of a synthetic MovieLens-20M-shaped dataset (``benchmarks/ingest.py``'s generator,
cached under ``benchmarks/data/``), on a LocalCluster of ``--workers`` worker processes. A BPMF
sweep is a Normal–Wishart draw per side on the driver plus one conditional draw per row (Gram
accumulation, Cholesky, two triangular solves); an ALS sweep is one exact solve per row. Per-
sweep seconds are the median over ``--sweeps`` sweeps, the first (numba compilation, block
loading) excluded. Goal: the BPMF sweep ≤ 1.5× the ALS sweep.

    python benchmarks/bpmf_sweep.py [--rows 20000000] [--rank 32] [--workers 2] [--sweeps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    from ingest import ensure_csv  # the benchmarks' cached synthetic generator

    from factorflow.data.ingest import ingest_source
    from factorflow.data.partitions import build_partitions
    from factorflow.data.splits import make_split
    from factorflow.models.als import ALS, ALSConfig
    from factorflow.models.bpmf import BPMF, BPMFConfig
    from factorflow.parallel.block_driver import fit_blocks
    from factorflow.parallel.cluster import dask_client

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sweeps", type=int, default=4, help="sweeps per model (the first is not counted)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bpmf_sweep.json"))
    args = ap.parse_args()

    csv = ensure_csv(str(ROOT / "benchmarks" / "data"), args.rows)
    with tempfile.TemporaryDirectory() as store:
        t0 = time.perf_counter()
        split = make_split(ingest_source(csv, store, "synthetic"), "random", test_fraction=0.2, seed=0)
        parts = build_partitions(split)
        print(f"prepared {split.manifest['n_train']:,} train ratings in {parts.n_blocks} blocks per side "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        models = {
            "als": ALS(ALSConfig(rank=args.rank, sweeps=args.sweeps)),
            "bpmf": BPMF(BPMFConfig(rank=args.rank, init_sweeps=0, burn_in=0, samples=args.sweeps, max_kept=1)),
        }
        rows = []
        with dask_client(n_workers=args.workers) as client:
            for name, model in models.items():
                _, history = fit_blocks(client, parts, model)
                secs = [h["seconds"] for h in history]
                rows.append({"model": name, "sweep_seconds": statistics.median(secs[1:]), "all_sweeps": secs,
                             "train_rmse": history[-1]["train_rmse"]})
                print(f"{name:5s} median sweep {rows[-1]['sweep_seconds']:.2f} s  (sweeps: "
                      f"{', '.join(f'{s:.1f}' for s in secs)})", flush=True)
    ratio = rows[1]["sweep_seconds"] / rows[0]["sweep_seconds"]
    print(f"\n| model | s / sweep (K={args.rank}, {args.workers} workers) |\n|---|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['sweep_seconds']:.2f} |")
    print(f"\nBPMF / ALS = {ratio:.2f} (goal <= 1.5)")
    result = {"rows": args.rows, "rank": args.rank, "workers": args.workers, "n_train": split.manifest["n_train"],
              "n_blocks": parts.n_blocks, "models": rows, "bpmf_over_als": ratio,
              "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
              "load_average": os.getloadavg()}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
