"""Prefect tasks for the data layer: ingest, split, partition. Thin wrappers, small manifests out."""

from __future__ import annotations

from typing import Any

from prefect import task

from ..config import IngestOptions, SplitOptions
from ._prefect import retry_on_io_error, stable_key, task_progress


def _ingest_key(context: Any, p: dict[str, Any]) -> str | None:
    """Cache on the source's content and the options — only while that snapshot exists."""
    from ..ingest import planned_snapshot

    o: IngestOptions = p["options"]
    plan = planned_snapshot(p["source"], p["store"], o.dataset, fmt=o.format, columns=o.columns,
                            delimiter=o.delimiter, rating_range=o.rating_range, test_source=o.test_source)
    return stable_key("ingest", plan.path, o.model_dump()) if plan.exists else None


@task(name="ingest", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error,
      cache_key_fn=_ingest_key, persist_result=True)
def ingest_task(source: str, store: str, options: IngestOptions) -> dict[str, Any]:
    """Ingest ``source`` into a content-addressed snapshot; returns the SnapshotRef as a dict."""
    from ..ingest import ingest_source

    ref = ingest_source(
        source, store, options.dataset, fmt=options.format, columns=options.columns, delimiter=options.delimiter,
        rating_range=options.rating_range, max_reject_fraction=options.max_reject_fraction,
        test_source=options.test_source, progress=task_progress("ingest", "B"),
    )
    return ref.to_dict()


def _split_key(context: Any, p: dict[str, Any]) -> str | None:
    """Cache on the snapshot and split request — only while that split exists."""
    from ..splits import split_id
    from ..storage.fs import join, open_store
    from ..storage.layout import split_dir

    o: SplitOptions = p["options"]
    sid = split_id(o.kind, test_fraction=o.test_fraction, seed=o.seed, cutoff=o.cutoff, per_user=o.per_user,
                   k=o.k, by=o.by)
    fs, _ = open_store(p["snapshot"]["store"])  # the snapshot's path is on the store's filesystem
    path = split_dir(p["snapshot"]["path"], sid)
    return stable_key("split", path) if fs.exists(join(path, "manifest.json")) else None


@task(name="split", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error,
      cache_key_fn=_split_key, persist_result=True)
def split_task(snapshot: dict[str, Any], options: SplitOptions) -> dict[str, Any]:
    """Make (or reuse) the named split of a snapshot; returns the SplitRef as a dict."""
    from ..splits import make_split
    from ..storage.datasets import SnapshotRef

    ref = make_split(
        SnapshotRef.from_dict(snapshot), options.kind, test_fraction=options.test_fraction,
        seed=options.seed, cutoff=options.cutoff, per_user=options.per_user, k=options.k, by=options.by,
    )
    return ref.to_dict()


def _partition_key(context: Any, p: dict[str, Any]) -> str | None:
    """Cache on the split and block count — only while those partitions exist."""
    from ..partitions import default_n_blocks
    from ..storage.fs import join, open_store
    from ..storage.layout import partitions_dir

    split = p["split"]
    n_blocks = p["n_blocks"] or default_n_blocks(int(split["manifest"]["n_train"]))
    fs, split_path = open_store(split["path"])
    path = partitions_dir(split_path, n_blocks)
    return stable_key("partition", path) if fs.exists(join(path, "partitions.json")) else None


@task(name="partition", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error,
      cache_key_fn=_partition_key, persist_result=True)
def partition_task(split: dict[str, Any], n_blocks: int | None = None) -> dict[str, Any]:
    """Build (or reuse) the user/item row blocks of a split's train part; returns PartitionsRef as a dict."""
    from ..partitions import build_partitions
    from ..splits import SplitRef

    ref = build_partitions(SplitRef.from_dict(split), n_blocks, progress=task_progress("partition", "blocks"))
    return ref.to_dict()
