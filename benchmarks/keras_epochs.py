"""Seconds per epoch, examples per second and peak RSS of the Keras kinds on MovieLens-20M-shaped data.

Each model trains in its own child process (so its peak RSS is its own) on the in-memory
synthetic ratings of :func:`factorflow.data.synth.synthetic_matrix` (the generator the
benchmarks' CSVs come from; default 20M ratings, 138,493 users × 26,744 items), with the kind's
``retrain`` defaults except ``--epochs``. Reported per model: the Keras backend and device, the
seconds of each epoch (data preparation excluded), examples per second (ratings for the pair
models; rows — items for I-AutoRec, users for U-AutoRec — and the ratings they carry for the
autoencoders), the train RMSE after each epoch, and the child's peak RSS.

    python benchmarks/keras_epochs.py [--rows 20000000] [--models keras-mf,i-autorec] [--epochs 2]
           [--require-gpu] [--check-loss] [--out benchmarks/results/keras_epochs.json]

``--require-gpu`` fails unless Keras trained on a GPU; ``--check-loss`` fails unless the train
RMSE fell from the first epoch to the last (``benchmarks/gpu_check.sh`` passes both). The
backend is Keras's: ``KERAS_BACKEND=jax`` selects JAX.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ML20M = (20_000_263, 138_493, 26_744)


def shape_for(rows: int) -> tuple[int, int]:
    """(users, items) scaled from the MovieLens-20M shape to ``rows`` ratings (as benchmarks/ingest.py)."""
    scale = rows / ML20M[0]
    return max(10, min(ML20M[1], round(ML20M[1] * scale))), max(100, min(ML20M[2], round(ML20M[2] * scale**0.5)))


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def child(kind: str, rows: int, epochs: int, seed: int) -> dict:
    """Train ``kind`` for ``epochs`` epochs (no early stop) and measure it."""
    sys.path.insert(0, str(ROOT))
    from factorflow.data.synth import synthetic_matrix
    from factorflow.models import registry
    from factorflow.models._keras_fit import accelerator

    users, items = shape_for(rows)
    t0 = time.perf_counter()
    train = synthetic_matrix(users, items, rows, seed)
    prepare = time.perf_counter() - t0
    config = registry.make_config(kind, {"epochs": epochs, "patience": epochs, "validation_fraction": 0.01})
    model = registry.make_model(config)
    t0 = time.perf_counter()
    model.fit(train)
    fit_seconds = time.perf_counter() - t0
    history = model.history
    secs = [h["seconds"] for h in history]
    autoencoder = "autorec" in kind
    n_rows = train.shape[1] if kind.startswith("i-") else train.shape[0]
    per_epoch = n_rows if autoencoder else train.nnz
    return {
        "kind": kind, "device": accelerator(), "n_users": users, "n_items": items, "nnz": int(train.nnz),
        "data_seconds": prepare, "fit_seconds": fit_seconds, "epoch_seconds": secs,
        "examples_per_second": [per_epoch / s for s in secs],
        "ratings_per_second": [train.nnz / s for s in secs],
        "example": ("item rows" if kind.startswith("i-") else "user rows") if autoencoder else "ratings",
        "train_rmse": [h.get("train_rmse") for h in history], "val_rmse": [h.get("val_rmse") for h in history],
        "params": model.params(), "peak_rss_mb": _peak_rss_mb(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--models", default="keras-mf,i-autorec")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--require-gpu", action="store_true", help="fail unless Keras trained on a GPU")
    ap.add_argument("--check-loss", action="store_true", help="fail unless the train RMSE fell")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "keras_epochs.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.epochs, args.seed)))
        return

    results, failures = [], []
    for kind in [k.strip() for k in args.models.split(",") if k.strip()]:
        cmd = [sys.executable, __file__, "--child", kind, "--rows", str(args.rows), "--epochs", str(args.epochs),
               "--seed", str(args.seed)]
        print(f"$ {' '.join(cmd[1:])}", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            failures.append(f"{kind}: exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
            print(proc.stderr[-3000:], file=sys.stderr)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        if args.require_gpu and "gpu" not in r["device"].lower() and "cuda" not in r["device"].lower():
            failures.append(f"{kind}: trained on {r['device']}, not a GPU")
        rmse = [x for x in r["train_rmse"] if x is not None]
        if args.check_loss and not (len(rmse) >= 2 and rmse[-1] < rmse[0]):
            failures.append(f"{kind}: train RMSE did not fall ({rmse})")

    print(f"\n{args.rows:,} ratings; {platform.node()}, {os.cpu_count()} cores")
    print("| model | device | s / epoch | examples / s | ratings / s | train RMSE by epoch | peak RSS MB |")
    print("|---|---|---:|---:|---:|---|---:|")
    for r in results:
        print(f"| {r['kind']} | {r['device']} | {', '.join(f'{s:.1f}' for s in r['epoch_seconds'])} | "
              f"{r['examples_per_second'][-1]:,.0f} {r['example']} | {r['ratings_per_second'][-1]:,.0f} | "
              f"{', '.join(f'{x:.4f}' for x in r['train_rmse'] if x is not None)} | {r['peak_rss_mb']:,.0f} |")
    out = {"rows": args.rows, "epochs": args.epochs, "models": results, "failures": failures,
           "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
           "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"), "load_average": os.getloadavg()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
