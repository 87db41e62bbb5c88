"""Ingest benchmark: factorflow ingest vs. plain pyarrow read_csv + write_table.

Generates (once, cached under --data-dir) a synthetic MovieLens-20M-shaped CSV with
``factorflow.data.synth.write_synthetic_csv``, then runs each contender in its own subprocess so
that peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss`` reported by the child) is per run:

* ``ingest``: ``factorflow.data.ingest.ingest_source`` into a fresh store (hash, parse, validate,
  id mapping, duplicate resolution, sort, Parquet + manifest);
* ``reference``: ``pyarrow.csv.read_csv`` of the whole file + ``pyarrow.parquet.write_table``.

Prints seconds, MB/s (CSV bytes / seconds) and peak RSS, and writes JSON (--out).
Targets: ingest throughput ≥ 50% of the reference; ingest peak RSS < 1.5 GB at 20M rows.

    python benchmarks/ingest.py --rows 20000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ML20M_USERS, ML20M_ITEMS, ML20M_RATINGS = 138_493, 26_744, 20_000_263
RSS_TARGET_MB = 1500
RATIO_TARGET = 0.5


def shape_for(rows: int) -> tuple[int, int]:
    """(users, items) scaled from the MovieLens-20M shape to ``rows`` ratings."""
    scale = rows / ML20M_RATINGS
    users = max(10, min(ML20M_USERS, round(ML20M_USERS * scale)))
    items = max(100, min(ML20M_ITEMS, round(ML20M_ITEMS * scale**0.5)))
    return users, items


def ensure_csv(data_dir: str, rows: int, seed: int = 0) -> str:
    from factorflow.data.synth import write_synthetic_csv

    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, f"synthetic-{rows}-s{seed}.csv")
    if not os.path.exists(path):
        users, items = shape_for(rows)
        t0 = time.perf_counter()
        print(f"generating {path} ({rows:,} ratings, {users:,} users, {items:,} items) ...", flush=True)
        write_synthetic_csv(path, n_users=users, n_items=items, n_ratings=rows, seed=seed)
        print(f"  generated in {time.perf_counter() - t0:.1f} s", flush=True)
    return path


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def child_ingest(csv: str, work: str) -> dict:
    from factorflow.data.ingest import ingest_source

    t0 = time.perf_counter()
    ref = ingest_source(csv, os.path.join(work, "store"), "bench")
    seconds = time.perf_counter() - t0
    m = ref.manifest
    return {
        "seconds": seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "rows_kept": m["rows_kept"],
        "n_users": m["n_users"],
        "n_items": m["n_items"],
        "read_path": m["read_path"],
    }


def child_reference(csv: str, work: str) -> dict:
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    table = pv.read_csv(csv)
    pq.write_table(table, os.path.join(work, "reference.parquet"))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "rows": table.num_rows}


def run_child(kind: str, csv: str) -> dict:
    work = tempfile.mkdtemp(prefix=f"ff-bench-{kind}-")
    try:
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--csv", csv, "--work", work],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["process_seconds"] = time.perf_counter() - t0
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=20_000_000)
    p.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "data"))
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "ingest.json"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", choices=("ingest", "reference"), help=argparse.SUPPRESS)
    p.add_argument("--csv", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        fn = child_ingest if args.child == "ingest" else child_reference
        print(json.dumps(fn(args.csv, args.work)))
        return 0

    csv = ensure_csv(args.data_dir, args.rows, args.seed)
    size = os.path.getsize(csv)
    runs = {kind: run_child(kind, csv) for kind in ("reference", "ingest")}
    for r in runs.values():
        r["mb_per_s"] = size / 1e6 / r["seconds"]
    ratio = runs["ingest"]["mb_per_s"] / runs["reference"]["mb_per_s"]
    result = {
        "rows": args.rows,
        "csv": os.path.basename(csv),
        "csv_bytes": size,
        "runs": runs,
        "throughput_ratio": ratio,
        "targets": {
            "throughput_ratio_min": RATIO_TARGET,
            "ingest_peak_rss_mb_max": RSS_TARGET_MB,
            "met": ratio >= RATIO_TARGET and runs["ingest"]["peak_rss_mb"] < RSS_TARGET_MB,
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"\n{args.rows:,} rows, {size / 1e6:.0f} MB CSV")
    print(f"{'run':<10} {'seconds':>8} {'MB/s':>8} {'peak RSS MB':>12}")
    for kind, r in runs.items():
        print(f"{kind:<10} {r['seconds']:8.1f} {r['mb_per_s']:8.1f} {r['peak_rss_mb']:12.0f}")
    print(f"ingest / reference throughput: {ratio:.2f} (target ≥ {RATIO_TARGET}); "
          f"ingest peak RSS {runs['ingest']['peak_rss_mb']:.0f} MB (target < {RSS_TARGET_MB})")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
