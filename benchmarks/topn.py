"""Batch top-N and evaluation time against the float32 GEMM floor, at the MovieLens-20M shape.

    python benchmarks/topn.py                      # 138,493 users × 26,744 items, rank 64, 20M ratings
    python benchmarks/topn.py --users 20000 --ratings 2900000 --before 027b3dd^   # smaller, with the old code

Data: the ratings of :func:`factorflow.data.synth.synthetic_matrix` (the generator of the
benchmarks' CSVs), split at random 90/10 into train (the seen items) and test; cached in
``benchmarks/data/``. Factors: a random rank-K table (users × K, items × K, float32; w·u with
std 0.6, biases as the generator's), μ = the train mean. The scores are random, not trained:
this measures time and memory, not quality.

Each measurement runs in its own child process (its peak RSS is its own), which first measures
the float32 GEMM rate (best of 3 square 2048³ products; also the rate of the product a batch
block makes). The GEMM floor of scoring U users is 2·U·M·K FLOPs at that rate.

- ``batch``: :func:`factorflow.serving.topn.recommend_all` for every user, top ``--n``, seen
  (train) items excluded, items with fewer than 5 train ratings not proposed: what
  ``pipeline.recommend.batch_recommend`` runs. Target: ≤ 2× the floor of all users.
- ``evaluate``: what ``pipeline.evaluate.evaluate_on_split`` computes, split into its parts:
  the model's held-out metrics (``evaluation.metrics.evaluate``: RMSE/MAE of the test ratings,
  warm/cold, precision/recall/NDCG@10 over every user with a relevant test rating; target
  ≈ 1.2× the floor of those users), the train RMSE, and each baseline (fit, then the same
  held-out metrics). The split is not read from a store here.
- ``before`` (with ``--before REV``): the same two runs with the code of git revision REV
  (its ``factors.py``, ``serving/topn.py`` and ``evaluation/metrics.py`` loaded from ``git show``).

Writes ``benchmarks/results/topn.json`` (``--out``) and prints a table. Times are wall seconds
(``time.perf_counter``); peak RSS is the child's ``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
ML20M = (138_493, 26_744, 20_000_263)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# --- data -----------------------------------------------------------------------------------------


def data_path(users: int, items: int, ratings: int, seed: int) -> Path:
    return DATA / f"topn-{users}x{items}-{ratings}-s{seed}.npz"


def make_data(users: int, items: int, ratings: int, seed: int) -> Path:
    """Generate (once) the train CSR and the test triples; returns the cache file."""
    path = data_path(users, items, ratings, seed)
    if path.exists():
        return path
    sys.path.insert(0, str(ROOT))
    from factorflow.data.synth import synthetic_matrix

    t0 = time.perf_counter()
    m = synthetic_matrix(users, items, ratings, seed).tocoo()
    test = np.random.default_rng(seed + 1).random(m.nnz) < 0.1
    keep = ~test
    import scipy.sparse as sp

    train = sp.csr_matrix((m.data[keep], (m.row[keep], m.col[keep])), shape=m.shape)
    DATA.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, indptr=train.indptr, indices=train.indices, data=train.data, shape=np.array(m.shape),
             test_u=m.row[test].astype(np.int32), test_i=m.col[test].astype(np.int32),
             test_r=m.data[test].astype(np.float32))
    tmp.replace(path)
    print(f"generated {path.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def load_data(path: Path):
    import scipy.sparse as sp

    z = np.load(path)
    train = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
    train.has_sorted_indices = True
    return train, z["test_u"], z["test_i"], z["test_r"]


def random_tables(n_users: int, n_items: int, rank: int, mu: float, seed: int) -> tuple:
    """(W, U, b, c, μ) float32: w·u with std 0.6, b ~ N(0, 0.35²), c ~ N(0, 0.45²)."""
    rng = np.random.default_rng(seed)
    s = np.float32((0.6**2 / rank) ** 0.25)
    w = rng.standard_normal((n_users, rank), dtype=np.float32) * s
    v = rng.standard_normal((n_items, rank), dtype=np.float32) * s
    b = (rng.standard_normal(n_users) * 0.35).astype(np.float32)
    c = (rng.standard_normal(n_items) * 0.45).astype(np.float32)
    return w, v, b, c, mu


# --- the GEMM rate --------------------------------------------------------------------------------


def gemm_rates(n_items: int, rank: int, block: int) -> dict:
    """GFLOP/s of a square 2048³ float32 product and of one batch block (block × K × M), best of 3."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2048, 2048), dtype=np.float32)
    square = max(_rate(lambda: a @ a, 2 * 2048**3) for _ in range(3))
    w = rng.standard_normal((block, rank), dtype=np.float32)
    vt = np.ascontiguousarray(rng.standard_normal((rank, n_items), dtype=np.float32))
    out = np.empty((block, n_items), dtype=np.float32)
    shaped = max(_rate(lambda: np.matmul(w, vt, out=out), 2 * block * rank * n_items) for _ in range(3))
    return {"square_gflops": square / 1e9, "block_gflops": shaped / 1e9, "block_shape": [block, rank, n_items]}


def _rate(fn, flops: float) -> float:
    t = time.perf_counter()
    fn()
    return flops / (time.perf_counter() - t)


# --- children -------------------------------------------------------------------------------------


def _modules(before: str | None):
    """(FactorArrays class, topn module, metrics module): the current ones, or revision ``before``'s."""
    sys.path.insert(0, str(ROOT))
    if not before:
        from factorflow.evaluation import metrics
        from factorflow.factors import FactorArrays
        from factorflow.serving import topn

        return FactorArrays, topn, metrics
    tmp = Path(tempfile.mkdtemp(prefix="ff-before-"))
    mods = {}
    for name, rel in (("ff_before_factors", "factorflow/factors.py"), ("ff_before_topn", "factorflow/serving/topn.py"),
                      ("ff_before_metrics", "factorflow/evaluation/metrics.py")):
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{before}:{rel}"], capture_output=True, text=True,
                             check=True).stdout
        src = src.replace("from factorflow.serving.topn import top_n_blocks", "from ff_before_topn import top_n_blocks")
        (tmp / f"{name}.py").write_text(src)
        spec = importlib.util.spec_from_file_location(name, tmp / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        mods[name] = mod
    return mods["ff_before_factors"].FactorArrays, mods["ff_before_topn"], mods["ff_before_metrics"]


def child(what: str, path: Path, rank: int, n: int, seed: int, before: str | None) -> dict:
    FactorArrays, topn, metrics = _modules(before)
    from factorflow.serving.candidates import candidate_mask

    train, test_u, test_i, test_r = load_data(path)
    n_users, n_items = train.shape
    f = FactorArrays(*random_tables(n_users, n_items, rank, float(train.data.mean()), seed))
    block = max(1, min(2048, (1 << 24) // n_items))
    rates = gemm_rates(n_items, rank, block)
    flop_rate = rates["square_gflops"] * 1e9
    floor_all = 2 * n_users * n_items * rank / flop_rate
    out = {"what": what, "code": before or "current", "gemm": rates, "floor_all_users_s": floor_all}
    rss0 = _rss_mb()
    if what == "batch":
        allowed = candidate_mask(np.bincount(train.indices, minlength=n_items))
        t0 = time.perf_counter()
        table = topn.recommend_all(f, train, n, allowed=allowed)
        out["seconds"] = time.perf_counter() - t0
        out["rows"] = table.num_rows
        out["users"] = int(np.unique(table.column("user_idx").to_numpy()).size)
        out["x_floor"] = out["seconds"] / floor_all
    else:
        test = {"user_idx": test_u, "item_idx": test_i, "rating": test_r}
        seen_u = np.diff(train.indptr) > 0
        seen_i = np.bincount(train.indices, minlength=n_items) > 0
        test["cold_user"], test["cold_item"] = ~seen_u[test_u], ~seen_i[test_i]
        eval_users = int(np.unique(test_u[test_r >= 4.0]).size)
        floor_eval = 2 * eval_users * n_items * rank / flop_rate
        t0 = time.perf_counter()
        held = metrics.evaluate(f, train, test, (0.5, 5.0), n=10)
        t_model = time.perf_counter() - t0
        tu = np.repeat(np.arange(n_users), np.diff(train.indptr))
        t0 = time.perf_counter()
        train_rmse = metrics.rating_metrics(f, tu, train.indices, train.data)["rmse"]
        t_train = time.perf_counter() - t0
        del tu
        from factorflow.models.baselines import BiasBaseline, GlobalMean

        base = {}
        for model in (GlobalMean(), BiasBaseline()):
            t0 = time.perf_counter()
            bf = model.fit(train).factors()
            t_fit = time.perf_counter() - t0
            if before:  # the old module's own class, so its old scoring runs
                bf = FactorArrays(bf.user_factors, bf.item_factors, bf.user_bias, bf.item_bias, bf.global_mean)
            t0 = time.perf_counter()
            m = metrics.evaluate(bf, train, test, (0.5, 5.0), n=10)
            base[model.kind] = {"fit_s": t_fit, "evaluate_s": time.perf_counter() - t0, "rmse": m["rmse"],
                                "ndcg@10": m["ndcg@10"]}
        out.update({
            "eval_users": eval_users, "test_ratings": int(len(test_u)), "train_ratings": int(train.nnz),
            "floor_eval_users_s": floor_eval,
            "model_evaluate_s": t_model, "x_floor": t_model / floor_eval, "train_rmse_s": t_train,
            "baselines": base,
            "total_s": t_model + t_train + sum(b["fit_s"] + b["evaluate_s"] for b in base.values()),
            "metrics": {k: held[k] for k in ("rmse", "mae", "precision@10", "recall@10", "ndcg@10",
                                             "n_users_evaluated")},
            "train_rmse": train_rmse,
        })
    out["rss_after_data_mb"] = rss0
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


# --- driver ---------------------------------------------------------------------------------------


def run_child(args: argparse.Namespace, what: str, path: Path, before: str | None) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--data", str(path), "--rank", str(args.rank),
           "--n", str(args.n), "--seed", str(args.seed)] + (["--before", before] if before else [])
    print(f"$ {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"child {what} ({before or 'current'}) exited {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=ML20M[0])
    ap.add_argument("--items", type=int, default=ML20M[1])
    ap.add_argument("--ratings", type=int, default=None, help="default: 20M scaled by users")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="batch,evaluate", help="which of batch,evaluate to run")
    ap.add_argument("--before", default=None, help="also run the code of this git revision (e.g. 027b3dd^)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "topn.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.data), args.rank, args.n, args.seed, args.before)))
        return

    ratings = args.ratings or round(ML20M[2] * args.users / ML20M[0])
    path = make_data(args.users, args.items, ratings, args.seed)
    runs = []
    for what in [w.strip() for w in args.only.split(",") if w.strip()]:
        runs.append(run_child(args, what, path, None))
        if args.before:
            runs.append(run_child(args, what, path, args.before))

    print(f"\n{args.users:,} users × {args.items:,} items, rank {args.rank}, {ratings:,} ratings (90/10 split); "
          f"{platform.node()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print("| run | code | GEMM GFLOP/s (square / block) | floor s | seconds | × floor | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in runs:
        g = r["gemm"]
        rate = f"{g['square_gflops']:.1f} / {g['block_gflops']:.1f}"
        if r["what"] == "batch":
            print(f"| batch top-{args.n}, all {r['users']:,} users | {r['code']} | {rate} | "
                  f"{r['floor_all_users_s']:.2f} | {r['seconds']:.2f} | {r['x_floor']:.2f} | {r['peak_rss_mb']:,.0f} |")
        else:
            print(f"| evaluate the model ({r['test_ratings']:,} test ratings, {r['eval_users']:,} users ranked) | "
                  f"{r['code']} | {rate} | {r['floor_eval_users_s']:.2f} | {r['model_evaluate_s']:.2f} | "
                  f"{r['x_floor']:.2f} | {r['peak_rss_mb']:,.0f} |")
            print(f"| + train RMSE ({r['train_ratings']:,} ratings) | {r['code']} | | | {r['train_rmse_s']:.2f} | | |")
            for kind, b in r["baselines"].items():
                print(f"| + baseline {kind}: fit / evaluate | {r['code']} | | | {b['fit_s']:.2f} / "
                      f"{b['evaluate_s']:.2f} | | |")
            print(f"| evaluate step total (no split I/O) | {r['code']} | | | {r['total_s']:.2f} | | |")
    out = {"users": args.users, "items": args.items, "rank": args.rank, "ratings": ratings, "n": args.n,
           "runs": runs, "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
           "load_average": os.getloadavg()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
