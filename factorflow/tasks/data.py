"""Prefect tasks for the data layer: ingest, split, partition. Thin wrappers, small manifests out."""

from __future__ import annotations

import os
from typing import Any

from prefect import task

from ..config import IngestOptions, SplitOptions
from ._prefect import file_signature, retry_on_io_error, stable_key, task_progress


def _listing(path: str) -> list[str]:
    """What exists under a store folder (part of cache keys, so a deleted output is rebuilt)."""
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _ingest_key(context: Any, p: dict[str, Any]) -> str:
    from ..storage.layout import dataset_dir
    from ..storage.fs import open_store

    _, root = open_store(p["store"])
    opts = p["options"]
    name = opts.dataset if isinstance(opts, IngestOptions) else None
    return stable_key(
        "ingest", file_signature(p["source"]), file_signature(getattr(opts, "test_source", None)),
        root, opts.model_dump() if hasattr(opts, "model_dump") else opts,
        _listing(dataset_dir(root, name)) if name else None,
    )


@task(name="ingest", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error,
      cache_key_fn=_ingest_key, persist_result=True)
def ingest_task(source: str, store: str, options: IngestOptions) -> dict[str, Any]:
    """Ingest ``source`` into a content-addressed snapshot; returns the SnapshotRef as a dict."""
    from ..ingest import ingest_source

    ref = ingest_source(
        source, store, options.dataset, fmt=options.format, columns=options.columns,
        rating_range=options.rating_range, max_reject_fraction=options.max_reject_fraction,
        test_source=options.test_source, progress=task_progress("ingest", "B"),
    )
    return ref.to_dict()


def _split_key(context: Any, p: dict[str, Any]) -> str:
    snap = p["snapshot"]
    return stable_key("split", snap["path"], p["options"].model_dump(), _listing(os.path.join(snap["path"], "splits")))


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


def _partition_key(context: Any, p: dict[str, Any]) -> str:
    split = p["split"]
    return stable_key("partition", split["path"], p["n_blocks"], _listing(os.path.join(split["path"], "partitions")))


@task(name="partition", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error,
      cache_key_fn=_partition_key, persist_result=True)
def partition_task(split: dict[str, Any], n_blocks: int | None = None) -> dict[str, Any]:
    """Build (or reuse) the user/item row blocks of a split's train part; returns PartitionsRef as a dict."""
    from ..partitions import build_partitions
    from ..splits import SplitRef

    ref = build_partitions(SplitRef.from_dict(split), n_blocks, progress=task_progress("partition", "blocks"))
    return ref.to_dict()
