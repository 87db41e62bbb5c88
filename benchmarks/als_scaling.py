"""ALS sweep time and peak memory at 20M, 50M and 100M synthetic ratings: does it scale linearly?

For each size the ratings come from :func:`factorflow.data.synth.synthetic_chunks` — the generator
behind ``factorflow synth``, the same ratings its CSV would hold — streamed straight into a
users×items CSR (a 100M CSV would be 2.7 GB and slow to write and ingest, and
``synthetic_matrix`` keeps every chunk's float64 arrays alive, ~5 GB at 100M), and cut into
partition blocks by the flow's own code (:func:`factorflow.data.partitions.write_csr_partitions`,
``default_n_blocks`` blocks per side: 64 at all three sizes). The blocks are cached under
``benchmarks/data/als-scaling/`` (1.6 GB at 100M).

Each fit runs in its own subprocess, whose whole process tree (driver + LocalCluster workers) is
sampled for RSS:

* ``dask``: the path the retrain flow takes — a LocalCluster from
  :func:`factorflow.parallel.cluster.dask_client` (its defaults: workers, threads), the model from
  the registry (``als`` defaults with ``--rank`` and ``--sweeps``), and
  :func:`factorflow.parallel.block_driver.fit_blocks` on the partitions;
* ``inprocess`` (``--modes dask,inprocess``): the model's own ``fit`` on the CSR reassembled from
  the blocks, in one process.

Reported per size: the median sweep time after the first (the first includes compilation and
block loading effects), the prediction from the smallest size scaled linearly in the number of
ratings (``t₀·R/R₀``) and the ratio to it (target at 100M: ≤ 1.2), the prediction from the
FLOP model F = 2·nnz·K² + (N+M)·K³/3 for comparison, and the peak RSS of the tree against this
machine's memory.

Shape (``--shape``): ``scaled`` (default) grows users with the ratings and items with their
square root from the MovieLens-20M shape (138,493 × 26,744 at 20,000,263): a service grows by
users faster than by catalogue, and with users ∝ R the per-user degree distribution — and so the
per-rating and per-row work — stays the same, so a departure from linear time measures the
implementation (caches, memory traffic, Dask scatter/gather of the larger factor tables), not a
different workload. At 100M: 692,456 users × 59,801 items (50M: 346,228 × 42,286). ``fixed`` keeps 138,493 × 26,744
(every user 5× heavier at 100M: the same rows, denser).

    python benchmarks/als_scaling.py                                   # 20M, 50M, 100M at rank 64, Dask
    python benchmarks/als_scaling.py --ranks 64,10 --modes dask,inprocess
    python benchmarks/als_scaling.py --sizes 1000000,2000000 --ranks 10 --sweeps 3 --out /tmp/quick.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _proctree import run_sampled  # noqa: E402

ML20M_USERS, ML20M_ITEMS, ML20M_RATINGS = 138_493, 26_744, 20_000_263
DEFAULT_SIZES = (ML20M_RATINGS, 50_000_000, 100_000_000)
LINEAR_TARGET = 1.2


def shape_for(n_ratings: int, shape: str) -> tuple[int, int]:
    """(users, items) for ``n_ratings`` (module docstring)."""
    if shape == "fixed":
        return ML20M_USERS, ML20M_ITEMS
    s = n_ratings / ML20M_RATINGS
    return max(10, round(ML20M_USERS * s)), max(100, round(ML20M_ITEMS * s**0.5))


def synthetic_csr(n_users: int, n_items: int, n_ratings: int, seed: int):
    """The ``factorflow synth`` ratings (half stars as float32) as a CSR, 8 bytes per rating.

    The generator yields chunks of consecutive users, each grouped by user, so rows are written
    in place; only each row's column order needs sorting."""
    import numpy as np
    import scipy.sparse as sp

    from factorflow.data.synth import synthetic_chunks

    chunks = synthetic_chunks(n_users, n_items, n_ratings, seed)
    degrees = next(chunks)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(degrees, out=indptr[1:])
    indices = np.empty(n_ratings, dtype=np.int32)
    data = np.empty(n_ratings, dtype=np.float32)
    pos = 0
    for owner, items, stars, _signal, _ts in chunks:
        k = owner.size
        assert owner[0] >= 0 and indptr[owner[0]] == pos, "chunks are not consecutive users"
        indices[pos : pos + k] = items
        data[pos : pos + k] = stars / 2.0
        pos += k
    assert pos == n_ratings == indptr[-1]
    idx = np.int32 if n_ratings < np.iinfo(np.int32).max else np.int64
    m = sp.csr_matrix((data, indices, indptr.astype(idx)), shape=(n_users, n_items))
    m.sort_indices()
    return m


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- children


def child_prepare(args: argparse.Namespace) -> dict:
    from factorflow.data.partitions import default_n_blocks, write_csr_partitions

    users, items = shape_for(args.ratings, args.shape)
    t0 = time.perf_counter()
    m = synthetic_csr(users, items, args.ratings, args.seed)
    generated = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = write_csr_partitions(args.folder, f"synthetic-{args.ratings}", m, default_n_blocks(m.nnz))
    return {"path": ref.path, "users": users, "items": items, "nnz": int(m.nnz), "n_blocks": ref.n_blocks,
            "generate_seconds": generated, "partition_seconds": time.perf_counter() - t0,
            "peak_rss_mb": _peak_rss_mb()}


def child_fit(args: argparse.Namespace) -> dict:
    from factorflow.models.registry import make_config, make_model
    from factorflow.storage.partitions import load_block, load_partitions

    parts = load_partitions(args.parts)
    model = make_model(make_config("als", {"rank": args.rank, "sweeps": args.sweeps}))
    out: dict = {"mode": args.mode, "params": model.params()}
    if args.mode == "dask":
        from factorflow.parallel.block_driver import fit_blocks
        from factorflow.parallel.cluster import dask_client

        t0 = time.perf_counter()
        with dask_client(None, args.workers) as client:
            info = client.scheduler_info()["workers"]
            out["cluster_start_seconds"] = time.perf_counter() - t0
            out["workers"] = len(info)
            out["threads_per_worker"] = sorted({w.get("nthreads") for w in info.values()})
            t0 = time.perf_counter()
            _, history = fit_blocks(client, parts, model)
            out["fit_seconds"] = time.perf_counter() - t0
    else:
        from factorflow.storage.partitions import assemble

        t0 = time.perf_counter()
        m = assemble([load_block(parts.path, "user", b) for b in range(len(parts.manifest["user"]))])
        out["load_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.fit(m)
        out["fit_seconds"] = time.perf_counter() - t0
        history = model.history
    out["sweep_seconds"] = [float(r["seconds"]) for r in history]
    out["train_rmse"] = [float(r["train_rmse"]) for r in history]
    out["driver_peak_rss_mb"] = _peak_rss_mb()
    return out


# ---------------------------------------------------------------- driver


def _child(argv: list[str], log_dir: Path, sample_s: float) -> tuple[dict, dict]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv]
    proc = run_sampled(cmd, None, log_dir, sample_s)
    if proc["returncode"] != 0:
        sys.stderr.write((log_dir / "stderr.txt").read_text()[-4000:])
        raise SystemExit(f"{' '.join(argv)} exited with {proc['returncode']} (logs in {log_dir})")
    return json.loads((log_dir / "stdout.txt").read_text().strip().splitlines()[-1]), proc


def ensure_partitions(data_dir: Path, n: int, shape: str, seed: int, log_dir: Path) -> dict:
    folder = data_dir / "als-scaling" / f"{shape}-{n}-s{seed}"
    info = folder / "prepared.json"
    if info.exists():
        return json.loads(info.read_text())
    users, items = shape_for(n, shape)
    print(f"generating and partitioning {n:,} ratings ({users:,} users × {items:,} items) in {folder} ...",
          flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    res, proc = _child(["--child", "prepare", "--ratings", str(n), "--shape", shape, "--seed", str(seed),
                        "--folder", str(folder)], log_dir, 0.5)
    res["prepare_wall_seconds"] = proc["ended"] - proc["started"]
    print(f"  {res['generate_seconds']:.0f} s generating, {res['partition_seconds']:.0f} s partitioning, "
          f"peak RSS {res['peak_rss_mb']:,.0f} MB", flush=True)
    info.write_text(json.dumps(res, indent=2) + "\n")
    return res


def flops(nnz: int, users: int, items: int, k: int) -> float:
    """Per-sweep FLOPs of exact ALS: Gram matrices 2·nnz·K² and Cholesky (N+M)·K³/3 (the issue's model)."""
    return 2.0 * nnz * k * k + (users + items) * k**3 / 3.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="ratings per run, comma-separated")
    p.add_argument("--ranks", default="64", help="comma-separated (e.g. 64,10)")
    p.add_argument("--sweeps", type=int, default=4, help="sweeps per fit (median over all but the first)")
    p.add_argument("--modes", default="dask", help="dask and/or inprocess, comma-separated")
    p.add_argument("--workers", type=int, default=None, help="LocalCluster workers (default: the flow's default)")
    p.add_argument("--shape", choices=("scaled", "fixed"), default="scaled")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=str(HERE / "data"))
    p.add_argument("--sample-s", type=float, default=0.5, help="RSS sampling interval")
    p.add_argument("--out", default=str(HERE / "results" / "als_scaling.json"))
    p.add_argument("--child", choices=("prepare", "fit"), help=argparse.SUPPRESS)
    p.add_argument("--ratings", type=int, help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--parts", help=argparse.SUPPRESS)
    p.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child_prepare(args) if args.child == "prepare" else child_fit(args)))
        return 0

    import psutil

    sizes = sorted(int(s) for s in args.sizes.split(","))
    ranks = [int(k) for k in args.ranks.split(",")]
    modes = [m.strip() for m in args.modes.split(",")]
    if not set(modes) <= {"dask", "inprocess"} or args.sweeps < 2:
        raise SystemExit("--modes takes dask,inprocess; --sweeps must be ≥ 2 (the first is not timed)")
    total_mb = psutil.virtual_memory().total / 2**20
    data_dir = Path(args.data_dir)
    logs = Path(tempfile.mkdtemp(prefix="als-scaling-logs-"))
    prepared = {n: ensure_partitions(data_dir, n, args.shape, args.seed, logs) for n in sizes}
    runs = []
    for k in ranks:
        for mode in modes:
            for n in sizes:
                prep = prepared[n]
                load = os.getloadavg()[0]
                print(f"rank {k}, {mode}, {n:,} ratings (load {load:.1f}) ...", flush=True)
                res, proc = _child(["--child", "fit", "--parts", prep["path"], "--rank", str(k), "--sweeps",
                                    str(args.sweeps), "--mode", mode]
                                   + (["--workers", str(args.workers)] if args.workers else []), logs, args.sample_s)
                sweeps = res["sweep_seconds"]
                runs.append({"ratings": n, "users": prep["users"], "items": prep["items"], "rank": k, "mode": mode,
                             "sweep_median_s": statistics.median(sweeps[1:]), "first_sweep_s": sweeps[0],
                             "flops_per_sweep": flops(prep["nnz"], prep["users"], prep["items"], k),
                             "load_before": load, **res,
                             **{key: v for key, v in proc.items() if key.startswith("peak_")}})
    for k in ranks:
        for mode in modes:
            rows = [r for r in runs if r["rank"] == k and r["mode"] == mode]
            base = rows[0]
            for r in rows:
                r["linear_prediction_s"] = base["sweep_median_s"] * r["ratings"] / base["ratings"]
                r["ratio_to_linear"] = r["sweep_median_s"] / r["linear_prediction_s"]
                r["flop_prediction_s"] = base["sweep_median_s"] * r["flops_per_sweep"] / base["flops_per_sweep"]
                r["fits_memory"] = r["peak_rss_tree_mb"] < total_mb
    largest = [r for r in runs if r["ratings"] == sizes[-1]]
    result = {
        "command": "python benchmarks/als_scaling.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "shape": args.shape, "sweeps": args.sweeps, "seed": args.seed, "runs": runs,
        "prepared": {str(n): v for n, v in prepared.items()},
        "target": {"ratio_to_linear_max": LINEAR_TARGET, "at_ratings": sizes[-1],
                   "met": all(r["ratio_to_linear"] <= LINEAR_TARGET and r["fits_memory"] for r in largest)},
        "machine": {"cpus": os.cpu_count(), "memory_mb": total_mb, "platform": platform.platform(),
                    "python": platform.python_version()},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"\nALS sweep time vs size ({args.shape} shape; median of sweeps 2..{args.sweeps}; "
          f"machine {os.cpu_count()} CPUs, {total_mb / 1024:.1f} GiB)")
    print(f"{'rank':>4} {'mode':<9} {'ratings':>12} {'users':>9} {'items':>7} {'sweep s':>8} {'linear s':>9} "
          f"{'ratio':>6} {'FLOP-model s':>12} {'peak RSS MB':>12} {'load':>5}")
    for r in runs:
        print(f"{r['rank']:>4} {r['mode']:<9} {r['ratings']:>12,} {r['users']:>9,} {r['items']:>7,} "
              f"{r['sweep_median_s']:8.2f} {r['linear_prediction_s']:9.2f} {r['ratio_to_linear']:6.2f} "
              f"{r['flop_prediction_s']:12.2f} {r['peak_rss_tree_mb']:12,.0f} {r['load_before']:5.1f}")
    print(f"target at {sizes[-1]:,}: ratio ≤ {LINEAR_TARGET} and peak RSS < {total_mb:,.0f} MB: "
          f"{'met' if result['target']['met'] else 'NOT met'}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {args.out}")
    shutil.rmtree(logs, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
