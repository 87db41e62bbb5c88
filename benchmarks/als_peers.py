"""ALS against peers: factorflow (Dask and in-process), LensKit biased ALS and Spark MLlib ALS, side by side.

Data (cached under --data-dir, keyed by size and seed, so a re-run skips it): a synthetic
MovieLens-20M-shaped CSV from ``factorflow.data.synth`` (``--ratings`` N, default 20,000,263:
138,493 users × 26,744 items, scaled down for smaller N as ``benchmarks/ingest.py`` does), ingested
into a store under ``als_peers/``, split ``random-f0.1-s0`` (a seeded random 90/10 split) and
partitioned as the retrain flow does (``default_n_blocks`` blocks per side). Every contender
trains on that split's ``train.parquet`` and is scored on its ``test.parquet`` — the same rows.

Contenders, each in its own subprocess, interleaved per rank (ff-dask, lenskit, spark,
ff-inprocess), all for ``--sweeps`` S sweeps (default 5) at the same rank:

* ``ff-dask``: the flow's code path: ``fit_blocks(client, partitions, ALS(ALSConfig(...)))`` on the
  LocalCluster that ``factorflow.parallel.cluster.dask_client`` starts (one worker process per core);
* ``ff-inprocess``: the same model's serial fit, ``ALS(cfg).fit(train_csr)`` (``fit_serial``), in
  one process — the Dask overhead printed is ff-dask sweep / ff-inprocess sweep;
* ``lenskit``: LensKit's ``BiasedMFScorer`` (``lenskit.als``; in 2025.x its ALS half-epochs are a
  Rust kernel, ``lenskit._accel.als``, parallel over rows; biases are a damped mean model learned
  once before the epochs, λ scaled by each row's count). Per-sweep seconds come from LensKit's own
  epoch loop: the trainer's ``train_epoch()`` timed one by one;
* ``spark``: Spark MLlib ``pyspark.ml.recommendation.ALS`` on ``--spark-master`` (default
  ``local[2]``), unbiased (ALS-WR: regParam × each row's count), fit on the raw ratings. Spark has
  no epoch hook, so after an untimed warm-up fit (maxIter=1: class loading, JIT), it fits with
  maxIter=1 and with maxIter=S and takes per-sweep = (t_S − t_1)/(S − 1) (a fit materializes its
  factors, so each t is set-up + its sweeps); RMSE is of the maxIter=S model.

Per-sweep seconds for factorflow and LensKit: the median of the per-sweep times after the first
(the first carries JIT compilation and warm-up). Test RMSE: predictions clipped to the rating range;
a test row whose user or item has no factors gets what the model knows (μ + known biases; Spark:
the train mean). Peak RSS: the largest sum of RSS over the subprocess and all its descendants
(Dask's worker processes, Spark's JVM), sampled every 0.2 s (shared pages count once per process,
so it is an upper bound); the child's own ``ru_maxrss`` is recorded too.

The float32 GEMM rate (numpy matmul of a square float32 matrix, all cores) is measured in the same
run, before and after the contenders; the FLOP floor per sweep is
F = 2·nnz·K² + (N+M)·K³/3 FLOPs at the higher of the two rates. Ratios printed: factorflow /
LensKit and factorflow / floor (per sweep), and the Dask overhead.

factorflow runs under this interpreter; the peers under ``--bench-python`` (default
``.venv-bench/bin/python``, made by ``python -m venv .venv-bench && .venv-bench/bin/pip install -e
'.[bench]'``). A missing peer is reported in one line and skipped.

    python benchmarks/als_peers.py                               # 20M, ranks 10,64, lenskit + spark
    python benchmarks/als_peers.py --ratings 1000000 --peers lenskit,spark
    nice -n 5 python benchmarks/als_peers.py --peers lenskit     # skip Spark (10+ min at rank 64)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ML20M_RATINGS = 20_000_263
SPLIT = {"kind": "random", "test_fraction": 0.1, "seed": 0}
PEERS = ("lenskit", "spark")
FF = ("ff-dask", "ff-inprocess")
INSTALL_HINT = "python -m venv .venv-bench && .venv-bench/bin/pip install -e '.[bench]'"
SAMPLE_S = 0.2


# ---------------------------------------------------------------- small helpers


def _peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    kb = resource.getrusage(who).ru_maxrss  # kB on Linux
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def _median(xs: list[float]) -> float | None:
    xs = sorted(xs)
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def per_sweep(seconds: list[float]) -> float | None:
    """Median of the per-sweep seconds after the first (the first carries JIT compile and warm-up);
    the only sweep's time when there is one."""
    return _median(seconds[1:]) if len(seconds) > 1 else (seconds[0] if seconds else None)


def flop_floor(nnz: int, n_users: int, n_items: int, rank: int) -> float:
    """FLOPs of one ALS sweep at the least: 2·nnz·K² (Gram updates) + (N+M)·K³/3 (Cholesky)."""
    return 2.0 * nnz * rank**2 + (n_users + n_items) * rank**3 / 3.0


def _rmse(pred: Any, truth: Any, lo: float, hi: float) -> float:
    import numpy as np

    err = np.clip(np.asarray(pred, dtype=np.float64), lo, hi) - np.asarray(truth, dtype=np.float64)
    return float(np.sqrt(np.mean(err * err)))


def _read_split_arrays(path: str) -> tuple[Any, Any, Any]:
    """(user_idx int32, item_idx int32, rating float32) of a split part's Parquet file."""
    import numpy as np
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["user_idx", "item_idx", "rating"])
    return (t.column("user_idx").to_numpy().astype(np.int32, copy=False),
            t.column("item_idx").to_numpy().astype(np.int32, copy=False),
            t.column("rating").to_numpy().astype(np.float32, copy=False))


# ---------------------------------------------------------------- children: data and GEMM


def child_prep(args: argparse.Namespace) -> dict[str, Any]:
    """CSV → store → split → partitions, each reused when already there; returns their paths."""
    sys.path.insert(0, HERE)
    from ingest import ensure_csv  # benchmarks/ingest.py: the cached synthetic CSV

    from factorflow.data.ingest import ingest_source
    from factorflow.data.partitions import build_partitions
    from factorflow.data.splits import make_split
    from factorflow.storage import layout

    t0 = time.perf_counter()
    csv = ensure_csv(args.data_dir, args.ratings, args.seed)
    with open(csv + ".json") as f:
        sidecar = json.load(f)
    store = os.path.join(args.data_dir, "als_peers", f"store-{args.ratings}-s{args.seed}")
    timings = {"csv": time.perf_counter() - t0}
    t = time.perf_counter()
    snap = ingest_source(csv, store, "synthetic")
    timings["ingest"] = time.perf_counter() - t
    t = time.perf_counter()
    split = make_split(snap, SPLIT["kind"], test_fraction=SPLIT["test_fraction"], seed=SPLIT["seed"])
    timings["split"] = time.perf_counter() - t
    t = time.perf_counter()
    parts = build_partitions(split)
    timings["partition"] = time.perf_counter() - t
    m = split.manifest
    return {
        "csv": csv, "csv_bytes": os.path.getsize(csv), "store": store, "snapshot": snap.snapshot,
        "reused": {"snapshot": snap.reused, "partitions": parts.reused},
        "split": split.split, "split_path": split.path,
        "train_file": layout.split_train_file(split.path), "test_file": layout.split_test_file(split.path),
        "partitions": parts.path, "n_blocks": parts.n_blocks,
        "n_users": int(m["n_users"]), "n_items": int(m["n_items"]),
        "n_train": int(parts.manifest["nnz"]), "n_test": int(m["n_test"]),
        "global_mean": float(parts.manifest["global_mean"]),
        "rating_range": list(snap.manifest["rating_range"]),
        "noise_floor_rmse": sidecar.get("noise_floor_rmse"),
        "prep_seconds": timings,
    }


def child_gemm(args: argparse.Namespace) -> dict[str, Any]:
    """float32 GEMM rate of numpy (its BLAS, all its threads): best and median of a few n×n matmuls."""
    import numpy as np

    n = args.gemm_n
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=c)  # warm-up: threads, pages
    rates = []
    for _ in range(args.gemm_repeats):
        t = time.perf_counter()
        np.matmul(a, b, out=c)
        rates.append(2.0 * n**3 / (time.perf_counter() - t) / 1e9)
    blas = _blas_info()
    return {"n": n, "gflops_best": max(rates), "gflops_median": _median(rates), "gflops": rates, "blas": blas}


def _blas_info() -> dict[str, Any]:
    try:
        from threadpoolctl import threadpool_info

        return {"threadpools": [{k: d.get(k) for k in ("internal_api", "version", "num_threads")}
                                for d in threadpool_info()]}
    except ImportError:
        pass
    try:
        import numpy as np

        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return {k: blas.get(k) for k in ("name", "version")}
    except Exception:  # noqa: BLE001 - informational only
        return {}


# ---------------------------------------------------------------- children: factorflow


def _ff_config(args: argparse.Namespace) -> Any:
    from factorflow.models.als import ALSConfig

    extra: dict[str, Any] = {}
    if args.ff_reg is not None:
        extra["reg"] = args.ff_reg
    if args.ff_weighted is not None:
        extra["weighted"] = args.ff_weighted
    return ALSConfig(rank=args.rank, sweeps=args.sweeps, **extra)


def _ff_versions() -> dict[str, str]:
    import dask
    import distributed
    import numba
    import numpy

    return {"numpy": numpy.__version__, "numba": numba.__version__, "dask": dask.__version__,
            "distributed": distributed.__version__, "numba_threads": str(numba.config.NUMBA_NUM_THREADS)}


def _ff_result(model: Any, history: list[dict[str, Any]], info: dict[str, Any], fit_s: float,
               setup_s: float) -> dict[str, Any]:
    from dataclasses import asdict

    seconds = [float(h["seconds"]) for h in history]
    return {
        "per_sweep_s": per_sweep(seconds), "sweep_seconds": seconds, "fit_s": fit_s, "setup_s": setup_s,
        "test_rmse": history[-1].get("test_rmse"), "test_rmse_by_sweep": [h.get("test_rmse") for h in history],
        "train_rmse": history[-1].get("train_rmse"), "config": asdict(model.config),
        "peak_rss_self_mb": _peak_rss_mb(), "versions": _ff_versions(), **info,
    }


def child_ff(args: argparse.Namespace) -> dict[str, Any]:
    """factorflow's ALS, on the Dask driver (``ff-dask``) or in-process (``ff-inprocess``)."""
    from factorflow.models.als import ALS
    from factorflow.pipeline.train import rmse_callback, test_arrays
    from factorflow.storage.splits import load_split, train_csr

    prep = json.loads(args.prep)
    split = load_split(prep["split_path"])
    callback = rmse_callback(test_arrays(split), tuple(prep["rating_range"]))  # not inside a sweep's seconds
    model = ALS(_ff_config(args))
    if args.child == "ff-inprocess":
        t = time.perf_counter()
        train = train_csr(split)
        setup_s = time.perf_counter() - t
        t = time.perf_counter()
        model.fit(train, callback=callback)
        return _ff_result(model, model.history, {"where": "in-process (fit_serial)"}, time.perf_counter() - t,
                          setup_s)

    from factorflow.parallel.block_driver import fit_blocks
    from factorflow.parallel.cluster import dask_client
    from factorflow.storage.partitions import load_partitions

    parts = load_partitions(prep["partitions"])
    t = time.perf_counter()
    with dask_client() as client:
        workers = client.scheduler_info()["workers"]
        setup_s = time.perf_counter() - t
        t = time.perf_counter()
        _, history = fit_blocks(client, parts, model, callback=callback)
        fit_s = time.perf_counter() - t
        info = {"where": "Dask LocalCluster (dask_client)", "workers": len(workers),
                "threads_per_worker": sorted({int(w.get("nthreads", 0)) for w in workers.values()}),
                "n_blocks": parts.n_blocks}
    return _ff_result(model, history, info, fit_s, setup_s)


# ---------------------------------------------------------------- children: peers (run under --bench-python)


def child_lenskit(args: argparse.Namespace) -> dict[str, Any]:
    """LensKit biased ALS: its trainer's epochs timed one by one; RMSE from its own parameters."""
    import lenskit
    import numpy as np
    import pandas as pd
    from lenskit.als import BiasedMFConfig, BiasedMFScorer
    from lenskit.data import from_interactions_df
    from lenskit.training import TrainingOptions

    prep = json.loads(args.prep)
    lo, hi = prep["rating_range"]
    u, i, r = _read_split_arrays(prep["train_file"])
    t = time.perf_counter()
    data = from_interactions_df(pd.DataFrame({"user_id": u, "item_id": i, "rating": r}),
                                user_col="user_id", item_col="item_id", rating_col="rating")
    del u, i, r
    config = BiasedMFConfig(embedding_size=args.rank, epochs=args.sweeps, regularization=args.lenskit_reg,
                            damping=args.lenskit_damping)
    scorer = BiasedMFScorer(config)
    trainer = scorer.create_trainer(data, TrainingOptions(rng=args.seed))
    setup_s = time.perf_counter() - t
    seconds = []
    t_fit = time.perf_counter()
    for _ in range(args.sweeps):
        t = time.perf_counter()
        trainer.train_epoch()
        seconds.append(time.perf_counter() - t)
    trainer.finalize()
    fit_s = time.perf_counter() - t_fit

    tu, ti, tr = _read_split_arrays(prep["test_file"])
    un = scorer.users.numbers(tu, missing="negative")
    inum = scorer.items.numbers(ti, missing="negative")
    pred = lenskit_predict(scorer, un, inum)
    check = _lenskit_spot_check(scorer, tu, ti, pred)
    import torch
    from lenskit.parallel import get_parallel_config

    par = get_parallel_config()
    return {
        "per_sweep_s": per_sweep(seconds), "sweep_seconds": seconds, "fit_s": fit_s, "setup_s": setup_s,
        "test_rmse": _rmse(pred, tr, lo, hi), "spot_check_max_abs_diff": check,
        "config": config.model_dump(mode="json"), "peak_rss_self_mb": _peak_rss_mb(),
        "threads": {"lenskit": par.threads, "backend": par.backend_threads},
        "versions": {"lenskit": lenskit.__version__, "torch": torch.__version__, "numpy": np.__version__},
    }


def lenskit_predict(scorer: Any, user_nums: Any, item_nums: Any) -> Any:
    """r̂ = μ + b_i + b_u + p_u·q_i from the scorer's arrays; an unknown user or item (number < 0)
    contributes no bias and no interaction term (LensKit's own scoring does the same)."""
    import numpy as np

    bias = scorer.bias
    ku, ki = user_nums >= 0, item_nums >= 0
    pred = np.full(user_nums.shape, bias.global_bias, dtype=np.float64)
    if bias.item_biases is not None:
        pred[ki] += bias.item_biases[item_nums[ki]]
    if bias.user_biases is not None:
        pred[ku] += bias.user_biases[user_nums[ku]]
    both = ku & ki
    p, q = scorer.user_embeddings, scorer.item_embeddings
    for s in range(0, int(both.sum()), 1 << 20):  # bounded memory
        idx = np.flatnonzero(both)[s : s + (1 << 20)]
        pred[idx] += np.einsum("ij,ij->i", p[user_nums[idx]], q[item_nums[idx]])
    return pred


def _lenskit_spot_check(scorer: Any, users: Any, items: Any, pred: Any, n_users: int = 3) -> float:
    """Max |our prediction − LensKit's own scorer| over the test rows of a few users (with their
    training embeddings: ``user_embeddings="prefer"`` behaviour via a query with no history)."""
    import numpy as np
    from lenskit.data import ItemList

    worst = 0.0
    for uid in np.unique(users)[:n_users]:
        rows = np.flatnonzero(users == uid)
        out = scorer(int(uid), ItemList(item_ids=items[rows]))
        theirs = out.scores()
        ok = np.isfinite(theirs)
        if ok.any():
            worst = max(worst, float(np.max(np.abs(theirs[ok] - pred[rows][ok]))))
    return worst


def child_spark(args: argparse.Namespace) -> dict[str, Any]:
    """Spark MLlib ALS: fits with maxIter=1 and maxIter=S after a warm-up; per-sweep is their difference."""
    import pyspark
    from pyspark.ml.recommendation import ALS as SparkALS
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    prep = json.loads(args.prep)
    lo, hi = prep["rating_range"]
    t = time.perf_counter()
    spark = (SparkSession.builder.master(args.spark_master).appName("als_peers")
             .config("spark.driver.memory", args.spark_memory)
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "8")
             .config("spark.driver.extraJavaOptions", "-XX:+UseParallelGC")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    cols = [F.col("user_idx").alias("user"), F.col("item_idx").alias("item"),
            F.col("rating").cast("float").alias("rating")]
    train = spark.read.parquet(prep["train_file"]).select(*cols).cache()
    test = spark.read.parquet(prep["test_file"]).select(*cols).cache()
    n_train, n_test = train.count(), test.count()
    setup_s = time.perf_counter() - t

    def als(max_iter: int) -> Any:
        return SparkALS(rank=args.rank, maxIter=max_iter, regParam=args.spark_reg, userCol="user", itemCol="item",
                        ratingCol="rating", coldStartStrategy="nan", seed=args.seed)

    t = time.perf_counter()
    als(1).fit(train)  # warm-up: class loading and JIT, so that t_1 and t_S below are both warm
    warmup_s = time.perf_counter() - t
    fits = {}
    for n in (1, args.sweeps):
        t = time.perf_counter()
        model = als(n).fit(train)
        fits[n] = time.perf_counter() - t
    sweep = (fits[args.sweeps] - fits[1]) / (args.sweeps - 1) if args.sweeps > 1 else fits[1]
    mu = prep["global_mean"]
    pred = F.when(F.isnan("prediction"), F.lit(mu)).otherwise(F.col("prediction"))
    err = F.least(F.greatest(pred, F.lit(lo)), F.lit(hi)) - F.col("rating")
    row = model.transform(test).select(F.sqrt(F.avg(err * err)).alias("rmse"),
                                       F.sum(F.isnan("prediction").cast("int")).alias("cold")).first()
    jvm = spark.sparkContext._jvm
    java = jvm.System.getProperty("java.version")
    try:
        blas = jvm.dev.ludovic.netlib.blas.BLAS.getInstance().getClass().getName()
    except Exception:  # noqa: BLE001 - informational only
        blas = "unknown"
    spark.stop()
    return {
        "per_sweep_s": sweep, "fit_seconds_by_max_iter": {str(k): v for k, v in fits.items()},
        "fit_s": fits[args.sweeps], "setup_s": setup_s, "warmup_s": warmup_s, "test_rmse": float(row["rmse"]),
        "test_rows_without_factors": int(row["cold"]), "n_train": n_train, "n_test": n_test,
        "config": {"rank": args.rank, "maxIter": args.sweeps, "regParam": args.spark_reg, "master": args.spark_master,
                   "driver_memory": args.spark_memory, "biases": False},
        "peak_rss_self_mb": _peak_rss_mb(), "versions": {"pyspark": pyspark.__version__, "java": java, "blas": blas},
    }


CHILDREN = {"prep": child_prep, "gemm": child_gemm, "ff-dask": child_ff, "ff-inprocess": child_ff,
            "lenskit": child_lenskit, "spark": child_spark}


# ---------------------------------------------------------------- the parent: run, sample, report


def _tree_rss(proc: Any) -> int:
    import psutil

    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_child(kind: str, python: str, args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    """Run ``kind`` in its own process; returns its JSON result plus wall seconds and the sampled
    peak RSS of its process tree. A failed child returns ``{"error": ...}``."""
    fd, result_path = tempfile.mkstemp(prefix=f"als-peers-{kind}-", suffix=".json")
    os.close(fd)
    cmd = [python, os.path.abspath(__file__), "--child", kind, "--result", result_path, *extra]
    t0 = time.perf_counter()
    peak = [0]
    env = {**os.environ, "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")}
    proc = subprocess.Popen(cmd, stdout=sys.stderr, cwd=ROOT, env=env)  # children's chatter goes to stderr
    stop = threading.Event()

    def sample() -> None:
        try:
            import psutil

            p = psutil.Process(proc.pid)
        except Exception:  # noqa: BLE001 - no sampling: the child's own ru_maxrss remains
            return
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_rss(p))
            stop.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        rc = proc.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    stop.set()
    sampler.join()
    try:
        with open(result_path) as f:
            text = f.read()
    finally:
        os.unlink(result_path)
    result = json.loads(text) if rc == 0 and text else {"error": f"exit status {rc} (see its output above)"}
    result["process_s"] = time.perf_counter() - t0
    if peak[0]:
        result["peak_rss_tree_mb"] = peak[0] / 2**20
    return result


def peer_available(peer: str, python: str) -> str | None:
    """None when ``python`` can import the peer, else one line saying what is missing and how to install it."""
    module = {"lenskit": "lenskit.als", "spark": "pyspark.ml.recommendation"}[peer]
    if not os.path.exists(python):
        return f"{peer}: skipped, {python} not found; install the peers with: {INSTALL_HINT}"
    ok = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True, cwd=ROOT)
    if ok.returncode != 0:
        why = (ok.stderr.strip().splitlines() or ["import failed"])[-1]
        return f"{peer}: skipped, cannot import {module} under {python} ({why}); install with: {INSTALL_HINT}"
    if peer == "spark":
        java = subprocess.run(["java", "-version"], capture_output=True, text=True)
        if java.returncode != 0:
            return "spark: skipped, no `java` on PATH; install a JDK 17+ (e.g. apt-get install openjdk-17-jre-headless)"
    return None


def environment() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = None
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           cwd=ROOT)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gb, "platform": platform.platform(),
            "python": platform.python_version(), "nice": os.nice(0),
            "git": git.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")}


def summarize(runs: list[dict[str, Any]], prep: dict[str, Any], gflops: float, ranks: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in ranks:
        by = {r["contender"]: r for r in runs if r["rank"] == k and r.get("per_sweep_s")}
        floor_s = flop_floor(prep["n_train"], prep["n_users"], prep["n_items"], k) / (gflops * 1e9)
        s: dict[str, Any] = {"floor_s": floor_s}
        for ff in FF:
            if ff not in by:
                continue
            t = by[ff]["per_sweep_s"]
            s[f"{ff}/floor"] = t / floor_s
            if "lenskit" in by:
                s[f"{ff}/lenskit"] = t / by["lenskit"]["per_sweep_s"]
            if "spark" in by:
                s[f"{ff}/spark"] = t / by["spark"]["per_sweep_s"]
        if "lenskit" in by:
            s["lenskit/floor"] = by["lenskit"]["per_sweep_s"] / floor_s
        if all(ff in by for ff in FF):
            s["dask_overhead"] = by["ff-dask"]["per_sweep_s"] / by["ff-inprocess"]["per_sweep_s"]
        out[str(k)] = s
    return out


def print_table(result: dict[str, Any]) -> None:
    prep, gemm = result["data"], result["gemm"]
    print(f"\n{prep['n_train'] + prep['n_test']:,} ratings ({prep['n_users']:,} users × {prep['n_items']:,} items), "
          f"split {prep['split']}: {prep['n_train']:,} train / {prep['n_test']:,} test; "
          f"{result['sweeps']} sweeps; noise floor RMSE {prep['noise_floor_rmse']:.3f}")
    print(f"float32 GEMM: {result['gflops']:.1f} GFLOP/s (n={gemm[0]['n']}, best of runs before/after); "
          f"load average {result['environment']['load_before'][0]:.2f} before, "
          f"{result['environment']['load_after'][0]:.2f} after")
    head = (f"{'rank':>4}  {'contender':<13} {'s/sweep':>8} {'fit s':>7} {'test RMSE':>9} {'peak RSS MB':>11}"
            "  sweeps (s)")
    print(head)
    print("-" * len(head))
    for r in result["runs"]:
        if "error" in r:
            print(f"{r['rank']:>4}  {r['contender']:<13} failed: {r['error']}")
            continue
        sweeps = r.get("sweep_seconds") or list(r.get("fit_seconds_by_max_iter", {}).values())
        label = "" if "sweep_seconds" in r else "fits t1,tS: "
        rss = r.get("peak_rss_tree_mb", r.get("peak_rss_self_mb", 0.0))
        print(f"{r['rank']:>4}  {r['contender']:<13} {r['per_sweep_s']:8.2f} {r['fit_s']:7.1f} {r['test_rmse']:9.4f} "
              f"{rss:11.0f}  {label}{', '.join(f'{x:.1f}' for x in sweeps)}")
    for k, s in result["summary"].items():
        ratios = ", ".join(f"{name} {v:.2f}" for name, v in s.items() if "/" in name or name == "dask_overhead")
        print(f"rank {k}: FLOP floor {s['floor_s']:.3g} s/sweep; {ratios}")
    for line in result["skipped"]:
        print(line)


def parent(args: argparse.Namespace) -> int:
    ranks = [int(k) for k in args.ranks.split(",") if k.strip()]
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    bad = [p for p in peers if p not in PEERS]
    if bad:
        raise SystemExit(f"--peers: unknown {', '.join(bad)}; choose from {', '.join(PEERS)} (comma-separated)")
    skipped = []
    for peer in list(peers):
        why = peer_available(peer, args.bench_python)
        if why:
            print(why, flush=True)
            skipped.append(why)
            peers.remove(peer)
    env = environment()
    env["load_before"] = os.getloadavg()
    py = sys.executable
    common = ["--ratings", str(args.ratings), "--seed", str(args.seed), "--data-dir", args.data_dir]
    print(f"preparing data ({args.ratings:,} ratings; cached under {args.data_dir}) ...", flush=True)
    prep = run_child("prep", py, args, common)
    if "error" in prep:
        print(f"data preparation failed: {prep['error']}", file=sys.stderr)
        return 1
    prep_arg = ["--prep", json.dumps(prep)]
    gemm = [run_child("gemm", py, args, ["--gemm-n", str(args.gemm_n), "--gemm-repeats", str(args.gemm_repeats)])]

    order = ["ff-dask", *[p for p in ("lenskit", "spark") if p in peers], "ff-inprocess"]
    order = [c for c in order if c in args.contenders.split(",")]
    runs = []
    for k in ranks:
        for contender in order:
            print(f"rank {k}: {contender} ...", flush=True)
            python = args.bench_python if contender in PEERS else py
            flags = [*common, *prep_arg, "--rank", str(k), "--sweeps", str(args.sweeps),
                     *_model_flags(args, contender)]
            r = run_child(contender, python, args, flags)
            r.update(contender=contender, rank=k)
            runs.append(r)
            if "error" not in r:
                print(f"  {r['per_sweep_s']:.2f} s/sweep, test RMSE {r['test_rmse']:.4f}, "
                      f"peak RSS {r.get('peak_rss_tree_mb', 0):.0f} MB", flush=True)
    gemm.append(run_child("gemm", py, args, ["--gemm-n", str(args.gemm_n), "--gemm-repeats", str(args.gemm_repeats)]))
    env["load_after"] = os.getloadavg()
    gflops = max(g.get("gflops_best", 0.0) for g in gemm)
    result = {
        "ratings": args.ratings, "seed": args.seed, "sweeps": args.sweeps, "ranks": ranks,
        "data": prep, "gemm": gemm, "gflops": gflops, "runs": runs,
        "summary": summarize(runs, prep, gflops, ranks), "skipped": skipped,
        "environment": env, "command": " ".join([os.path.basename(py), *sys.argv]),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print_table(result)
    out = args.out or os.path.join(
        HERE, "results", "als_peers.json" if args.ratings == ML20M_RATINGS else f"als_peers-{args.ratings}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {os.path.relpath(out)}")
    return 0 if all("error" not in r for r in runs) else 1


def _model_flags(args: argparse.Namespace, contender: str) -> list[str]:
    if contender == "lenskit":
        return ["--lenskit-reg", str(args.lenskit_reg), "--lenskit-damping", str(args.lenskit_damping)]
    if contender == "spark":
        return ["--spark-reg", str(args.spark_reg), "--spark-master", args.spark_master,
                "--spark-memory", args.spark_memory]
    flags = []
    if args.ff_reg is not None:
        flags += ["--ff-reg", str(args.ff_reg)]
    if args.ff_weighted is not None:
        flags += ["--ff-weighted" if args.ff_weighted else "--no-ff-weighted"]
    return flags


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ratings", type=int, default=ML20M_RATINGS, help="synthetic ratings (default 20,000,263)")
    p.add_argument("--seed", type=int, default=0, help="data and model seed (default 0)")
    p.add_argument("--ranks", default="10,64", help="comma-separated ranks (default 10,64)")
    p.add_argument("--sweeps", type=int, default=5, help="ALS sweeps / epochs / maxIter (default 5)")
    p.add_argument("--peers", default="lenskit,spark", help="comma-separated peers: lenskit, spark (default both)")
    p.add_argument("--contenders", default="ff-dask,lenskit,spark,ff-inprocess", help=argparse.SUPPRESS)
    p.add_argument("--bench-python", default=os.path.join(ROOT, ".venv-bench", "bin", "python"),
                   help="interpreter with the peers installed (default .venv-bench/bin/python)")
    p.add_argument("--ff-reg", type=float, default=None, help="factorflow λ (default: ALSConfig's)")
    p.add_argument("--ff-weighted", action=argparse.BooleanOptionalAction, default=None,
                   help="factorflow weighted λ (default: ALSConfig's)")
    p.add_argument("--lenskit-reg", type=float, default=0.1, help="LensKit regularization (default 0.1, its own)")
    p.add_argument("--lenskit-damping", type=float, default=5.0, help="LensKit bias damping (default 5, its own)")
    p.add_argument("--spark-reg", type=float, default=0.1, help="Spark regParam (default 0.1, its own)")
    p.add_argument("--spark-master", default="local[2]", help="Spark master (default local[2])")
    p.add_argument("--spark-memory", default="4g", help="Spark driver memory (default 4g)")
    p.add_argument("--gemm-n", type=int, default=4096, help="GEMM matrix size (default 4096)")
    p.add_argument("--gemm-repeats", type=int, default=3, help="timed GEMMs per measurement (default 3)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per contender before it is killed")
    p.add_argument("--data-dir", default=os.path.join(HERE, "data"))
    p.add_argument("--out", default=None, help="JSON path (default results/als_peers[-N].json)")
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--prep", help=argparse.SUPPRESS)
    p.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.sweeps < 1:
        raise SystemExit(f"--sweeps={args.sweeps}: must be at least 1")
    if args.child:
        result = CHILDREN[args.child](args)
        with open(args.result, "w") as f:
            json.dump(result, f)
        return 0
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
