"""Prefect tasks: batch top-N recommendations and publishing a model version."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from factorflow import __version__
from factorflow.storage import parquet as pqio
from factorflow.storage.fs import join
from factorflow.tasks._prefect import retry_on_io_error, task_progress


def code_version() -> str:
    """The package version plus the git commit when running from a checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+g{sha}" if sha else __version__


def _titles(path: str | None, item_ids: Any) -> Any:
    """Titles aligned with ``item_ids`` from a MovieLens-style movies.csv (movieId,title), or None."""
    if not path:
        return None
    from factorflow.serving.titles import titles_for

    return titles_for(path, item_ids)


@task(name="batch-recommend", retries=1, retry_condition_fn=retry_on_io_error)
def batch_recommend_task(run: dict[str, Any], split: dict[str, Any], snapshot: dict[str, Any], run_dir: str,
                         n: int = 10) -> str:
    """Top-``n`` unseen items (the candidate filter of ``factorflow recommend``) for
    every user → ``recommendations.parquet``."""
    import numpy as np
    import pyarrow.compute as pc

    from factorflow.serving.candidates import candidate_mask
    from factorflow.serving.topn import attach_raw_ids, recommend_all
    from factorflow.data.splits import SplitRef, train_csr
    from factorflow.storage.scratch import load_factors
    from factorflow.storage.datasets import SnapshotRef, read_ids
    from factorflow.storage.fs import open_path

    snap = SnapshotRef.from_dict(snapshot)
    seen = train_csr(SplitRef.from_dict(split))
    allowed = candidate_mask(np.bincount(seen.indices, minlength=seen.shape[1]))  # as `recommend` does
    recs = recommend_all(load_factors(run["factors"]), seen, n, allowed=allowed,
                         progress=task_progress("batch recommend", "users"))
    users = read_ids(snap, "user").column("user_id")
    items = read_ids(snap, "item").column("item_id")
    recs = attach_raw_ids(recs, users, items)
    path = join(run_dir, "recommendations.parquet")
    fs, local = open_path(path)
    pqio.write_table(fs, local, recs)
    get_run_logger().info("wrote top-%d for %d users to %s", n, len(pc.unique(recs.column("user_idx"))), path)
    return path


@task(name="publish", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error)
def publish_task(store: str, name: str, run: dict[str, Any], metrics: dict[str, Any], snapshot: dict[str, Any],
                 split: dict[str, Any], partitions: dict[str, Any] | None, recommendations: str | None,
                 item_titles: str | None, rating_range: tuple[float, float]) -> str:
    """Publish the run as a new version of model ``name`` and switch CURRENT to it; returns the version.

    A model that fails the publish gate (:func:`factorflow.evaluation.publish_blockers`) is kept
    as a version marked ``"status": "rejected"`` (for inspection), CURRENT is left alone, and
    ``ModelRejectedError`` says why in one line.
    """

    from factorflow.errors import ModelRejectedError, NotFoundError
    from factorflow.evaluation.report import publish_blockers
    from factorflow.data.splits import SplitRef, train_csr
    from factorflow.storage.scratch import load_factors
    from factorflow.storage.datasets import SnapshotRef, read_ids
    from factorflow.storage.fs import open_path
    from factorflow.storage.registry import current_version, publish

    snap = SnapshotRef.from_dict(snapshot)
    split_ref = SplitRef.from_dict(split)
    factors = load_factors(run["factors"])
    user_ids = read_ids(snap, "user").column("user_id")
    item_ids = read_ids(snap, "item").column("item_id")
    extra = {}
    if recommendations:
        fs, p = open_path(recommendations)
        extra["recommendations"] = pqio.read_table(fs, p)
    model_json = {
        "kind": run["kind"],
        "params": run["params"],
        "global_mean": factors.global_mean,
        "rating_range": list(rating_range),
        "dataset": {"name": snap.name, "snapshot": snap.snapshot, "source": snap.manifest.get("source")},
        "split": {"id": split_ref.split, **{k: split_ref.manifest.get(k) for k in
                                           ("kind", "params", "seed", "n_train", "n_test", "n_test_cold")}},
        "partitions": None if partitions is None else {"n_blocks": partitions["manifest"]["n_blocks"]},
        "dask_workers": run.get("dask_workers"),
        "metrics": {k: v for k, v in metrics.items() if k != "learning_curve_png"},
        "learning_curve": run["history"],
        "code_version": code_version(),
    }
    blockers = publish_blockers(metrics, factors, run["kind"])
    model_json["status"] = "rejected" if blockers else "published"
    if blockers:
        model_json["rejected_because"] = blockers
    version = publish(store, name, factors, user_ids, item_ids, model_json, seen=train_csr(split_ref),
                      item_titles=_titles(item_titles, item_ids), extra_tables=extra, set_current=not blockers)
    if blockers:
        try:
            current = f"CURRENT still names {current_version(store, name)}"
        except NotFoundError:
            current = "there is no CURRENT version"
        raise ModelRejectedError(f"model {name} was not published: {'; and '.join(blockers)}; kept as rejected "
                                 f"version {version}, {current}")
    get_run_logger().info("published %s version %s", name, version)
    return version
