"""Ingest benchmark: factorflow ingest vs. pyarrow's one-shot read_csv + write_table, same run.

Generates (once, cached under --data-dir) a synthetic MovieLens-20M-shaped CSV with
``factorflow.data.synth.write_synthetic_csv``, then runs the two contenders alternately
(--repeat times each), every run in its own subprocess so that peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss`` of the child) is per run:

* ``ingest``: ``factorflow.data.ingest.ingest_source`` into a fresh store (what ``factorflow
  ingest`` runs: hash, parse, validate, id mapping, duplicate resolution, sort by (user, item),
  Parquet + manifest and checksums);
* ``reference``: ``pyarrow.csv.read_csv`` of the whole file + ``pyarrow.parquet.write_table``
  with pyarrow's defaults.

Seconds are the work inside the child (interpreter start-up and imports excluded; the whole
process is recorded too), with the CPU seconds of that work (all threads, user + system: on a
loaded machine the fairer comparison). The three ratios and their targets (issue 11, item 5):

* time: best ingest seconds / best reference seconds ≤ 1.25;
* memory: ingest peak RSS (the largest of its runs) ≤ 1 GB;
* size: ``ratings.parquet`` / the reference Parquet file ≤ 1.1.

Prints a table and writes JSON (--out, default ``benchmarks/results/ingest.json``).

    python benchmarks/ingest.py                       # 20M rows, 3 runs each
    python benchmarks/ingest.py --rows 2000000        # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ML20M_USERS, ML20M_ITEMS, ML20M_RATINGS = 138_493, 26_744, 20_000_263
TIME_RATIO_MAX = 1.25
RSS_MAX_MB = 1000.0
SIZE_RATIO_MAX = 1.1


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


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _usage(cpu0: float) -> dict:
    """Peak RSS and the CPU seconds (all threads, user + system) since ``cpu0``."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    scale = 1024 if sys.platform != "darwin" else 2**20  # ru_maxrss: kB on Linux, bytes on macOS
    return {"peak_rss_mb": ru.ru_maxrss / scale, "cpu_seconds": _cpu() - cpu0}


def _phase_timer() -> dict[str, float]:
    """Seconds spent in ingest's main steps (wrapping module functions; informational only)."""
    from factorflow.data.ingest import snapshot

    phases: dict[str, float] = {}

    def wrap(name: str, label: str) -> None:
        fn = getattr(snapshot, name, None)
        if fn is None:
            return

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[label] = phases.get(label, 0.0) + time.perf_counter() - t0

        setattr(snapshot, name, timed)

    for name, label in [("planned_snapshot", "hash first"), ("read_rows", "parse"), ("_inferred_scale", "scale"),
                        ("_finalize", "sort"), ("write_batches", "write ratings"), ("write_table", "write ids"),
                        ("checksums", "checksums")]:
        wrap(name, label)
    return phases


def child_ingest(csv: str, work: str) -> dict:
    from factorflow.data.ingest import ingest_source

    phases = _phase_timer()
    cpu0, t0 = _cpu(), time.perf_counter()
    ref = ingest_source(csv, os.path.join(work, "store"), "bench")
    seconds = time.perf_counter() - t0
    m = ref.manifest
    return {
        "seconds": seconds,
        **_usage(cpu0),
        "parquet_bytes": m["files"]["ratings.parquet"]["bytes"],
        "rows": m["rows_kept"],
        "n_users": m["n_users"],
        "n_items": m["n_items"],
        "read_path": m["read_path"],
        "phases": {k: round(v, 3) for k, v in phases.items()},
    }


def child_reference(csv: str, work: str) -> dict:
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    out = os.path.join(work, "reference.parquet")
    cpu0, t0 = _cpu(), time.perf_counter()
    table = pv.read_csv(csv)
    t1 = time.perf_counter()
    pq.write_table(table, out)
    t2 = time.perf_counter()
    return {"seconds": t2 - t0, **_usage(cpu0), "parquet_bytes": os.path.getsize(out), "rows": table.num_rows,
            "phases": {"read_csv": round(t1 - t0, 3), "write_table": round(t2 - t1, 3)}}


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


def summarize(runs: dict[str, list[dict]], csv_bytes: int) -> dict:
    """Best/median seconds, peak RSS and Parquet size per contender; the three ratios and targets."""
    best = {k: min(r["seconds"] for r in v) for k, v in runs.items()}
    summary = {
        k: {
            "seconds_best": best[k],
            "seconds_median": statistics.median(r["seconds"] for r in v),
            "cpu_seconds_best": min(r["cpu_seconds"] for r in v),
            "process_seconds_best": min(r["process_seconds"] for r in v),
            "mb_per_s": csv_bytes / 1e6 / best[k],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in v),
            "parquet_bytes": v[0]["parquet_bytes"],
        }
        for k, v in runs.items()
    }
    pairs = [i["seconds"] / r["seconds"] for i, r in zip(runs["ingest"], runs["reference"], strict=True)]
    ratios = {
        "time": best["ingest"] / best["reference"],
        "time_median_of_pairs": statistics.median(pairs),
        "cpu": summary["ingest"]["cpu_seconds_best"] / summary["reference"]["cpu_seconds_best"],
        "peak_rss_mb": summary["ingest"]["peak_rss_mb"],
        "size": summary["ingest"]["parquet_bytes"] / summary["reference"]["parquet_bytes"],
    }
    met = {
        "time": ratios["time"] <= TIME_RATIO_MAX,
        "peak_rss_mb": ratios["peak_rss_mb"] <= RSS_MAX_MB,
        "size": ratios["size"] <= SIZE_RATIO_MAX,
    }
    targets = {"time_ratio_max": TIME_RATIO_MAX, "peak_rss_mb_max": RSS_MAX_MB, "size_ratio_max": SIZE_RATIO_MAX,
               "met": met, "all_met": all(met.values())}
    return {"summary": summary, "ratios": ratios, "targets": targets}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=20_000_000)
    p.add_argument("--repeat", type=int, default=3, help="runs of each contender, alternating (default 3)")
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
    runs: dict[str, list[dict]] = {"reference": [], "ingest": []}
    for k in range(max(1, args.repeat)):
        for kind in ("reference", "ingest"):
            r = run_child(kind, csv)
            runs[kind].append(r)
            print(f"  run {k + 1} {kind:<9} {r['seconds']:6.2f} s  {r['peak_rss_mb']:6.0f} MB  "
                  f"phases {r['phases']}", flush=True)
    result = {
        "rows": args.rows,
        "csv": os.path.basename(csv),
        "csv_bytes": size,
        **summarize(runs, size),
        "runs": runs,
        "load_average_at_end": os.getloadavg(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    s, ratios, met = result["summary"], result["ratios"], result["targets"]["met"]
    print(f"\n{args.rows:,} rows, {size / 1e6:.0f} MB CSV, best of {args.repeat} alternating runs each")
    print(f"{'run':<10} {'seconds':>8} {'cpu s':>7} {'MB/s':>7} {'peak RSS MB':>12} {'Parquet MB':>11}")
    for kind in ("reference", "ingest"):
        r = s[kind]
        print(f"{kind:<10} {r['seconds_best']:8.2f} {r['cpu_seconds_best']:7.2f} {r['mb_per_s']:7.1f} "
              f"{r['peak_rss_mb']:12.0f} {r['parquet_bytes'] / 1e6:11.1f}")

    def ok(key: str) -> str:
        return "met" if met[key] else "NOT met"

    print(f"time ratio {ratios['time']:.2f} (target ≤ {TIME_RATIO_MAX}; median of pairs "
          f"{ratios['time_median_of_pairs']:.2f}): {ok('time')}")
    print(f"ingest peak RSS {ratios['peak_rss_mb']:.0f} MB (target ≤ {RSS_MAX_MB:.0f}): {ok('peak_rss_mb')}")
    print(f"size ratio {ratios['size']:.2f} (target ≤ {SIZE_RATIO_MAX}): {ok('size')}")
    print(f"(CPU seconds ratio {ratios['cpu']:.2f}; load average at the end {result['load_average_at_end'][0]:.1f})")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
