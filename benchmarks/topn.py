"""Batch top-N and evaluation time against the float32 GEMM floor, at the MovieLens-20M shape.

    python benchmarks/topn.py                      # 138,493 users × 26,744 items, rank 64, 20M ratings
    python benchmarks/topn.py --users 20000 --before 075327a   # smaller, beside the code before the tiles

Data: the ratings of :func:`factorflow.data.synth.synthetic_matrix` (the generator of the
benchmarks' CSVs), split at random 90/10 into train (the seen items) and test; cached in
``benchmarks/data/``. Factors: a random rank-K table (users × K, items × K, float32; w·u with
std 0.6, biases as the generator's), μ = the train mean. The scores are random, not trained:
this measures time and memory, not quality.

Each measurement runs in its own child process (its peak RSS is its own), which first measures
the float32 GEMM rate (best of 3 square 2048³ products). The GEMM floor of scoring U users is
2·U·M·K FLOPs at that rate. **Products** is the same child making only the BLAS products of its
ranking (the same tiles on the same threads, or the old code's user blocks): the floor of exact
scoring with this BLAS.

- ``batch``: :func:`factorflow.serving.topn.recommend_all` for every user, top ``--n``, seen
  (train) items excluded, items with fewer than 5 train ratings not proposed: what
  ``pipeline.recommend.batch_recommend`` runs. Target: ≤ 2× the floor of all users.
- ``evaluate``: what ``pipeline.evaluate.evaluate_on_split`` computes, split into its parts:
  the relevance index (made once, shared by the three models), the model's held-out metrics
  (``evaluation.metrics.evaluate``: RMSE/MAE of the test ratings, warm/cold,
  precision/recall/NDCG@10 over every user with a relevant test rating), the train RMSE, and
  each baseline (fit, then the same held-out metrics). The split is not read from a store here.
  The step's total adds the parts, with the model's first (cold) run.
- ``before`` (with ``--before REV``): the same two runs with the code of git revision REV (each of
  :data:`BEFORE_MODULES` it has, loaded from ``git show``).

Writes ``benchmarks/results/topn.json`` (``--out``) and prints a table. Times are wall seconds
(``time.perf_counter``); CPU seconds are the child's user + system time (all threads); peak RSS
is the child's ``VmHWM`` while measuring, reset after loading (Linux ``/proc/self/clear_refs``;
``ru_maxrss`` would keep the parent's peak across ``exec``), the loaded data included.
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


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so :func:`_hwm_mb` measures from here (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


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


def gemm_rates() -> dict:
    """GFLOP/s of a square 2048³ float32 product, best of 3, per wall second and per CPU second (all
    threads: the CPU figure is less sensitive to load). The ranking's own products are timed apart."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2048, 2048), dtype=np.float32)
    square = [_rate(lambda: a @ a, 2 * 2048**3) for _ in range(3)]
    return {"square_gflops": max(r[0] for r in square) / 1e9,
            "square_gflops_per_cpu_s": max(r[1] for r in square) / 1e9}


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _rate(fn, flops: float) -> tuple[float, float]:
    """(FLOP per wall second, FLOP per CPU second) of one call."""
    t, c = time.perf_counter(), _cpu()
    fn()
    return flops / (time.perf_counter() - t), flops / max(_cpu() - c, 1e-9)


# --- children -------------------------------------------------------------------------------------


BEFORE_MODULES = {  # what --before loads from the old revision (if it has the file), under these names
    "factorflow.factors": "factorflow/factors.py", "factorflow._pair_scores": "factorflow/_pair_scores.py",
    "factorflow.serving._select": "factorflow/serving/_select.py",
    "factorflow.serving.topn": "factorflow/serving/topn.py",
    "factorflow.evaluation.metrics": "factorflow/evaluation/metrics.py",
    "factorflow.models.baselines": "factorflow/models/baselines.py",
}


def _modules(before: str | None):
    """(FactorArrays class, topn module, metrics module, baselines module): the current ones, or
    revision ``before``'s (each file of :data:`BEFORE_MODULES` it has, importing each other)."""
    sys.path.insert(0, str(ROOT))
    if not before:
        from factorflow.evaluation import metrics
        from factorflow.factors import FactorArrays
        from factorflow.models import baselines
        from factorflow.serving import topn

        return FactorArrays, topn, metrics, baselines
    tmp = Path(tempfile.mkdtemp(prefix="ff-before-"))
    alias = {mod: "ff_before_" + mod.rsplit(".", 1)[-1].lstrip("_") for mod in BEFORE_MODULES}
    sources = {}
    for mod, rel in BEFORE_MODULES.items():
        proc = subprocess.run(["git", "-C", str(ROOT), "show", f"{before}:{rel}"], capture_output=True, text=True)
        if proc.returncode == 0:
            sources[mod] = proc.stdout
    mods = {}
    for mod, src in sources.items():
        for other in sources:
            src = src.replace(f"from {other} import", f"from {alias[other]} import")
        (tmp / f"{alias[mod]}.py").write_text(src)
    sys.path.insert(0, str(tmp))
    for mod in sources:
        mods[mod] = importlib.import_module(alias[mod])
    return (mods["factorflow.factors"].FactorArrays, mods["factorflow.serving.topn"],
            mods["factorflow.evaluation.metrics"], mods["factorflow.models.baselines"])


_COMPILED = {}


def _tile_products():
    """``rank_rows`` without the selection (compiled once per process)."""
    if "tile_products" not in _COMPILED:
        from numba import njit

        from factorflow.serving._blas import NO_TRANS, ROW_MAJOR

        @njit(nogil=True)
        def tile_products(sgemm, w_all, rows, item_t, w, s_buf, width):
            m, k, n_items = rows.shape[0], w_all.shape[1], item_t.shape[1]
            for r in range(m):
                w[r] = w_all[rows[r]]
            for j0 in range(0, n_items, width):
                pw = min(width, n_items - j0)
                sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, m, pw, k, np.float32(1.0), w.ctypes.data, k,
                      item_t.ctypes.data + 4 * j0, n_items, np.float32(0.0), s_buf.ctypes.data, pw)

        _COMPILED["tile_products"] = tile_products
    return _COMPILED["tile_products"]


def products(topn, f, users: np.ndarray, block: int) -> None:
    """Only the BLAS products the ranking makes: its practical floor. Current code: the same
    tiles, the same ``cblas_sgemm`` calls from compiled code, on the same threads; code without
    tiles: its user blocks."""
    item_t = np.ascontiguousarray(f.item_factors.T, dtype=np.float32)
    if not hasattr(topn, "TILE_USERS"):
        buf = np.empty((block, f.item_factors.shape[0]), dtype=np.float32)
        for lo in range(0, len(users), block):
            who = users[lo:lo + block]
            np.matmul(f.user_factors[who], item_t, out=buf[:len(who)])
        return
    from factorflow.serving._blas import single_threaded_blas
    from factorflow.serving._select import run_tasks, threads

    tile_products = _tile_products()
    tu, width = topn.TILE_USERS, min(topn.TILE_ITEMS, item_t.shape[1])
    bufs = {}
    with single_threaded_blas() as blas:
        def tile_rows(sub: np.ndarray, task: int, slot: int) -> None:
            rows = sub[task * tu:(task + 1) * tu]
            w, s_buf = bufs.setdefault(slot, (np.empty((tu, f.rank), np.float32), np.empty(tu * width, np.float32)))
            tile_products(blas.sgemm, f.user_factors, rows, item_t, w[:len(rows)], s_buf, width)

        for lo in range(0, len(users), block):  # the blocks top_n_blocks yields, each shared out
            sub = users[lo:lo + block]
            run_tasks(lambda t, slot, sub=sub: tile_rows(sub, t, slot), -(-len(sub) // tu), threads())


def _timed(fn) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), _cpu()
    fn()
    return time.perf_counter() - t0, _cpu() - c0


def child(what: str, path: Path, rank: int, n: int, seed: int, before: str | None, repeat: int) -> dict:
    FactorArrays, topn, metrics, baselines = _modules(before)
    from factorflow.serving.candidates import candidate_mask

    train, test_u, test_i, test_r = load_data(path)
    n_users, n_items = train.shape
    f = FactorArrays(*random_tables(n_users, n_items, rank, float(train.data.mean()), seed))
    test = {"user_idx": test_u, "item_idx": test_i, "rating": test_r}
    test["cold_user"] = ~(np.diff(train.indptr) > 0)[test_u]
    test["cold_item"] = ~(np.bincount(train.indices, minlength=n_items) > 0)[test_i]
    shared = hasattr(metrics, "relevance")  # the relevance index made once for all models (evaluate_on_split)
    result = {}
    if what == "batch":
        allowed = candidate_mask(np.bincount(train.indices, minlength=n_items))
        users = np.arange(n_users)
        block = 8192 if hasattr(topn, "TILE_USERS") else max(1, min(2048, (1 << 24) // n_items))

        def work() -> None:
            result["table"] = topn.recommend_all(f, train, n, allowed=allowed)
    else:
        users = np.unique(test_u[test_r >= 4.0]).astype(np.int64)  # the users the top-N metrics rank
        block = 4096 if hasattr(topn, "TILE_USERS") else max(1, min(1024, (1 << 24) // n_items))

        def work() -> None:
            kw = {"prepared": result["relevance"]} if shared else {}
            result["metrics"] = metrics.evaluate(f, train, test, (0.5, 5.0), n=10, **kw)

        if shared:
            result["relevance_s"] = _timed(lambda: result.update(
                relevance=metrics.relevance(test_u, test_i, test_r)))[0]
    rss0, hwm0 = _rss_mb(), _hwm_mb()  # VmHWM, not ru_maxrss: that one keeps the parent's peak across exec
    reset = _reset_peak()
    rates = [gemm_rates()]
    products(topn, f, users[:1], block)  # compiled before it is timed
    runs, prods = [], []
    for _ in range(repeat):  # the first run is the one a retrain makes (cold); later ones are warm
        runs.append(_timed(work))
        prods.append(_timed(lambda: products(topn, f, users, block)))
    rates.append(gemm_rates())
    hwm = _hwm_mb() if reset else None
    square = max(r["square_gflops"] for r in rates) * 1e9  # the rate of the quieter moment
    square_cpu = max(r["square_gflops_per_cpu_s"] for r in rates) * 1e9
    flops = 2 * len(users) * n_items * rank
    out = {
        "what": what, "code": before or "current", "gemm": rates, "users_scored": int(len(users)),
        "flops": flops, "floor_s": flops / square, "cpu_floor_s": flops / square_cpu,
        "seconds": [w for w, _ in runs], "cpu_seconds": [c for _, c in runs],
        "products_s": [w for w, _ in prods], "products_cpu_s": [c for _, c in prods],
    }
    out["x_floor"] = out["seconds"][0] / out["floor_s"]
    out["best_x_floor"] = min(out["seconds"]) / out["floor_s"]
    out["best_x_products"] = min(out["seconds"]) / min(out["products_s"])
    out["cpu_x_cpu_floor"] = out["cpu_seconds"][0] / out["cpu_floor_s"]
    if what == "batch":
        table = result["table"]
        out["rows"] = table.num_rows
        out["users_with_recommendations"] = int(np.unique(table.column("user_idx").to_numpy()).size)
    else:
        held = result["metrics"]
        kw = {"prepared": result["relevance"]} if shared else {}
        if hasattr(metrics, "train_rating_metrics"):  # straight off the CSR
            out["train_rmse_s"] = _timed(lambda: metrics.train_rating_metrics(f, train))[0]
        else:
            tu = np.repeat(np.arange(n_users), np.diff(train.indptr))
            out["train_rmse_s"] = _timed(lambda: metrics.rating_metrics(f, tu, train.indices, train.data))[0]
            del tu
        base = {}
        for model in (baselines.GlobalMean(), baselines.BiasBaseline()):
            t0 = time.perf_counter()
            bf = model.fit(train).factors()
            t_fit = time.perf_counter() - t0
            t0 = time.perf_counter()
            m = metrics.evaluate(bf, train, test, (0.5, 5.0), n=10, **kw)
            base[model.kind] = {"fit_s": t_fit, "evaluate_s": time.perf_counter() - t0, "rmse": m["rmse"],
                                "ndcg@10": m["ndcg@10"]}
        out.update({
            "test_ratings": int(len(test_u)), "train_ratings": int(train.nnz), "baselines": base,
            "relevance_s": result.get("relevance_s", 0.0),
            "total_s": result.get("relevance_s", 0.0) + out["seconds"][0] + out["train_rmse_s"]
            + sum(b["fit_s"] + b["evaluate_s"] for b in base.values()),
            "metrics": {k: held[k] for k in ("rmse", "mae", "precision@10", "recall@10", "ndcg@10",
                                             "n_users_evaluated")},
        })
    out["rss_after_data_mb"] = rss0
    out["peak_rss_loading_mb"] = hwm0
    out["peak_rss_mb"] = hwm if hwm is not None else _hwm_mb()  # while measuring (the resident data included)
    return out


# --- driver ---------------------------------------------------------------------------------------


def run_child(args: argparse.Namespace, what: str, path: Path, before: str | None) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--data", str(path), "--rank", str(args.rank),
           "--n", str(args.n), "--seed", str(args.seed), "--repeat", str(args.repeat)] + (
        ["--before", before] if before else [])
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
    ap.add_argument("--repeat", type=int, default=2, help="runs of the measured call per child (first = cold)")
    ap.add_argument("--before", default=None, help="also run the code of this git revision (e.g. 027b3dd^)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "topn.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.data), args.rank, args.n, args.seed, args.before, args.repeat)))
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
    print("| run | code | users scored | floor s (square rate) | products s | seconds: first (best) "
          "| × floor: first (best) | best × products | CPU × CPU floor | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        rate = max(g["square_gflops"] for g in r["gemm"])
        name = (f"batch top-{args.n}" if r["what"] == "batch"
                else f"evaluate the model ({r['test_ratings']:,} test ratings)")
        hwm = r["peak_rss_mb"]
        print(f"| {name} | {r['code']} | {r['users_scored']:,} | {r['floor_s']:.2f} ({rate:.0f} GFLOP/s) | "
              f"{min(r['products_s']):.2f} | {r['seconds'][0]:.2f} ({min(r['seconds']):.2f}) | "
              f"{r['x_floor']:.2f} ({r['best_x_floor']:.2f}) | {r['best_x_products']:.2f} | "
              f"{r['cpu_x_cpu_floor']:.2f} | {hwm:,.0f} |")
        if r["what"] != "batch":
            extra = [f"relevance index {r['relevance_s']:.2f} s",
                     f"train RMSE ({r['train_ratings']:,} ratings) {r['train_rmse_s']:.2f} s"]
            extra += [f"{k}: fit {b['fit_s']:.2f} s, evaluate {b['evaluate_s']:.2f} s"
                      for k, b in r["baselines"].items()]
            print(f"|   + {'; '.join(extra)}; evaluate step (no split I/O) {r['total_s']:.2f} s "
                  f"| {r['code']} | | | | | | | | |")
    out = {"users": args.users, "items": args.items, "rank": args.rank, "ratings": ratings, "n": args.n,
           "runs": runs, "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
           "load_average": os.getloadavg()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
